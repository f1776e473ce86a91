r"""What the toy table reads: the runs' ``metrics.json`` (written by :mod:`bnaf.toy.train`) and
the committed paper-budget reference, each checked where it is read (:mod:`bnaf.core.shapes`):
a file from another version, budget or kind, or edited by hand, is one error line naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bnaf.core.errors import BnafError
from bnaf.core.io import read_json
from bnaf.core.shapes import Maybe, check

__all__ = ["METRICS_SHAPE", "REFERENCE_SHAPE", "TEST_SHAPE", "load_reference", "read_metrics"]


#: what the table reads from a run's ``metrics.json`` (:mod:`bnaf.toy.train` writes it)
METRICS_SHAPE = {
    "target": str,
    "model": str,
    "budget": str,
    "seed": int,
    "wall_time_s": float,
    "parameters": int,
    "config": {"optimiser": {"name": str, "lr": float, "iterations": int, "batch_size": int}},
}
#: ... and from its ``test`` entry, by kind (Sections 5.1 and 5.2)
TEST_SHAPE = {
    "density": {
        "log_likelihood": float,
        "log_likelihood_se": float,
        "samples": int,
        "best_achievable": Maybe({"value": float, "se": float, "method": str}),
    },
    "energy": {
        "kl": float,
        "kl_se": float,
        "log_z": float,
        "coverage": float,
        "coverage_level": float,
        "samples": int,
    },
}


#: what :func:`compare` reads from the committed reference (a toy table's JSON twin)
REFERENCE_SHAPE = {
    "density": [{"dataset": str, "model": str, "log_likelihood": {"mean": float, "se": float}}],
    "energy": [{"energy": str, "model": str, "kl": {"mean": float, "se": float}}],
}


def read_metrics(paths: list[str], kind: str, budget: str) -> list[dict[str, Any]]:
    r"""The runs' metrics, checked: a toy run of ``kind`` and of the params' ``budget``,
    holding what the table reads (:data:`METRICS_SHAPE`, :data:`TEST_SHAPE`)."""
    runs = []
    for p in paths:
        if not Path(p).is_file():
            raise BnafError(f"metrics file not found: {p}")
        m = read_json(p, shape={})
        if m.get("part") != "toy" or m.get("kind") != kind:
            raise BnafError(f"{p}: not a toy {kind} run")
        check(m, {**METRICS_SHAPE, "test": TEST_SHAPE[kind]}, p)
        if m["budget"] != budget:
            raise BnafError(f"{p}: a run of the budget {m['budget']!r}, not {budget!r}")
        runs.append(m | {"run": str(Path(p).parent)})  # the run's folder, for the report
    return runs


def load_reference(path: str | Path) -> dict[str, Any]:
    r"""The committed paper-budget toy table (``reference/paper-toy/toy.json``), with the
    ``provenance.json`` beside it under ``provenance`` when there is one."""
    path = Path(path)
    try:
        ref = read_json(path)
    except (OSError, ValueError) as e:
        raise BnafError(f"cannot read the toy reference {path}: {e}") from None
    if not isinstance(ref, dict) or ref.get("part") != "toy" or ref.get("budget") != "paper":
        raise BnafError(f"{path}: not a paper-budget toy table (reports/toy.json)")
    check(ref, REFERENCE_SHAPE, str(path))
    ref["source"] = str(path)
    prov = path.with_name("provenance.json")
    if prov.is_file():
        try:
            ref["provenance"] = read_json(prov)
        except (OSError, ValueError) as e:
            raise BnafError(f"cannot read {prov}: {e}") from None
    return ref
