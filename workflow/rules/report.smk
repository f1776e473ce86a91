# The final report: assembled from the parts' JSON twins (see params/<budget>/report.yaml).
localrules:
    report,


def report_inputs(wildcards):
    """JSON twins and figures of the parts whose rule file is in this workflow."""
    wired = [
        p
        for p in config["report"]["parts"]
        if os.path.exists(f"{workflow.basedir}/workflow/rules/{p['rules']}.smk")
    ]
    return [p["json"] for p in wired] + [f for p in wired for f in p.get("figures", [])]


rule report:
    input:
        report_inputs,
    output:
        md=report("reports/report.md", caption="../report/report.rst", category="Report"),
        json="reports/report.json",
        metrics="reports/metrics.json",
    log:
        "logs/report/report.log",
    shell:
        "{PY} report --params {PARAMS}/report.yaml --output {output.md} --json {output.json}"
        " --metrics {output.metrics}"
        " > {log} 2>&1"
