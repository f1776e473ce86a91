r"""What the UCI stages hand each other: a run's ``metrics.json`` (``train`` -> ``select``) and a
dataset's ``selection.json`` (``select`` -> ``table``), each checked where it is read
(:mod:`bnaf.core.shapes`): a file from another version or edited by hand is one error line
naming it, never a traceback in the middle of a table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bnaf.core.errors import BnafError
from bnaf.core.io import read_json
from bnaf.core.shapes import MapOf, Maybe

__all__ = ["METRICS_SHAPE", "SELECTION_SHAPE", "read_metrics", "read_selection"]


#: what selection reads from a run's ``metrics.json`` (:mod:`bnaf.uci.train` writes it)
METRICS_SHAPE = {
    "dataset": str,
    "config": str,
    "seed": int,
    "budget": str,
    "reduced": bool,
    "layers": int,
    "hidden_factor": int,
    "validation": {"log_likelihood": float},
    "test": {"log_likelihood": float},
    "parameters": {"paper": int},
    "best_epoch": int,
    "epochs_run": int,
    "wall_s": float,
    "model": {"dim": int},
    "device": str,
    "hardware?": Maybe(str),
    "environment?": dict,
    "train_samples": int,
}
#: what Table 1 (:mod:`bnaf.uci.table`) reads from a selection (:func:`select` writes it)
SELECTION_SHAPE = {
    "dataset": str,
    "budget": str,
    "std_ddof": int,
    "selected": str,
    "n_seeds": int,
    "test_mean": float,
    "test_std": Maybe(float),
    "parameters": dict,
    "ratios": Maybe({"naf5": {"ours": float}, "naf10": {"ours": float}}),
    "published_config_by_ratio?": Maybe(str),
    "wall_s": float,
    "devices": [str],
    "hardware": list,
    "train_samples": int,
    "configs": MapOf(
        {"seeds": [int], "validation_mean": float, "test_mean": float, "test_std": Maybe(float)}
    ),
}


def read_metrics(path: str | Path) -> dict[str, Any]:
    r"""A run's ``metrics.json``, checked: the keys selection reads, finite log-likelihoods,
    and, in a run folder (``.../<config>/seed<k>/``), the config and seed the folder names (a
    file copied into another run's slot is refused)."""
    m = read_json(path, shape=METRICS_SHAPE)
    if not m.get("hardware") and not isinstance(m.get("environment"), dict):
        raise BnafError(f"{path}: names no hardware (neither 'hardware' nor 'environment')")
    parts = Path(path).parts
    if len(parts) >= 3 and re.fullmatch(r"seed\d+", parts[-2]):  # the dataset: see select()
        found = (m["config"], f"seed{m['seed']}")
        if found != tuple(parts[-3:-1]):
            raise BnafError(f"{path}: holds the run {'/'.join(map(str, found))}, not its folder's")
    return m


def read_selection(path: str | Path) -> dict[str, Any]:
    r"""A dataset's ``selection.json``, checked: the keys Table 1 reads (:data:`SELECTION_SHAPE`)
    and a selected config that is among its configs."""
    s = read_json(path, shape=SELECTION_SHAPE)
    if s["selected"] not in s["configs"]:
        raise BnafError(f"{path}: the selected config {s['selected']!r} is not among its configs")
    return s
