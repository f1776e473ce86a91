# Toy experiments (Sections 5.1-5.2): one toy_train job per run of bnaf.toy.runs (experiment x
# target x model of params toy.{density,energy}), one toy_train_<kind>_<model> job per pack of
# toy.pack (all targets of a baseline side by side), then the toy table and Figures 2-3.
from bnaf.toy import runs as toy
from bnaf.toy.params import load_toy

TOY = load_toy(f"{PARAMS}/toy.yaml")


wildcard_constraints:
    kind="|".join(toy.KINDS),
    model=toy.solo_models(TOY),
    figure="|".join(toy.FIGURES),


localrules:
    toy_table,
    toy_figure,


rule toy_train:
    output:
        metrics=f"{toy.RUN}/metrics.json",
        model=f"{toy.RUN}/model.pt",
        grid=f"{toy.RUN}/grid.npz",
    log:
        "logs/toy_train/{kind}/{target}/{model}.log",
    params:
        out=toy.RUN,
    threads: TOY.threads
    resources:
        mem_mb=TOY.resources.mem_mb,
        runtime=TOY.resources.runtime,
        gpu=TOY.resources.gpu,
    shell:
        "{PY} toy train --params {PARAMS}/toy.yaml --kind {wildcards.kind}"
        " --target {wildcards.target} --model {wildcards.model} --out {params.out} > {log} 2>&1"


for job in toy.jobs(TOY):  # a pack's outputs name every target: one rule per pack

    rule:
        name: job.rule
        output:
            metrics=job.files("metrics.json"),
            model=job.files("model.pt"),
            grid=job.files("grid.npz"),
        log:
            f"logs/toy_train/{job.kind}/{job.model}.log",
        params:
            args=f"--kind {job.kind} --target {' '.join(job.targets)} --model {job.model}",
            out=" ".join(r.path for r in job.runs),
        priority: 1  # the longest toy jobs: started first, the single runs fill in around them
        threads: TOY.threads
        resources:
            mem_mb=TOY.resources.mem_mb,
            runtime=TOY.resources.runtime,
            gpu=TOY.resources.gpu,
        shell:
            "{PY} toy train --params {PARAMS}/toy.yaml {params.args} --out {params.out} > {log} 2>&1"


rule toy_table:
    input:
        density=[f"{r.path}/metrics.json" for r in toy.runs(TOY, "density")],
        energy=[f"{r.path}/metrics.json" for r in toy.runs(TOY, "energy")],
    output:
        md=report("reports/toy.md", caption="../report/toy.rst", category="Tables"),
        json="reports/toy.json",
    log:
        "logs/toy_table/toy.log",
    shell:
        "{PY} toy table --params {PARAMS}/toy.yaml --density {input.density}"
        " --energy {input.energy} --md {output.md} --json {output.json} > {log} 2>&1"


rule toy_figure:
    input:
        lambda w: [f"{r.path}/grid.npz" for r in toy.runs(TOY, toy.FIGURES[w.figure])],
    output:
        report("reports/{figure}.png", caption="../report/toy_figure.rst", category="Figures"),
    log:
        "logs/toy_figure/{figure}.log",
    shell:
        "{PY} toy figure --figure {wildcards.figure} --params {PARAMS}/toy.yaml --grids {input}"
        " --out {output} > {log} 2>&1"
