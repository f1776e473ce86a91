"""The report stage: assembled from the parts' JSON twins, robust to missing parts, strict on
malformed ones. Part files here are small hand-written examples in the parts' layouts."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bnaf.core.config import load
from bnaf.core.errors import BnafError
from bnaf.report.provenance import stage_times
from bnaf.report.report import ReportParams, build, write_metrics

ROOT = Path(__file__).resolve().parents[1]


def _work(tmp_path: Path, with_rules: tuple[str, ...] = ("toy", "uci", "vae")) -> Path:
    (tmp_path / "params").mkdir()
    shutil.copy(ROOT / "params" / "quick" / "report.yaml", tmp_path / "params" / "report.yaml")
    (tmp_path / "workflow" / "rules").mkdir(parents=True)
    for name in with_rules:
        (tmp_path / "workflow" / "rules" / f"{name}.smk").write_text("")
    (tmp_path / "reports").mkdir()
    return tmp_path


def _params(work: Path) -> ReportParams:
    return load(work / "params" / "report.yaml", ReportParams, section="report")


def _write(work: Path, name: str, data: object) -> None:
    (work / "reports" / f"{name}.json").write_text(json.dumps(data))


TABLE1 = {
    "results": [
        {
            "dataset": "power",
            "test_ll": {
                "ours": {"mean": 0.58, "std": 0.02, "n": 3},
                "paper": {"mean": 0.61, "std": 0.01},
            },
            "ratio_naf5": {"ours": 2.0, "paper": 2.29},
        }
    ],
    "not_run": [{"dataset": "gas", "reason": "archive absent", "how_to_supply": "put it in"}],
    "differences": [{"topic": "optimiser", "paper": "Adam", "code": "AMSGrad", "ours": "code"}],
}
TABLE2 = {
    "ours": {
        "bnaf-K8-H4d": {
            "mnist": {
                "test_nll": {"mean": 81.0, "std": 0.5, "n": 2, "paper": 80.71, "paper_std": 0.09}
            }
        }
    },
    "counts": {},
    "not_run": [],
    "differences": ["Adamax as Sylvester flows"],
}


def test_no_part_yet_still_gives_a_report_naming_each_as_not_run(tmp_path: Path) -> None:
    work = _work(tmp_path, with_rules=("toy",))
    md, twin = build(_params(work), work, work / "reports")
    assert "REDUCED" in md and twin["parts_run"] == []
    reasons = {m["part"]: m["reason"] for m in twin["not_run"]}
    assert reasons["toy"] == "reports/toy.json was not produced"
    assert "workflow/rules/uci.smk" in reasons["table1"]
    assert set(reasons) == {"toy", "table1", "table2", "normalisation"}


def test_reproduced_numbers_sit_beside_published_ones(tmp_path: Path) -> None:
    work = _work(tmp_path)
    _write(work, "table1", TABLE1)
    _write(work, "table2", TABLE2)
    md, twin = build(_params(work), work, work / "reports")
    rows = {c["what"]: c for c in twin["comparisons"]}
    power = rows["power: test log-likelihood (nats)"]
    # (0.58 - 0.61) / 0.01 = -3 published stds
    assert power["delta_in_published_std"] == pytest.approx(-3.0)
    # A reduced budget: published beside ours, without the distance in published stds.
    table = md.replace("  ", " ").replace("  ", " ")
    assert "| 0.58 ± 0.02 | 0.61 ± 0.01 |\n" in table and "-3.0" not in table
    paper = _params(work)
    paper.reduced = False
    md_paper, _ = build(paper, work, work / "reports")
    assert "| 0.58 ± 0.02 | 0.61 ± 0.01 | -3.0" in md_paper.replace("  ", " ").replace("  ", " ")
    nll = rows["mnist: NLL (bnaf-K8-H4d)"]
    assert nll["delta_in_published_std"] == pytest.approx((81.0 - 80.71) / 0.09)
    ratio = rows["power: NAF(5) / B-NAF parameters"]
    assert (ratio["ours"], ratio["paper"], ratio["delta_in_published_std"]) == (2.0, 2.29, None)
    # Every part's differences are collected, and what it did not run is named with the fix.
    assert "AMSGrad" in md and "Adamax as Sylvester flows" in md
    assert "- Data is missing; it blocks table1: gas. To supply it: put it in." in md
    written = write_metrics(_params(work), work, work / "metrics")
    assert sorted(p.name for p in written) == [
        "normalisation.json",
        "table1.json",
        "table2.json",
        "toy.json",
    ]
    flat = json.loads((work / "metrics" / "table1.json").read_text())
    assert flat == {"power_test_ll": 0.58, "power_test_ll_std": 0.02}
    assert json.loads((work / "metrics" / "toy.json").read_text()) == {}  # not run


def test_figures_are_linked_when_made_and_named_when_missing(tmp_path: Path) -> None:
    work = _work(tmp_path)
    _write(work, "toy", {"density": [], "not_run": [], "differences": []})
    (work / "reports" / "toy.md").write_text("# Toy\n\n| a |\n|---|\n| 1 |\n")
    (work / "reports" / "figure2.png").write_bytes(b"\x89PNG")
    md, twin = build(_params(work), work, work / "reports")
    assert "![figure2](figure2.png)" in md and "### Toy" in md
    assert {"part": "toy", "what": "reports/figure3.png", "reason": "figure not produced"} in twin[
        "not_run"
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "reports/table1.json: not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"results": [], "not_run": []}), "missing the 'differences' list"),
        (
            json.dumps({"results": [], "not_run": {}, "differences": []}),
            "'not_run' must be a list",
        ),
        (
            json.dumps({"results": [{"dataset": "power"}], "not_run": [], "differences": []}),
            "table1.results[0]: missing key 'test_ll'",
        ),
        (
            json.dumps(
                {
                    "results": [{"dataset": "gas", "test_ll": {"ours": "x", "paper": 1.0}}],
                    "not_run": [],
                    "differences": [],
                }
            ),
            "expected a finite number",
        ),
    ],
)
def test_a_malformed_part_fails_clearly(tmp_path: Path, content: str, message: str) -> None:
    work = _work(tmp_path)
    (work / "reports" / "table1.json").write_text(content)
    with pytest.raises(BnafError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build(_params(work), work, work / "reports")


def test_cli_writes_the_report_or_one_error_line(tmp_path: Path) -> None:
    work = _work(tmp_path)
    _write(work, "table1", TABLE1)
    cmd = [sys.executable, "-m", "bnaf", "report", "--params", "params/report.yaml"]
    cmd += ["--metrics", "reports/metrics", "--html", "reports/html"]
    ok = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert (work / "reports" / "report.md").is_file()
    assert json.loads((work / "reports" / "metrics" / "table1.json").read_text())
    assert (work / "reports" / "html" / "table1.html").is_file()
    _write(work, "table2", {"ours": {}, "not_run": []})
    bad = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: reports/table2.json: missing the 'differences' list every part must write"
    ]


def test_stage_times_come_from_snakemake_records_of_existing_files(tmp_path: Path) -> None:
    meta = tmp_path / ".snakemake" / "metadata"
    meta.mkdir(parents=True)
    (tmp_path / "results").mkdir()
    for output, rule, job, start, end in (
        ("results/a.json", "toy", 1, 100.0, 110.0),
        ("results/a.pt", "toy", 1, 100.001, 110.004),  # same job, second output: counted once
        ("results/b.json", "toy", 2, 200.0, 230.0),
        ("results/gone.json", "toy", 3, 0.0, 1000.0),  # file no longer exists: not counted
        ("reports/t.md", "toy_table", 4, 300.0, 301.5),
    ):
        if "gone" not in output:
            (tmp_path / output).parent.mkdir(exist_ok=True)
            (tmp_path / output).write_text("x")
        name = base64.urlsafe_b64encode(output.encode()).decode()
        record = {"rule": rule, "starttime": start, "endtime": end, "job_hash": job}
        (meta / name).write_text(json.dumps(record))
    times = {t.rule: t for t in stage_times(tmp_path)}
    assert times["toy"].jobs == 2
    assert times["toy"].wall_s == pytest.approx(40.004) and times["toy"].longest_s == 30.0
    assert (times["toy_table"].jobs, times["toy_table"].wall_s) == (1, 1.5)


def test_a_part_built_with_another_budget_is_flagged(tmp_path: Path) -> None:
    work = _work(tmp_path)
    _write(work, "table1", {**TABLE1, "budget": "paper", "reduced": False})
    _write(work, "table2", {**TABLE2, "budget": "quick", "reduced": True})
    md, _ = build(_params(work), work, work / "reports")
    assert "table1 `paper` — NOT this report's budget" in md
    assert "table2 `quick` (REDUCED)." in md


def test_one_line_per_missing_file_and_short_difference_lines(tmp_path: Path) -> None:
    work = _work(tmp_path, with_rules=("uci", "normalisation"))
    how = "Download https://zenodo.org/x/data.tar.gz and put it at data/raw/maf/data.tar.gz"
    reason = "dataset '{}': no copy of maf/data.tar.gz (md5:9b9c) could be had: " + "x" * 300
    items = [{"dataset": d, "reason": reason.format(d), "how_to_supply": how} for d in "abc"]
    long = "a choice explained at length " * 20
    _write(
        work, "table1", {**TABLE1, "not_run": items, "differences": [{"topic": "t", "ours": long}]}
    )
    _write(work, "normalisation", {"toy": [], "uci": [], "not_run": items[:2], "differences": []})
    (work / "reports" / "table1.md").write_text(
        "\n".join(f"- Not run: {i['dataset']} — {i['reason']}. To supply it: {how}" for i in items)
    )
    md, _ = build(_params(work), work, work / "reports")
    # The instructions appear once, on the line naming the file and all it blocks.
    assert md.count(how) == 1
    line = next(x for x in md.splitlines() if how in x)
    assert line.startswith("- `maf/data.tar.gz` is missing; it blocks table1: a, b, c;")
    assert "normalisation: a, b." in line
    assert "x" * 300 not in md  # the parts' long reasons point to "Not run" instead
    section = md.split("### Where this run differs from the paper", 1)[1]
    assert long.strip() in " ".join(x.strip("- ") for x in section.split())
    assert max(len(x) for x in section.splitlines()) <= 99
