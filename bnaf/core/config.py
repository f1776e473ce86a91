r"""Strict loading of ``params/<budget>/*.yaml`` into dataclasses.

Every params file maps onto a dataclass whose fields are exactly its keys, so a misspelt or
unknown key fails at once with a message naming the key and the file (conventions, item 4).
Nested dataclasses, ``list[...]``, ``dict[str, ...]`` and ``X | None`` fields are supported.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from bnaf.core.errors import BnafError

__all__ = ["ConfigError", "between", "from_dict", "json_schema", "load", "read_yaml", "to_dict"]

T = TypeVar("T")


class ConfigError(BnafError, ValueError):
    """A params file that does not match its dataclass (unknown, missing or mistyped key)."""


def between(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    **field_kwargs: Any,
) -> Any:
    r"""A dataclass field whose value (or each item of a list value) must lie in the range
    ``lo .. hi`` (open at an end with ``lo_open``/``hi_open``); checked by the strict loader and
    written into the Snakemake schema (:func:`json_schema`), so both refuse the same values."""
    meta = {"min": lo, "max": hi, "min_open": lo_open, "max_open": hi_open}
    return dataclasses.field(metadata=meta, **field_kwargs)


def _check_range(value: Any, meta: Any, where: str) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    if lo is None and hi is None:
        return
    items = value if isinstance(value, list) else [value]
    for item in items:
        if item is None or isinstance(item, bool) or not isinstance(item, int | float):
            continue
        bad = (lo is not None and (item <= lo if meta.get("min_open") else item < lo)) or (
            hi is not None and (item >= hi if meta.get("max_open") else item > hi)
        )
        if bad or item != item:  # NaN is outside every range
            left = "(" if meta.get("min_open") else "["
            right = ")" if meta.get("max_open") else "]"
            span = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
            raise ConfigError(f"{where}: {item!r} is outside the allowed range {span}")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a clear error when the file is missing or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{line}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping at the top level, got {type(data).__name__}"
        )
    return data


def load(path: str | Path, cls: type[T], section: str | None = None) -> T:
    """Load ``path`` (optionally one top-level ``section`` of it) into dataclass ``cls``."""
    data = read_yaml(path)
    where = str(path)
    if section is not None:
        if section not in data:
            raise ConfigError(f"{where}: missing section '{section}'")
        data = data[section]
        where = f"{where}:{section}"
    return from_dict(cls, data, where)


def from_dict(cls: type[T], data: Any, where: str = "<params>") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown and missing keys."""
    return _convert(cls, data, where)


def to_dict(obj: Any) -> Any:
    """The inverse of :func:`from_dict`: plain dicts/lists for JSON or YAML."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    return obj


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
                f"allowed: {', '.join(sorted(fields))}"
            )
        kwargs = {}
        for name, f in fields.items():
            if name in value:
                kwargs[name] = _convert(hints[name], value[name], f"{where}.{name}")
                _check_range(kwargs[name], f.metadata, f"{where}.{name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing required key '{name}'")
        return tp(**kwargs)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def json_schema(tp: Any) -> dict[str, Any]:
    r"""The JSON schema of a params type, for Snakemake's ``validate`` (``bnaf.schema``): the
    same fields, types, choices and ranges the strict loader checks, so the two cannot drift."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        props, required = {}, []
        for f in dataclasses.fields(tp):
            if not f.init:
                continue
            props[f.name] = {**json_schema(hints[f.name]), **_range_schema(f.metadata)}
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                required.append(f.name)
        out: dict[str, Any] = {"type": "object", "additionalProperties": False}
        if required:
            out["required"] = required
        out["properties"] = props
        return out
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [json_schema(a) for a in args]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, tuple):
        return {"type": "array", "items": json_schema(args[0]) if args else {}}
    if origin is dict:
        return {"type": "object", "additionalProperties": json_schema(args[1]) if args else {}}
    simple = {float: "number", int: "integer", bool: "boolean", str: "string", type(None): "null"}
    return {"type": simple[tp]} if tp in simple else {}


def _range_schema(metadata: Any) -> dict[str, Any]:
    lo, hi = metadata.get("min"), metadata.get("max")
    out: dict[str, Any] = {}
    if lo is not None:
        out["exclusiveMinimum" if metadata.get("min_open") else "minimum"] = lo
    if hi is not None:
        out["exclusiveMaximum" if metadata.get("max_open") else "maximum"] = hi
    return out
