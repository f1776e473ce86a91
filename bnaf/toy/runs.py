r"""The runs of the toy part (Sections 5.1-5.2, Figures 2-3): their names and paths.

The one place the naming scheme exists: a run is ``results/toy/<kind>/<target>/<model>`` with
``kind`` ``density`` (Section 5.1) or ``energy`` (Section 5.2); its seed is ``toy.seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bnaf.core.runs import Run
from bnaf.toy.params import ToyParams

__all__ = ["FIGURES", "KINDS", "MODELS", "RUN", "ToyRun", "runs"]

RUN = "results/toy/{kind}/{target}/{model}"
#: experiment kind -> models it can train
MODELS: dict[str, tuple[str, ...]] = {"density": ("bnaf", "glow"), "energy": ("bnaf", "planar")}
KINDS = tuple(MODELS)
#: figure -> the kind of runs it draws (Figure 2: Section 5.1, Figure 3: Section 5.2)
FIGURES: dict[str, str] = {"figure2": "density", "figure3": "energy"}


@dataclass(frozen=True)
class ToyRun(Run):
    PATTERN: ClassVar[str] = RUN
    kind: str
    target: str
    model: str


def runs(params: ToyParams, kind: str | None = None, model: str | None = None) -> list[ToyRun]:
    r"""Every (kind, target, model) of ``toy.{density,energy}``, optionally of one kind/model."""
    out = []
    for k in KINDS if kind is None else (kind,):
        exp = params.density if k == "density" else params.energy
        out += [ToyRun(k, t, m) for t in exp.targets for m in exp.models if model in (None, m)]
    return out
