r"""The ``normalisation:`` section of ``params/<budget>/normalisation.yaml`` (do trained flows
integrate to one? the samples figure; beyond the paper) and the ``report:`` section of
``params/<budget>/report.yaml`` (which parts the report assembles)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bnaf.core.config import between, load

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
    grid_limit: float = between(0, lo_open=True)
    grid_step: float = between(0, lo_open=True)
    mc_samples: int = between(2)


@dataclass
class UciCheck:
    mc_samples: int = between(2)


@dataclass
class SamplesFigure:
    n: int = between(1)
    figure_limit: float = between(0, lo_open=True)
    bins: int = between(1)


@dataclass
class Onto:
    target: str
    variants: list[str]
    flows: int = between(1)
    layers: int = between(1)
    hidden_factor: int = between(1)
    steps: int = between(1)
    batch_size: int = between(1)
    lr: float = between(0, lo_open=True)


@dataclass
class NormalisationParams:
    budget: str
    reduced: bool
    seed: int = between(0)
    device: str
    threads: int = between(1)
    batch_size: int = between(1)
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
