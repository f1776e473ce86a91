r"""Parameters of the toy experiments: ``params/<budget>/toy.yaml`` (section ``toy``).

Field names equal the YAML keys (strict loading, :func:`bnaf.core.config.load`); the YAML files
cite
the paper or the authors' ``toy2d.py`` for every value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bnaf.core.config import between, load
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
    lr: float = between(0, lo_open=True)
    amsgrad: bool
    momentum: float = between(0, 1, hi_open=True)
    decay: float = between(0, 1, lo_open=True, hi_open=True)
    patience: int = between(1)
    min_lr: float = between(0)
    threshold: float = between(0)
    clip_norm: float | None = between(0, lo_open=True)
    iterations: int = between(1)
    batch_size: int = between(1)


@dataclass
class BnafModel:
    flow: FlowConfig
    optimiser: Optimiser


@dataclass
class GlowModel:
    depth: int = between(1)
    hidden: int = between(1)
    optimiser: Optimiser


@dataclass
class PlanarModel:
    flows: int = between(1)
    init_std: float = between(0, lo_open=True)
    optimiser: Optimiser


@dataclass
class DensityExperiment:
    targets: list[str]
    models: list[str]
    test_samples: int = between(2)
    grid_limit: float = between(0, lo_open=True)
    grid_step: float = between(0, lo_open=True)
    bnaf: BnafModel
    glow: GlowModel


@dataclass
class EnergyExperiment:
    targets: list[str]
    models: list[str]
    bound: float | None = between(0, lo_open=True)
    kl_samples: int = between(2)
    coverage_level: float = between(0, 1, lo_open=True, hi_open=True)
    grid_limit: float = between(0, lo_open=True)
    grid_step: float = between(0, lo_open=True)
    bnaf: BnafModel
    planar: PlanarModel


@dataclass
class Resources:
    mem_mb: int = between(1)
    runtime: int = between(1)
    gpu: int = between(0)


@dataclass
class ToyParams:
    budget: str
    seed: int = between(0)
    device: str
    threads: int = between(1)
    log_every: int = between(1)
    checkpoint_every: int = between(1)
    keep_checkpoint: bool
    figure_limit: float = between(0, lo_open=True)
    #: the committed paper-budget toy table the toy table compares with (paper budget only)
    reference: str | None
    #: baselines whose runs of one kind train side by side in one job (:mod:`bnaf.toy.pack`)
    pack: list[Literal["glow", "planar"]]
    resources: Resources
    density: DensityExperiment
    energy: EnergyExperiment

    def experiment(self, kind: str) -> DensityExperiment | EnergyExperiment:
        r"""The section of ``kind``: ``density`` (Section 5.1) or ``energy`` (Section 5.2)."""
        return self.density if kind == "density" else self.energy


def load_toy(path: str | Path) -> ToyParams:
    return load(path, ToyParams, section="toy")
