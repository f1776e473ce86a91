r"""The ``uci:`` section of ``params/<budget>/uci.yaml`` (density estimation, Section 5.3).

Field names equal the YAML keys (strict loading by :func:`bnaf.core.config.load`); the YAML files
carry the citations for every value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bnaf.core.config import load
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
    layers: list[int]
    hidden_factor: list[int]


@dataclass
class TrainParams:
    batch_size: int
    optimizer: Literal["adam", "amsgrad"]
    lr: float
    betas: list[float]
    eps: float
    clip_norm: float
    polyak: float
    polyak_init: Literal["zeros", "params"]
    lr_decay: float
    patience: int
    cooldown: int
    min_lr: float
    threshold: float
    threshold_mode: Literal["abs", "rel"]
    reload_best_on_decay: bool
    early_stopping: int
    max_epochs: int
    train_subset: int | float | None
    selection_mean: Literal["sample", "batch"]
    eval_batch_size: int
    nonfinite_retries: int
    nonfinite_lr_factor: float
    keep_checkpoint: bool
    device: str
    threads: int


@dataclass
class Resources:
    threads: int
    mem_mb: int
    gpu: int
    runtime: int | dict[str, int]  # minutes; or per dataset, with "default" for the rest


@dataclass
class TableParams:
    std_ddof: int


@dataclass
class UciParams:
    budget: str
    reduced: bool
    datasets: list[str]
    seeds: list[int]
    grid: Grid
    flow: FlowConfig
    train: TrainParams
    resources: Resources
    table: TableParams
    notes: list[str] = field(default_factory=list)


def load_uci(path: str | Path) -> UciParams:
    return load(path, UciParams, section="uci")

