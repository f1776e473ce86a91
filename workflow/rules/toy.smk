# Toy experiments (Sections 5.1-5.2): one `toy` job per experiment x target x model of
# params toy.{density,energy}.{targets,models}, then the toy table and Figures 2-3.
TOY = config["toy"]
TOY_RUN = "results/toy/{kind}/{target}/{model}"


wildcard_constraints:
    kind="density|energy",
    model="bnaf|glow|planar",


localrules:
    toy_table,
    figure2,
    figure3,


def toy_runs(kind, name="metrics.json"):
    exp = TOY[kind]
    return expand(f"{TOY_RUN}/{name}", kind=kind, target=exp["targets"], model=exp["models"])


rule toy:
    output:
        metrics=f"{TOY_RUN}/metrics.json",
        model=f"{TOY_RUN}/model.pt",
        grid=f"{TOY_RUN}/grid.npz",
    log:
        "logs/toy/{kind}/{target}/{model}.log",
    params:
        out=TOY_RUN,
    threads: TOY["threads"]
    resources:
        mem_mb=TOY["resources"]["mem_mb"],
        runtime=TOY["resources"]["runtime"],
        gpu=TOY["resources"]["gpu"],
    shell:
        "{PY} toy --params {PARAMS}/toy.yaml --kind {wildcards.kind} --target {wildcards.target}"
        " --model {wildcards.model} --out {params.out} > {log} 2>&1"


rule toy_table:
    input:
        density=toy_runs("density"),
        energy=toy_runs("energy"),
    output:
        md=report("reports/toy.md", caption="../report/toy.rst", category="Tables"),
        json="reports/toy.json",
    log:
        "logs/toy_table/toy.log",
    shell:
        "{PY} table toy --params {PARAMS}/toy.yaml --density {input.density}"
        " --energy {input.energy} --md {output.md} --json {output.json} > {log} 2>&1"


rule figure2:
    input:
        toy_runs("density", "grid.npz"),
    output:
        report("reports/figure2.png", caption="../report/figure2.rst", category="Figures"),
    log:
        "logs/figure2/figure2.log",
    shell:
        "{PY} figure figure2 --params {PARAMS}/toy.yaml --grids {input} --out {output}"
        " > {log} 2>&1"


rule figure3:
    input:
        toy_runs("energy", "grid.npz"),
    output:
        report("reports/figure3.png", caption="../report/figure3.rst", category="Figures"),
    log:
        "logs/figure3/figure3.log",
    shell:
        "{PY} figure figure3 --params {PARAMS}/toy.yaml --grids {input} --out {output}"
        " > {log} 2>&1"
