r"""Per-part DVC metrics: one flat JSON file per part (``reports/metrics/<part>.json``).

``dvc metrics show`` and ``dvc exp show`` print one column per key, so each part gives a few
short, flat keys with plain numbers (ours only: the published values do not change between
experiments and are in the report):

- toy: ``<dataset>_<model>_test_ll`` (Section 5.1) and ``<energy>_<model>_kl`` (Section 5.2);
- table1: ``<dataset>_test_ll`` and ``<dataset>_test_ll_std`` (Table 1, over seeds);
- table2: ``<dataset>_<config>_neg_elbo`` and ``<dataset>_<config>_nll`` (Table 2);
- normalisation: ``<target>_grid_z`` (2-D models) and ``<dataset>_seed<k>_z`` (Table 1 models).

A part that did not run writes ``{}``, so every declared metrics file exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["FLATTENERS", "part_metrics"]


def _num(value: Any) -> float | None:
    if isinstance(value, dict):
        value = value.get("mean", value.get("estimate"))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _rows(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    rows = data.get(key)
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def _toy(data: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for r in _rows(data, "density"):
        out[f"{r.get('dataset')}_{r.get('model')}_test_ll"] = _num(r.get("log_likelihood"))
    for r in _rows(data, "energy"):
        out[f"{r.get('energy')}_{r.get('model')}_kl"] = _num(r.get("kl"))
    return out


def _table1(data: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for r in _rows(data, "results"):
        ours = (r.get("test_ll") or {}).get("ours") or {}
        out[f"{r.get('dataset')}_test_ll"] = _num(ours.get("mean"))
        out[f"{r.get('dataset')}_test_ll_std"] = _num(ours.get("std"))
    return out


def _table2(data: dict[str, Any]) -> dict[str, Any]:
    out = {}
    ours = data.get("ours") if isinstance(data.get("ours"), dict) else {}
    for config, datasets in ours.items():
        for dataset, cells in (datasets if isinstance(datasets, dict) else {}).items():
            for key, short in (("test_neg_elbo", "neg_elbo"), ("test_nll", "nll")):
                out[f"{dataset}_{config}_{short}"] = _num((cells or {}).get(key))
    return out


def _normalisation(data: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for t in _rows(data, "toy"):
        out[f"{t.get('dataset')}_grid_z"] = _num(t.get("grid_integral"))
    for u in _rows(data, "uci"):
        out[f"{u.get('dataset')}_seed{u.get('seed')}_z"] = _num(u.get("mass"))
    return out


#: part name -> its flattener; another part gives its reproduced numbers (``comparisons``).
FLATTENERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "toy": _toy,
    "table1": _table1,
    "table2": _table2,
    "normalisation": _normalisation,
}


def part_metrics(
    name: str, data: dict[str, Any] | None, ours: dict[str, float] | None = None
) -> dict[str, float]:
    r"""The flat metrics of part ``name`` from its JSON twin (``None``: not run, ``{}``).

    ``ours`` (quantity -> reproduced value) is used for a part without its own flattener.
    """
    if data is None:
        return {}
    flat = FLATTENERS[name](data) if name in FLATTENERS else dict(ours or {})
    return {k.replace(" ", "_"): v for k, v in sorted(flat.items()) if v is not None}
