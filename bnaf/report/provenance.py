r""" "How this was run" for the report: wall time per stage, hardware, versions, git commit.

Wall times come from Snakemake's own job records (``.snakemake/metadata``: one JSON per output
file with the producing rule and the job's start and end), restricted to files that exist now,
so a result made by an earlier run with other params never counts. Without those records (the
CLI run by hand) the section says so instead of inventing numbers.
"""

from __future__ import annotations

import base64
import binascii
import importlib.metadata
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bnaf.report.params import ReportParams

__all__ = ["StageTime", "devices_in", "how_run", "library_versions", "stage_times"]

#: libraries whose versions the report lists beside python/torch/numpy.
LIBRARIES: tuple[str, ...] = (
    "snakemake",
    "snakemake-executor-plugin-slurm",
    "dvc",
    "scipy",
    "pandas",
    "h5py",
    "matplotlib",
    "tabulate",
)


@dataclass
class StageTime:
    rule: str
    jobs: int
    wall_s: float  # summed over the rule's jobs: its compute in job-seconds
    longest_s: float
    first_start: float  # epoch seconds: with last_end, the span of the whole run
    last_end: float


def _decode(relative: Path) -> str | None:
    # Snakemake names each record by the urlsafe base64 of the output path, cut into
    # '@'-prefixed folder levels when longer than a file name may be.
    try:
        return base64.urlsafe_b64decode("".join(p.lstrip("@") for p in relative.parts)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def stage_times(workdir: str | Path = ".") -> list[StageTime]:
    """Per rule: jobs, summed and longest wall time of the jobs that made today's files."""
    workdir = Path(workdir)
    folder = workdir / ".snakemake" / "metadata"
    # rule -> job -> (start, end); a job writes several files, each with its own record whose
    # start and end differ by milliseconds: the files of one job share its job_hash.
    jobs: dict[str, dict[Any, tuple[float, float]]] = {}
    if not folder.is_dir():
        return []
    for record in folder.rglob("*"):
        if not record.is_file():
            continue
        output = _decode(record.relative_to(folder))
        if output is None or not (workdir / output).exists():
            continue
        try:
            meta = json.loads(record.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        start, end, rule = meta.get("starttime"), meta.get("endtime"), meta.get("rule")
        if isinstance(start, int | float) and isinstance(end, int | float) and rule:
            key = meta.get("job_hash") or (round(float(start)), round(float(end)))
            spans = jobs.setdefault(rule, {})
            s0, e0 = spans.get(key, (float(start), float(end)))
            spans[key] = (min(s0, float(start)), max(e0, float(end)))
    return [
        StageTime(
            rule,
            len(spans),
            sum(e - s for s, e in spans.values()),
            max(e - s for s, e in spans.values()),
            min(s for s, _ in spans.values()),
            max(e for _, e in spans.values()),
        )
        for rule, spans in sorted(jobs.items())
    ]


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def devices_in(obj: Any) -> set[str]:
    """Every ``device``/``gpu``/``devices``/``hardware`` string in a part's JSON (hardware)."""
    found: set[str] = set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("device", "gpu") and isinstance(value, str):
                found.add(value)
            elif key in ("devices", "hardware", "gpus") and isinstance(value, list):
                found |= {v for v in value if isinstance(v, str)}
            else:
                found |= devices_in(value)
    elif isinstance(obj, list):
        for value in obj:
            found |= devices_in(value)
    return found


def how_run(params: ReportParams, parts: dict[str, dict[str, Any]], workdir: Path) -> list[str]:
    """The "How this was run" section: budget, devices, machine, commit, stage times, versions."""
    from bnaf.core.runtime import environment_info  # imports torch: only when writing it

    env = environment_info()
    label = "REDUCED: far fewer epochs/steps than the paper" if params.reduced else "the paper's"
    budgets = [
        f"{name} `{data.get('budget', '?')}`"
        + (" (REDUCED)" if data.get("reduced") else "")
        + ("" if data.get("budget") in (None, params.budget) else " — NOT this report's budget")
        for name, data in parts.items()
    ]
    devices = sorted(set().union(*(devices_in(p) for p in parts.values())) or {"not recorded"})
    out = [
        "## How this was run",
        "",
        f"- **Budget:** `{params.budget}` — {label}.",
        f"- **Budget each part was built with:** {', '.join(budgets) or 'no part ran'}.",
        f"- **Devices used by the runs:** {', '.join(devices)}.",
        f"- **This machine:** {env['platform']}, {env['processor']}, {env['cpu_count']} CPUs"
        + (f", GPU {env['gpu']}" if env.get("gpu") else "")
        + ".",
        f"- **Git commit:** `{env['git_commit'] or 'unknown (not a git checkout)'}`.",
        f"- **Generated:** {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.",
        "",
        "### Wall time per stage",
        "",
    ]
    times = stage_times(workdir)
    if times:
        rows = [[t.rule, t.jobs, f"{t.wall_s:.1f}", f"{t.longest_s:.1f}"] for t in times]
        out.append(
            tabulate(rows, ["rule", "jobs", "summed wall time (s)", "longest job (s)"], "github")
        )
        total = sum(t.wall_s for t in times)
        span = max(t.last_end for t in times) - min(t.first_start for t in times)
        out += [
            "",
            f"Total compute: {total:.1f} job-seconds ({total / 3600:.2f} job-hours); "
            f"first job start to last job end: {span / 60:.1f} min.",
        ]
    else:
        out.append("No Snakemake job records found (.snakemake/metadata): stage times unknown.")
    versions = {k: env[k] for k in ("python", "torch", "numpy")} | library_versions()
    out += ["", "### Library versions", ""]
    out.append(tabulate(sorted(versions.items()), ["library", "version"], "github"))
    return out
