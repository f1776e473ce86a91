r"""The ``uci:`` section of ``params/<budget>/uci.yaml`` (density estimation, Section 5.3).

Field names equal the YAML keys (strict loading by :func:`bnaf.core.config.load`); the YAML files
carry the citations for every value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bnaf.core.config import between, load
from bnaf.flows.config import FlowConfig

__all__ = [
    "Grid",
    "TrainParams",
    "Resources",
    "TableParams",
    "UciParams",
    "load_uci",
]


@dataclass
class Grid:
    layers: list[int] = between(1)
    hidden_factor: list[int] = between(1)


@dataclass
class TrainParams:
    batch_size: int = between(1)
    optimizer: Literal["adam", "amsgrad"]
    lr: float = between(0, lo_open=True)
    betas: list[float] = between(0, 1, hi_open=True)
    eps: float = between(0)
    clip_norm: float = between(0, lo_open=True)
    polyak: float = between(0, 1, hi_open=True)
    polyak_init: Literal["zeros", "params"]
    lr_decay: float = between(0, 1, lo_open=True, hi_open=True)
    patience: int = between(1)
    cooldown: int = between(0)
    min_lr: float = between(0)
    threshold: float = between(0)
    threshold_mode: Literal["abs", "rel"]
    reload_best_on_decay: bool
    early_stopping: int = between(1)
    max_epochs: int = between(1)
    train_subset: int | float | None = between(0, lo_open=True)
    selection_mean: Literal["sample", "batch"]
    eval_batch_size: int = between(1)
    nonfinite_retries: int = between(0)
    nonfinite_lr_factor: float = between(0, 1, lo_open=True, hi_open=True)
    keep_checkpoint: bool
    checkpoint_every: int = between(1)
    device: str
    threads: int = between(1)
    compile: bool  # the training loss through torch.compile (bnaf.flows.compiled)
    fused_adam: bool  # Adam's update as one fused kernel per parameter (bnaf.core.optim)


@dataclass
class Resources:
    threads: int = between(1)
    mem_mb: int = between(1)
    gpu: int = between(0)
    runtime: int | dict[str, int]  # minutes; or per dataset, with "default" for the rest
    pack_seeds: bool  # one job trains a grid point's seeds together (bnaf.uci.pack)


@dataclass
class TableParams:
    std_ddof: int = between(0, 1)


@dataclass
class UciParams:
    budget: str
    reduced: bool
    datasets: list[str]
    seeds: list[int] = between(0)
    grid: Grid
    flow: FlowConfig
    train: TrainParams
    resources: Resources
    table: TableParams
    notes: list[str] = field(default_factory=list)


def load_uci(path: str | Path) -> UciParams:
    return load(path, UciParams, section="uci")
