# Normalisation and sampling checks (beyond the paper): every trained Figure 2 B-NAF model and
# Table 1 model is checked for the mass its density integrates to; Figure 2's B-NAF models are
# sampled through the inverse. The models are the toy and UCI run lists (TOY and UCI of toy.smk
# and uci.smk, read when the job graph is built); datasets without models are named "not run".
# CPU jobs: float64 inverses of small models (resources.gpu: 0, no GPU wrapper).
from bnaf.report.params import load_normalisation

NORM = load_normalisation(f"{PARAMS}/normalisation.yaml")


localrules:
    samples,


rule normalisation:
    input:
        toy=lambda w: [f"{r.path}/model.pt" for r in toy.runs(TOY, "density", "bnaf")],
        uci=lambda w: [f"{r.path}/model.pt" for r in uci.runs(UCI) if available(r.dataset)],
        status=lambda w: [f"data/raw/{d}.status.json" for d in UCI.datasets],
    output:
        md=report("reports/normalisation.md", caption="../report/normalisation.rst", category="Checks"),
        json="reports/normalisation.json",
    log:
        "logs/normalisation/normalisation.log",
    params:
        toy=lambda w: [r.target for r in toy.runs(TOY, "density", "bnaf")],
        uci=lambda w: UCI.datasets,
    resources:
        mem_mb=NORM.resources["mem_mb"],
        runtime=NORM.resources["runtime"],
    shell:
        "{PY} normalisation --params {PARAMS}/normalisation.yaml --toy-models {input.toy}"
        " --toy-targets {params.toy} --uci-models {input.uci} --uci-datasets {params.uci}"
        " --status {input.status} --md {output.md} --json {output.json} > {log} 2>&1"


rule samples:
    input:
        models=lambda w: [f"{r.path}/model.pt" for r in toy.runs(TOY, "density", "bnaf")],
        grids=lambda w: [f"{r.path}/grid.npz" for r in toy.runs(TOY, "density", "bnaf")],
    output:
        report("reports/samples.png", caption="../report/samples.rst", category="Figures"),
    log:
        "logs/samples/samples.log",
    shell:
        "{PY} samples --params {PARAMS}/normalisation.yaml --models {input.models}"
        " --grids {input.grids} --out {output} > {log} 2>&1"
