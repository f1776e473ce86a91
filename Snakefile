# B-NAF reproduction: download -> prepare -> train (grid x seeds) -> select -> tables, figures,
# report. Every rule calls `python -m bnaf <family> <stage>` (README, "Stages"); the runs come
# from bnaf.<family>.runs and each part's params are loaded by its strict loader when its rule
# file is read, so `snakemake -n` fails on a bad value. Budget: --config params=params/paper.
import glob

from snakemake.utils import min_version, validate

min_version("9.0")
PARAMS = config.get("params", "params/quick")

for _params_file in sorted(glob.glob(f"{PARAMS}/*.yaml")):  # one file per part present
    configfile: _params_file
validate(config, schema="workflow/schemas/config.schema.yaml")  # generated: python -m bnaf schema


include: "workflow/rules/common.smk"

rule all:  # the default target: the whole report
    input:
        "reports/report.md",


for _rules in sorted(glob.glob(f"{workflow.basedir}/workflow/rules/[!c]*.smk")):
    include: _rules
