r"""A dataset's download status (``data/raw/<name>.status.json``, written by
:func:`bnaf.data.fetch.write_status`), read back by the stages after ``download`` and checked
(:mod:`bnaf.core.shapes`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bnaf.core.errors import BnafError
from bnaf.core.io import read_json
from bnaf.core.shapes import MapOf

__all__ = ["STATUS_SHAPE", "read_status"]


#: what the stages after ``download`` read from a status (:func:`bnaf.data.fetch.write_status`)
STATUS_SHAPE = {
    "dataset": str,
    "available": bool,
    "reason?": str,
    "how_to_supply?": str,
    "paths?": MapOf(str),
    "verified_checksums?": MapOf(str),
    "checksum_source?": MapOf(str),
}


def read_status(path: str | Path, dataset: str | None = None) -> dict[str, Any]:
    r"""A dataset's download status, checked (:data:`STATUS_SHAPE`), and, given ``dataset``,
    that it is that dataset's (a status copied from another dataset is refused): any fault is
    one :class:`~bnaf.core.errors.BnafError` naming the file."""
    status = read_json(path, shape=STATUS_SHAPE)
    if dataset is not None and status["dataset"] != dataset:
        raise BnafError(f"{path}: the status of {status['dataset']!r}, not of {dataset!r}")
    return status
