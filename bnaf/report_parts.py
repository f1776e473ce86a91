r"""Reading the parts' JSON twins for the report: reproduced-vs-published pairs, lists.

A part marks a reproduced number that has a published counterpart by an object holding both,
anywhere in its JSON::

    {"ours": {"mean": 0.58, "std": 0.01, "n": 3}, "paper": {"mean": 0.61, "std": 0.01}}

(``published`` is accepted for ``paper``; a value may also be a plain number or ``[mean, std]``).
The row is labelled by the path to it, with list items named by their ``dataset``/``name``/
``model``/``label`` field, so each part keeps the layout that suits its own table.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from bnaf.errors import BnafError

__all__ = ["Comparison", "comparisons", "fmt", "not_run_items", "text_items"]

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


def comparisons(part: str, data: Any) -> list[Comparison]:
    """Every ours/published pair in a part's JSON, in document order."""
    found: list[Comparison] = []

    def walk(node: Any, path: list[str]) -> None:
        if isinstance(node, dict):
            paper_key = (
                "paper" if "paper" in node else "published" if "published" in node else None
            )
            if "ours" in node and paper_key is not None:
                where = f"{part}:{'.'.join(path) or '<root>'}"
                ours, ours_std = _mean_std(node["ours"], f"{where}.ours")
                paper, paper_std = _mean_std(node[paper_key], f"{where}.{paper_key}")
                what = " / ".join(path) or part
                found.append(Comparison(part, what, ours, ours_std, paper, paper_std))
                return
            for key, value in node.items():
                if key in ("differences", "not_run", "environment", "config"):
                    continue
                walk(value, [*path, key])
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, [*path, _item_name(item, i)])

    walk(data, [])
    return found


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
