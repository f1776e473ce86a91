# The final report: assembled from the parts' JSON twins (params/<budget>/report.yaml lists
# them, each with the rule file that makes it; a part whose rule file is absent is "not run").
from bnaf.report.params import load_report

REPORT = load_report(f"{PARAMS}/report.yaml")


localrules:
    report,


rule report:
    input:
        [f for p in REPORT.parts if rules_present(p.rules) for f in [p.json, *p.figures]],
    output:
        md=report("reports/report.md", caption="../report/report.rst", category="Report"),
        json="reports/report.json",
        metrics="reports/metrics.json",
    log:
        "logs/report/report.log",
    shell:
        "{PY} report --params {PARAMS}/report.yaml --output {output.md} --json {output.json}"
        " --metrics {output.metrics} > {log} 2>&1"
