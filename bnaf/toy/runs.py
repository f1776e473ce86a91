r"""The runs of the toy part (Sections 5.1-5.2, Figures 2-3): their names and paths.

The one place the naming scheme exists: a run is ``results/toy/<kind>/<target>/<model>`` with
``kind`` ``density`` (Section 5.1) or ``energy`` (Section 5.2); its seed is ``toy.seed``. A *job*
(:func:`jobs`) trains one run, or every target of a packed model (``toy.pack``) side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bnaf.core.runs import Run
from bnaf.toy.params import ToyParams

__all__ = ["FIGURES", "KINDS", "MODELS", "RUN", "Job", "ToyRun", "jobs", "runs", "solo_models"]

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
        exp = params.experiment(k)
        out += [ToyRun(k, t, m) for t in exp.targets for m in exp.models if model in (None, m)]
    return out


@dataclass(frozen=True)
class Job:
    r"""The toy runs one ``toy train`` process trains: one run, or a pack of one model's runs
    of one kind (all its targets)."""

    kind: str
    model: str
    targets: tuple[str, ...]

    @property
    def runs(self) -> list[ToyRun]:
        return [ToyRun(self.kind, t, self.model) for t in self.targets]

    @property
    def rule(self) -> str:
        r"""The Snakemake rule of a pack (one rule per pack: its outputs name every target)."""
        return f"toy_train_{self.kind}_{self.model}"

    def files(self, name: str) -> list[str]:
        return [f"{r.path}/{name}" for r in self.runs]


def jobs(params: ToyParams) -> list[Job]:
    r"""The packs of ``params``: one job per (kind, model) of ``toy.pack`` with all its
    targets. The other runs are one job each (:func:`solo_models`)."""
    out = []
    for kind in KINDS:
        exp = params.experiment(kind)
        out += [Job(kind, m, tuple(exp.targets)) for m in exp.models if m in params.pack]
    return out


def solo_models(params: ToyParams) -> str:
    r"""A regular expression matching the models trained one run per job (the rest of
    :data:`MODELS`), for the per-run rule's wildcard."""
    solo = sorted({m for ms in MODELS.values() for m in ms} - set(params.pack))
    return "|".join(solo) if solo else "(?!)"  # (?!) matches nothing
