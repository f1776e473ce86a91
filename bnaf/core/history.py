r"""A run's training history as a CSV file (``history.csv`` beside its ``metrics.json``).

Every training stage keeps its history as a list of rows in ``metrics.json`` (one per epoch,
or per logged iteration for the toy models). :func:`write_history` writes the same rows as a
CSV file, which ``dvc plots show`` draws as learning curves; :func:`read_history` reads one
back for the report's learning-curves figure.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bnaf.core.errors import BnafError
from bnaf.core.io import atomic_write_text, read_text

__all__ = ["read_history", "write_history"]


def _cell(value: Any) -> Any:
    # None (a non-finite validation figure) is an empty cell; floats keep every digit (repr).
    return "" if value is None else value


def write_history(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    r"""Write ``rows`` as CSV atomically: a header line, then one line per row.

    Arguments:
        path: the file to write (``<run>/history.csv``).
        rows: the history, each row a mapping from column to value.

    The columns are the rows' keys in the order they first appear (the first row's order for
    a history whose rows share their keys), so a file's layout is stable from run to run; a
    key a row lacks is an empty cell.
    """
    rows = list(rows)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    atomic_write_text(path, buffer.getvalue())


def _number(text: str) -> float:
    if text == "":
        return math.nan
    if text in ("True", "False"):
        return float(text == "True")
    return float(text)


def read_history(path: str | Path) -> dict[str, list[float]]:
    r"""Read a history CSV as numeric columns: column -> values in row order.

    An empty cell is NaN and ``True``/``False`` are 1/0. A missing or unreadable file, one
    without a header, a row of the wrong length or a cell that is not a number is one
    :class:`~bnaf.core.errors.BnafError` naming the file.
    """
    lines = list(csv.reader(io.StringIO(read_text(path))))
    if not lines or not lines[0]:
        raise BnafError(f"{path}: not a history CSV (no header line)")
    header = lines[0]
    if len(set(header)) != len(header):
        raise BnafError(f"{path}: a column name appears twice in the header")
    columns: dict[str, list[float]] = {name: [] for name in header}
    for number, line in enumerate(lines[1:], start=2):
        if len(line) != len(header):
            raise BnafError(f"{path}: line {number} has {len(line)} cells, not {len(header)}")
        for name, cell in zip(header, line):
            try:
                columns[name].append(_number(cell))
            except ValueError:
                msg = f"{path}: line {number}, column {name}: {cell!r} is not a number"
                raise BnafError(msg) from None
    return columns
