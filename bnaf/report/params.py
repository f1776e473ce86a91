r"""The ``normalisation:`` section of ``params/<budget>/normalisation.yaml`` (do trained flows
integrate to one? the samples figure; beyond the paper) and the ``report:`` section of
``params/<budget>/report.yaml`` (which parts the report assembles)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bnaf.core.config import load

__all__ = [
    "NormalisationParams",
    "Onto",
    "PartSpec",
    "ReportParams",
    "SamplesFigure",
    "ToyCheck",
    "UciCheck",
    "load_normalisation",
    "load_report",
]


@dataclass
class ToyCheck:
    grid_limit: float
    grid_step: float
    mc_samples: int


@dataclass
class UciCheck:
    mc_samples: int


@dataclass
class SamplesFigure:
    n: int
    figure_limit: float
    bins: int


@dataclass
class Onto:
    target: str
    variants: list[str]
    flows: int
    layers: int
    hidden_factor: int
    steps: int
    batch_size: int
    lr: float


@dataclass
class NormalisationParams:
    budget: str
    reduced: bool
    seed: int
    device: str
    threads: int
    batch_size: int
    toy: ToyCheck
    uci: UciCheck
    samples: SamplesFigure
    onto: Onto
    resources: dict[str, int]


@dataclass
class PartSpec:
    name: str
    title: str
    rules: str  # the rule file workflow/rules/<rules>.smk that makes the files below
    json: str
    markdown: str = ""
    figures: list[str] = field(default_factory=list)


@dataclass
class ReportParams:
    budget: str
    reduced: bool
    parts: list[PartSpec]


def load_normalisation(path: str | Path) -> NormalisationParams:
    return load(path, NormalisationParams, section="normalisation")


def load_report(path: str | Path) -> ReportParams:
    return load(path, ReportParams, section="report")
