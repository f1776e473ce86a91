r"""When a dataset's download is checked again: what the pipeline reads from its status file.

A status (``data/raw/<name>.status.json``, :func:`bnaf.data.fetch.write_status`) records where
the download looked (``looked_for``), whether a network attempt failed (``transient``) and the
inputs it was checked with (``watched``, ``retry``). Snakemake's ``data_download`` checkpoint
takes :func:`watch` as its inputs and :func:`retry_token` as a parameter; DVC's ``inventory``
stage (``python -m bnaf data inventory``) writes :func:`inventory` to a file that DVC's
``data`` stage depends on. So a file put where a first offline run looked is picked up by the
next plain ``snakemake`` or ``dvc repro`` alike, and a dataset that was found is left alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

__all__ = ["STATUS", "inventory", "retry_token", "watch"]

#: where the pipeline keeps each dataset's status (workflow/rules/data.smk)
STATUS = "data/raw/{name}.status.json"


def _read_status(path: str | Path) -> dict | None:
    # Read when Snakemake builds its job graph: an absent or unreadable status is simply
    # "not checked yet" (the download then runs and rewrites it).
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def watch(status: str | Path) -> list[str]:
    r"""The paths whose presence the download depends on, as the checkpoint's inputs.

    For a missing file: those of the places it was looked for that exist now, so a file put
    there changes the input set and the download runs again. For a dataset that was found:
    the inputs it was found with (``--watched``, kept in the status), so the set stays the
    one Snakemake recorded (a changed set would re-run the job).
    """
    data = _read_status(status)
    if data is None:
        return []
    paths = data.get("watched", []) if data.get("available") else data.get("looked_for", [])
    return [p for p in paths if isinstance(p, str) and Path(p).is_file()]


def retry_token(status: str | Path) -> str:
    r"""A value that differs on every run while the status records a network failure.

    Given as a rule parameter: Snakemake re-runs a job whose parameters changed, so a failed
    download is tried again by the next run, and a final status (found, or missing from every
    place with no network attempt) keeps its token and is left alone. The token of a failed
    status is its modification time: the same however often one run asks, new once rewritten.
    """
    data = _read_status(status)
    if data is None:
        return ""
    if data.get("available") or not data.get("transient"):
        # The token the status was written under (``--retry``): the same value as the run
        # that wrote it recorded, so a final status is not re-run for a changed token.
        return str(data.get("retry", ""))
    return f"after-{Path(status).stat().st_mtime_ns}"


def inventory(datasets: Iterable[str], status: str = STATUS) -> dict[str, list[str]]:
    r"""Dataset -> :func:`watch` of its status: the supplied files its download depends on.

    Unchanged by the download itself (a found dataset keeps the inputs it was found with), so
    a file that records it changes only when a file appears where a status looked, or one that
    a dataset was found with disappears. A network failure is not in it: with DVC, a failed
    download is retried by ``dvc repro -f data`` rather than by every ``dvc repro``.

    Example:
        >>> inventory(["power"], status="/nonexistent/{name}.status.json")
        {'power': []}
    """
    return {name: sorted(watch(status.format(name=name))) for name in datasets}
