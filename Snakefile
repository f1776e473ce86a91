# B-NAF reproduction: download -> prepare -> train (grid x 3 seeds) -> select -> evaluate ->
# tables, figures, report. Every rule calls `python -m bnaf <stage>`; no logic lives here.
#
# Budget: a folder of params files, `params/quick` (default) or `params/paper`:
#   snakemake --cores 8 --config params=params/paper
# Default target: the whole report, reports/report.md (`rule all` below).
import glob

from snakemake.utils import min_version, validate

min_version("9.0")

PARAMS = config.get("params", "params/quick")


# One params file per experiment family; each holds one top-level key named like the file.
for _params_file in sorted(glob.glob(f"{PARAMS}/*.yaml")):
    configfile: _params_file


# Fails at start with a message naming the bad key (the strict loaders in bnaf/ catch the rest).
validate(config, schema="workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"


localrules:
    all,


rule all:
    input:
        "reports/report.md",
    default_target: True


for _rules in sorted(glob.glob(f"{workflow.basedir}/workflow/rules/*.smk")):
    if not _rules.endswith("common.smk"):

        include: _rules
