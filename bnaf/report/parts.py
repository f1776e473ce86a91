r"""Reading the parts' JSON twins for the report: reproduced-vs-published pairs, lists.

Table 1 and Table 2 have readers of their own (``ADAPTERS``) that follow the layouts
``bnaf/tables/table1.py`` and ``table2.py`` write, and fail naming the file and key when one
is malformed. Any other part marks a reproduced number that has a published counterpart by an
object holding both, anywhere in its JSON::

    {"ours": {"mean": 0.58, "std": 0.01, "n": 3}, "paper": {"mean": 0.61, "std": 0.01}}

(``published`` is accepted for ``paper``; a value may also be a plain number or ``[mean, std]``),
labelled by the path to it with list items named by their ``dataset``/``name``/``model`` field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bnaf.core.errors import BnafError

__all__ = [
    "ADAPTERS",
    "Comparison",
    "comparisons",
    "difference_rows",
    "fmt",
    "not_run_items",
    "text_items",
]

_NAME_KEYS = ("dataset", "name", "model", "label", "energy", "setting", "quantity", "metric")


@dataclass
class Comparison:
    part: str
    what: str
    ours: float | None
    ours_std: float | None
    paper: float | None
    paper_std: float | None

    @property
    def delta(self) -> float | None:
        r"""(ours - published) / published std: how many published stds we are off."""
        if self.ours is None or self.paper is None or not self.paper_std:
            return None
        return (self.ours - self.paper) / self.paper_std

    def delta_text(self) -> str:
        if self.ours is None:
            return "not run"
        if self.paper is None:
            return "no published value"
        if not self.paper_std:
            return f"{self.ours - self.paper:+.2f} (no published std)"
        return f"{self.delta:+.1f}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"delta_in_published_std": self.delta}


def fmt(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BnafError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _mean_std(value: Any, where: str) -> tuple[float | None, float | None]:
    if value is None:
        return None, None
    if isinstance(value, dict):
        if "mean" not in value:
            raise BnafError(f"{where}: a value object needs 'mean', got keys {sorted(value)}")
        mean = None if value["mean"] is None else _number(value["mean"], f"{where}.mean")
        std = value.get("std")
        return mean, None if std is None else _number(std, f"{where}.std")
    if isinstance(value, list):
        if len(value) != 2:
            raise BnafError(f"{where}: expected [mean, std], got {value!r}")
        return _number(value[0], f"{where}[0]"), _number(value[1], f"{where}[1]")
    return _number(value, where), None


def _item_name(item: Any, index: int) -> str:
    if isinstance(item, dict):
        parts = [str(item[k]) for k in _NAME_KEYS if isinstance(item.get(k), str | int)]
        if parts:
            return " ".join(parts)
    return str(index)


def _generic(part: str, data: Any) -> list[Comparison]:
    r"""Any ``{"ours": value, "paper"|"published": value}`` object, wherever it sits."""
    found: list[Comparison] = []

    def walk(node: Any, path: list[str]) -> None:
        if isinstance(node, dict):
            paper_key = (
                "paper" if "paper" in node else "published" if "published" in node else None
            )
            if "ours" in node and paper_key is not None:
                try:
                    ours = _mean_std(node["ours"], part)
                    paper = _mean_std(node[paper_key], part)
                except BnafError:
                    ours = paper = None  # not a pair of values: a container, keep looking
                if ours is not None and paper is not None:
                    found.append(Comparison(part, " / ".join(path) or part, *ours, *paper))
                    return
            for key, value in node.items():
                if key not in ("differences", "not_run", "environment", "config", "params"):
                    walk(value, [*path, key])
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, [*path, _item_name(item, i)])

    walk(data, [])
    return found


def _need(data: Any, key: str, where: str) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise BnafError(f"{where}: missing key '{key}'")
    return data[key]


def _table1(part: str, data: dict[str, Any]) -> list[Comparison]:
    r"""Table 1: test log-likelihood per dataset, then the NAF/B-NAF parameter ratios."""
    rows, ratios = [], []
    for i, r in enumerate(_need(data, "results", part)):
        where = f"{part}.results[{i}]"
        d = _need(r, "dataset", where)
        ll = _need(r, "test_ll", where)
        rows.append(
            Comparison(
                part,
                f"{d}: test log-likelihood (nats)",
                *_mean_std(_need(ll, "ours", f"{where}.test_ll"), where),
                *_mean_std(_need(ll, "paper", f"{where}.test_ll"), where),
            )
        )
        for key, label in (("ratio_naf5", "NAF(5)"), ("ratio_naf10", "NAF(10)")):
            if r.get(key):
                ours, paper = r[key].get("ours"), r[key].get("paper")
                ratios.append(
                    Comparison(
                        part,
                        f"{d}: {label} / B-NAF parameters",
                        _number(ours, f"{where}.{key}.ours"),
                        None,
                        None if paper is None else _number(paper, f"{where}.{key}.paper"),
                        None,
                    )
                )
    return rows + ratios


def _table2(part: str, data: dict[str, Any]) -> list[Comparison]:
    r"""Table 2: -ELBO and NLL per dataset and model, then the Section 5.4 size ratios."""
    found = []
    for config, datasets in _need(data, "ours", part).items():
        for d, cells in datasets.items():
            for key, cell in cells.items():
                where = f"{part}.ours.{config}.{d}.{key}"
                label = {"test_neg_elbo": "-ELBO", "test_nll": "NLL"}.get(key, key)
                found.append(
                    Comparison(
                        part,
                        f"{d}: {label} ({config}, {cell.get('unit', '')})".replace(", )", ")"),
                        *_mean_std(cell, where),
                        _number(_need(cell, "paper", where), f"{where}.paper"),
                        _number(_need(cell, "paper_std", where), f"{where}.paper_std"),
                    )
                )
    counts = data.get("counts") or {}
    paper = counts.get("paper") or {}
    for ours_key, paper_key, label in (
        ("trainable_ratio_paper", "trainable_ratio", "trainable parameters, {m} / B-NAF"),
        ("values_ratio", "values_ratio", "amortised values per datapoint, {m} / B-NAF"),
    ):
        for m, value in (counts.get(ours_key) or {}).items():
            ref = (paper.get(paper_key) or {}).get(m)
            where = f"{part}.counts.{ours_key}.{m}"
            found.append(
                Comparison(
                    part,
                    label.format(m=m),
                    _number(value, where),
                    None,
                    None if ref is None else _number(ref, f"{part}.counts.paper"),
                    None,
                )
            )
    return found


#: part name -> reader of its JSON twin's reproduced-vs-published numbers
ADAPTERS: dict[str, Callable[[str, dict[str, Any]], list[Comparison]]] = {
    "table1": _table1,
    "table2": _table2,
}


def comparisons(part: str, data: dict[str, Any]) -> list[Comparison]:
    """Every reproduced number of a part with its published counterpart, in table order."""
    return ADAPTERS.get(part, _generic)(part, data)


def text_items(items: list[Any]) -> list[str]:
    """A ``differences`` list as lines: strings as they are, objects as ``key: value; ...``."""
    lines = []
    for item in items:
        if isinstance(item, str):
            lines.append(item)
        elif isinstance(item, dict):
            lines.append("; ".join(f"{k}: {v}" for k, v in item.items()))
        else:
            raise BnafError(f"a differences/not_run entry must be text or an object: {item!r}")
    return lines


def difference_rows(items: list[Any]) -> list[dict[str, str]]:
    r"""A ``differences`` list as rows ``topic / paper / code / ours`` (text items go in ours)."""
    rows = []
    for item in items:
        if isinstance(item, str):
            rows.append({"topic": "", "paper": "", "code": "", "ours": item})
        elif isinstance(item, dict):
            known = ("topic", "what", "paper", "code", "ours")
            extra = "; ".join(f"{k}: {v}" for k, v in item.items() if k not in known)
            ours = "; ".join(x for x in (str(item.get("ours", "")), extra) if x)
            topic = item.get("topic", item.get("what", ""))
            rows.append(
                {"topic": str(topic), "paper": str(item.get("paper", "")),
                 "code": str(item.get("code", "")), "ours": ours}
            )  # fmt: skip
        else:
            raise BnafError(f"a differences entry must be text or an object: {item!r}")
    return rows


def not_run_items(items: list[Any]) -> list[str]:
    """A ``not_run`` list as lines naming what, why, and how to supply it."""
    lines = []
    for item in items:
        if isinstance(item, dict):
            what = next((str(item[k]) for k in (*_NAME_KEYS, "what") if k in item), "?")
            line = f"`{what}`: {item.get('reason', 'no reason given')}"
            if item.get("how_to_supply"):
                line += f" To supply it: {item['how_to_supply']}"
            lines.append(line)
        else:
            lines += text_items([item])
    return lines
