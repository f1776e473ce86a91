r"""Parameters of the toy experiments: ``params/<budget>/toy.yaml`` (section ``toy``).

Field names equal the YAML keys (strict loading, :func:`bnaf.core.config.load`); the YAML files
cite
the paper or the authors' ``toy2d.py`` for every value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bnaf.core.config import load
from bnaf.flows.config import FlowConfig

__all__ = [
    "BnafModel",
    "DensityExperiment",
    "EnergyExperiment",
    "GlowModel",
    "Optimiser",
    "PlanarModel",
    "Resources",
    "ToyParams",
    "load_toy",
]


@dataclass
class Optimiser:
    name: Literal["adam", "rmsprop"]
    lr: float
    amsgrad: bool
    momentum: float
    decay: float
    patience: int
    min_lr: float
    threshold: float
    clip_norm: float | None
    iterations: int
    batch_size: int


@dataclass
class BnafModel:
    flow: FlowConfig
    optimiser: Optimiser


@dataclass
class GlowModel:
    depth: int
    hidden: int
    optimiser: Optimiser


@dataclass
class PlanarModel:
    flows: int
    init_std: float
    optimiser: Optimiser


@dataclass
class DensityExperiment:
    targets: list[str]
    models: list[str]
    test_samples: int
    grid_limit: float
    grid_step: float
    bnaf: BnafModel
    glow: GlowModel


@dataclass
class EnergyExperiment:
    targets: list[str]
    models: list[str]
    bound: float | None
    kl_samples: int
    coverage_level: float
    grid_limit: float
    grid_step: float
    bnaf: BnafModel
    planar: PlanarModel


@dataclass
class Resources:
    mem_mb: int
    runtime: int
    gpu: int


@dataclass
class ToyParams:
    budget: str
    seed: int
    device: str
    threads: int
    log_every: int
    figure_limit: float
    resources: Resources
    density: DensityExperiment
    energy: EnergyExperiment


def load_toy(path: str | Path) -> ToyParams:
    return load(path, ToyParams, section="toy")
