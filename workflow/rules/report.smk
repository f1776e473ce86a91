# The final report: assembled from the parts' JSON twins (params/<budget>/report.yaml lists
# them, each with the rule file that makes it; a part whose rule file is absent is "not run").
# It also draws the learning curves of the runs the parts report (from each run's history.csv,
# written with its metrics.json, so not listed as inputs), writes one flat DVC metrics file per
# part and HTML renderings for `snakemake --report`, whose landing page is the report's own
# text (workflow/report/workflow.rst includes reports/html/landing.html) and which shows each
# part's tables inline.
from bnaf.report.params import load_report

REPORT = load_report(f"{PARAMS}/report.yaml")
PARTS = [p for p in REPORT.parts if rules_present(p.rules)]
CAPTIONS = {p.name: dict(caption=f"../report/{p.name}.rst", category="Tables") for p in PARTS}


report: "../report/workflow.rst"


localrules:
    report,


rule report:
    input:
        [f for p in PARTS for f in [p.json, *p.figures]],
    output:
        md="reports/report.md",
        json="reports/report.json",
        metrics=[f"reports/metrics/{p.name}.json" for p in REPORT.parts],
        html=report("reports/html/report.html", caption="../report/report.rst", category="Report"),
        landing="reports/html/landing.html",
        curves=report("reports/curves.png", caption="../report/curves.rst", category="Figures"),
        parts=[report(f"reports/html/{p.name}.html", **CAPTIONS[p.name]) for p in PARTS],
    log:
        "logs/report/report.log",
    shell:
        "{PY} report --params {PARAMS}/report.yaml --output {output.md} --json {output.json}"
        " --metrics reports/metrics --html reports/html --curves {output.curves} > {log} 2>&1"
