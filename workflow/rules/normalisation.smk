# Normalisation and sampling checks (beyond the paper): every trained Figure 2 B-NAF model and
# Table 1 model is checked for the mass its density integrates to; Figure 2's B-NAF models are
# sampled through the inverse. Inputs come from the toy and UCI rules (input functions, so the
# rule files may load in any order); datasets without models are named "not run" in the JSON.
NORM = config["normalisation"]
NORM_UCI = config.get("uci", {}).get("datasets", [])


localrules:
    samples,


def norm_toy(name):
    toy = config.get("toy", {}).get("density", {})
    targets = toy.get("targets", []) if "bnaf" in toy.get("models", []) else []
    return lambda w: expand(
        getattr(rules.toy.output, name), kind="density", target=targets, model="bnaf"
    )


def norm_uci_models(wildcards):
    datasets = [d for d in NORM_UCI if available(d)]
    return expand(rules.train.output.model, dataset=datasets, cfg=UCI_CONFIGS, seed=UCI["seeds"])


rule normalisation:
    input:
        toy=norm_toy("model"),
        uci=norm_uci_models,
        status=expand("data/raw/{name}.status.json", name=NORM_UCI),
    output:
        md=report(
            "reports/normalisation.md", caption="../report/normalisation.rst", category="Checks"
        ),
        json="reports/normalisation.json",
    log:
        "logs/normalisation/normalisation.log",
    params:
        toy=" ".join(config.get("toy", {}).get("density", {}).get("targets", [])),
        uci=" ".join(NORM_UCI),
    threads: NORM["threads"]
    resources:
        mem_mb=NORM["resources"]["mem_mb"],
        runtime=NORM["resources"]["runtime"],
        gpu=NORM["resources"]["gpu"],
    shell:
        "{PY_GPU} normalisation --params {PARAMS}/normalisation.yaml --toy-models {input.toy}"
        " --toy-targets {params.toy} --uci-models {input.uci} --uci-datasets {params.uci}"
        " --status {input.status} --md {output.md} --json {output.json} > {log} 2>&1"


rule samples:
    input:
        models=norm_toy("model"),
        grids=norm_toy("grid"),
    output:
        report("reports/samples.png", caption="../report/samples.rst", category="Figures"),
    log:
        "logs/samples/samples.log",
    shell:
        "{PY} figure samples --params {PARAMS}/normalisation.yaml --models {input.models}"
        " --grids {input.grids} --out {output} > {log} 2>&1"
