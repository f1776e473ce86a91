r"""A run of an experiment family: the fields that name it and the folder pattern they fill.

Each family declares its run once (``bnaf/<family>/runs.py``: a subclass with its fields and
``PATTERN``), so the naming scheme of its result folders exists in one place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

__all__ = ["Run"]


@dataclass(frozen=True)
class Run:
    #: the run's folder as a ``str.format`` pattern over the subclass's fields
    PATTERN: ClassVar[str] = ""

    @property
    def path(self) -> str:
        return self.PATTERN.format(**asdict(self))
