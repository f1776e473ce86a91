# Datasets: data_download (checkpoint: fetch + verify, or a status saying why not) ->
# data_prepare (HDF5). `snakemake --cores 2 data` prepares every dataset of
# params/<budget>/data.yaml that can be obtained; the others are named "not run" in
# data/raw/<name>.status.json with their reason and how to supply them. A status is checked
# again by the next run when a file appears where it looked (its inputs, bnaf.data.recheck
# watch), after a network failure (retry_token) or when data.yaml changes.
import json

from bnaf.data.recheck import retry_token, watch
from bnaf.data.params import load_data_params

DATA = load_data_params(f"{PARAMS}/data.yaml")


# Downloads run on the submitting host: compute nodes of a cluster often have no network.
localrules:
    data,
    data_download,


wildcard_constraints:
    name="[A-Za-z0-9_]+",


checkpoint data_download:
    input:
        params=f"{PARAMS}/data.yaml",
        found=lambda w: watch(f"data/raw/{w.name}.status.json"),
    output:
        "data/raw/{name}.status.json",
    log:
        "logs/data_download/{name}.log",
    params:
        retry=lambda w: retry_token(f"data/raw/{w.name}.status.json"),
    resources:
        runtime=DATA.resources.runtime,
    shell:
        "{PY} data download {wildcards.name} --params {PARAMS}/data.yaml --status {output}"
        " --retry '{params.retry}' --watched {input.found} > {log} 2>&1"


rule data_prepare:
    input:
        ancient("data/raw/{name}.status.json"),  # a re-checked download keeps the data
    output:
        "data/prepared/{name}.h5",
    log:
        "logs/data_prepare/{name}.log",
    resources:
        mem_mb=DATA.resources.mem_mb,
        runtime=DATA.resources.runtime,
    shell:
        "{PY} data prepare {wildcards.name} --params {PARAMS}/data.yaml --status {input}"
        " --out {output} > {log} 2>&1"


def available(name):
    """True when the data_download checkpoint found dataset `name` (its status says so)."""
    with open(checkpoints.data_download.get(name=name).output[0]) as f:
        return bool(json.load(f)["available"])


# Target: every obtainable dataset of the budget, prepared (the status files name the rest).
rule data:
    input:
        lambda w: [f"data/prepared/{n}.h5" for n in DATA.datasets if available(n)],
        expand("data/raw/{name}.status.json", name=DATA.datasets),
