r"""What a JSON file written by one stage must hold when the next stage reads it.

A stage's output (a run's ``metrics.json``, a selection, a download status) is read by another
process, perhaps from another version of the code or after a hand edit. The reader states the
keys it will index, as a *shape*, and :func:`check` turns the first mismatch into one
:class:`~bnaf.core.errors.BnafError` naming the file and the key, instead of a ``KeyError`` or
``TypeError`` traceback deep in a table.

A shape is one of:

- a ``dict`` of key -> shape: a JSON object holding at least those keys (a key written with a
  trailing ``?`` may be absent);
- a type: ``str``, ``bool``, ``int`` (not a bool), ``float`` (a finite number, int or float, not
  a bool), ``dict``, ``list``;
- a ``frozenset`` of the allowed values;
- ``[shape]``: a list whose every element has that shape;
- :class:`MapOf` (an object with any keys, every value of one shape), :class:`Maybe`
  (``null`` or the shape).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bnaf.core.errors import BnafError

__all__ = ["MapOf", "Maybe", "check"]


@dataclass(frozen=True)
class MapOf:
    r"""A JSON object with any keys, each value of shape ``value``."""

    value: Any


@dataclass(frozen=True)
class Maybe:
    r"""``null`` or the shape ``value``."""

    value: Any


_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a finite number",
          dict: "an object", list: "a list"}  # fmt: skip


def _problem(data: Any, shape: Any, at: str) -> str | None:
    r"""What is wrong with ``data`` at key path ``at`` (``None``: nothing)."""
    if isinstance(shape, Maybe):
        return None if data is None else _problem(data, shape.value, at)
    where = f"'{at.removesuffix('.')}'" if at else "the file"
    if isinstance(shape, dict):
        if not isinstance(data, dict):
            return f"{where} is {_show(data)}, expected an object"
        for key, sub in shape.items():
            optional = key.endswith("?")
            key = key.removesuffix("?")
            if key not in data:
                if optional:
                    continue
                return f"missing key '{at + key}'"
            found = _problem(data[key], sub, f"{at}{key}.")
            if found:
                return found
        return None
    if isinstance(shape, MapOf | list):  # every value of an object, or every element
        mapping = isinstance(shape, MapOf)
        if not isinstance(data, dict if mapping else list):
            return f"{where} is {_show(data)}, expected {'an object' if mapping else 'a list'}"
        inner = shape.value if mapping else shape[0]
        items = (
            ((f"{at}{k}.", v) for k, v in data.items())
            if mapping
            else ((f"{at.removesuffix('.')}[{k}].", v) for k, v in enumerate(data))
        )
        for path, value in items:
            found = _problem(value, inner, path)
            if found:
                return found
        return None
    if isinstance(shape, frozenset):
        if isinstance(data, dict | list) or data not in shape:
            allowed = ", ".join(sorted(repr(v) for v in shape))
            return f"{where} is {_show(data)}, expected one of {allowed}"
        return None
    if _fits(data, shape):
        return None
    return f"{where} is {_show(data)}, expected {_NAMES[shape]}"


def _fits(data: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(data, int | float) and not isinstance(data, bool) and math.isfinite(data)
    if kind is int:
        return isinstance(data, int) and not isinstance(data, bool)
    return isinstance(data, kind)


def _show(data: Any) -> str:
    if data is None:
        return "null"
    if isinstance(data, dict):
        return "an object"
    if isinstance(data, list):
        return "a list"
    text = repr(data) if not isinstance(data, bool) else str(data).lower()
    return text if len(text) <= 40 else text[:37] + "..."


def check(data: Any, shape: Any, where: str) -> Any:
    r"""``data`` itself when it has ``shape`` (module docstring); else one
    :class:`~bnaf.core.errors.BnafError` ``"<where>: <what is wrong>"``."""
    problem = _problem(data, shape, "")
    if problem:
        raise BnafError(f"{where}: {problem}")
    return data
