# Datasets: download (checkpoint: fetch + verify, or a status saying why not) -> prepare (HDF5).
# `snakemake --cores 2 data` prepares every dataset of params/<budget>/data.yaml that can be
# obtained; the others are named "not run" in data/raw/<name>.status.json with their reason
# and how to supply them (e.g. put data.tar.gz of Zenodo record 1161203 in the mirror folder).
import json


# download runs on the submitting host: compute nodes of a cluster often have no network.
localrules:
    data,
    download,


checkpoint download:
    output:
        "data/raw/{name}.status.json",
    log:
        "logs/download/{name}.log",
    resources:
        runtime=config["data"]["resources"]["runtime"],
    wildcard_constraints:
        name="[A-Za-z0-9_]+",
    shell:
        "{PY} download {wildcards.name} --params {PARAMS}/data.yaml --status {output} > {log} 2>&1"


rule prepare:
    input:
        "data/raw/{name}.status.json",
    output:
        "data/prepared/{name}.h5",
    log:
        "logs/prepare/{name}.log",
    resources:
        mem_mb=config["data"]["resources"]["mem_mb"],
        runtime=config["data"]["resources"]["runtime"],
    wildcard_constraints:
        name="[A-Za-z0-9_]+",
    shell:
        "{PY} prepare {wildcards.name} --params {PARAMS}/data.yaml --status {input}"
        " --out {output} > {log} 2>&1"


def available(name):
    """True when the download checkpoint found dataset `name` (its status file says so)."""
    with open(checkpoints.download.get(name=name).output[0]) as f:
        return bool(json.load(f)["available"])


def prepared_datasets(wildcards):
    return [f"data/prepared/{n}.h5" for n in config["data"]["datasets"] if available(n)]


# Target: every obtainable dataset of the budget, prepared (the status files name the rest).
rule data:
    input:
        prepared_datasets,
        expand("data/raw/{name}.status.json", name=config["data"]["datasets"]),
