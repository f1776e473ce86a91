# Density estimation on UCI and BSDS300 (Section 5.3, Table 1): train every (dataset, config,
# seed) of params uci.grid x uci.seeds, select each dataset's config by mean validation
# log-likelihood, then assemble Table 1. Datasets whose download status says "unavailable"
# (checkpoint download in data.smk, read by available(name)) appear in the table as not run.
UCI = config["uci"]
UCI_CONFIGS = [f"L{l}_H{h}" for l in UCI["grid"]["layers"] for h in UCI["grid"]["hidden_factor"]]
UCI_RUN = "results/uci/{dataset}/{cfg}/seed{seed}"


wildcard_constraints:
    cfg=r"L\d+_H\d+",
    seed=r"\d+",


localrules:
    select,
    table1,


def uci_runtime(wildcards):
    runtime = UCI["resources"]["runtime"]
    if isinstance(runtime, int):
        return runtime
    return runtime.get(wildcards.dataset, runtime["default"])


def uci_metrics(wildcards):
    runs = expand(UCI_RUN, dataset=wildcards.dataset, cfg=UCI_CONFIGS, seed=UCI["seeds"])
    return [f"{run}/metrics.json" for run in runs]


def uci_selections(wildcards):
    return [f"results/uci/{d}/selection.json" for d in UCI["datasets"] if available(d)]


rule train:
    input:
        data="data/prepared/{dataset}.h5",
    output:
        metrics=f"{UCI_RUN}/metrics.json",
        model=f"{UCI_RUN}/model.pt",
    log:
        "logs/train/{dataset}/{cfg}/seed{seed}.log",
    params:
        out=UCI_RUN,
    threads: UCI["resources"]["threads"]
    resources:
        mem_mb=UCI["resources"]["mem_mb"],
        runtime=uci_runtime,
        gpu=UCI["resources"]["gpu"],
    shell:
        "{PY_GPU} train --params {PARAMS}/uci.yaml --data {input.data}"
        " --dataset {wildcards.dataset} --config {wildcards.cfg} --seed {wildcards.seed}"
        " --out {params.out} --threads {threads} >> {log} 2>&1"


rule select:
    input:
        uci_metrics,
    output:
        "results/uci/{dataset}/selection.json",
    log:
        "logs/select/{dataset}.log",
    shell:
        "{PY} select --params {PARAMS}/uci.yaml --dataset {wildcards.dataset}"
        " --metrics {input} --out {output} > {log} 2>&1"


rule table1:
    input:
        selections=uci_selections,
        status=expand("data/raw/{dataset}.status.json", dataset=UCI["datasets"]),
    output:
        md=report("reports/table1.md", caption="../report/table1.rst", category="Tables"),
        json="reports/table1.json",
        csv="reports/table1.csv",
    log:
        "logs/table1/table1.log",
    shell:
        "{PY} table table1 --params {PARAMS}/uci.yaml --selections {input.selections}"
        " --status {input.status} --md {output.md} --json {output.json} --csv {output.csv}"
        " > {log} 2>&1"
