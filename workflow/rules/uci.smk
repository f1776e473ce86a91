# Density estimation on UCI and BSDS300 (Section 5.3, Table 1): train every run of
# bnaf.uci.runs (datasets x grid x seeds), select each dataset's config by mean validation
# log-likelihood, then assemble Table 1. Datasets whose download status says "unavailable"
# (checkpoint data_download, read by available(name)) appear in the table as not run.
from bnaf.uci import runs as uci
from bnaf.uci.params import load_uci

UCI = load_uci(f"{PARAMS}/uci.yaml")


wildcard_constraints:
    seed=r"\d+",


localrules:
    uci_select,
    uci_table,


rule uci_train:
    input:
        data="data/prepared/{dataset}.h5",
    output:  # one run, or every seed of a grid point when uci.resources.pack_seeds
        metrics=uci.job_outputs(UCI, "metrics.json"),
        model=uci.job_outputs(UCI, "model.pt"),
    log: uci.job_log(UCI)
    wildcard_constraints:
        config=uci.CONFIG_PATTERN,
    params: args=lambda w: uci.job_args(UCI, w)
    threads: UCI.resources.threads
    resources:
        mem_mb=uci.mem_mb(UCI),
        runtime=lambda w: uci.runtime(UCI, w.dataset),
        gpu=UCI.resources.gpu,
    shell:
        "{PY_GPU} uci train --params {PARAMS}/uci.yaml --data {input.data} --dataset"
        " {wildcards.dataset} --config {wildcards.config} {params.args} --threads {threads}"
        " >> {log} 2>&1"


rule uci_select:
    input:
        lambda w: [f"{r.path}/metrics.json" for r in uci.runs(UCI, w.dataset)],
    output:
        uci.SELECTION,
    log:
        "logs/uci_select/{dataset}.log",
    shell:
        "{PY} uci select --params {PARAMS}/uci.yaml --dataset {wildcards.dataset}"
        " --metrics {input} --out {output} > {log} 2>&1"


rule uci_table:
    input:
        selections=lambda w: [uci.SELECTION.format(dataset=d) for d in UCI.datasets if available(d)],
        status=expand("data/raw/{dataset}.status.json", dataset=UCI.datasets),
    output:
        md=report("reports/table1.md", caption="../report/table1.rst", category="Tables"),
        json="reports/table1.json",
        csv="reports/table1.csv",
    log:
        "logs/uci_table/table1.log",
    shell:
        "{PY} uci table --params {PARAMS}/uci.yaml --selections {input.selections}"
        " --status {input.status} --md {output.md} --json {output.json} --csv {output.csv}"
        " > {log} 2>&1"
