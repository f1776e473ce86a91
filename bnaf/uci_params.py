r"""The ``uci:`` section of ``params/<budget>/uci.yaml`` (density estimation, Section 5.3).

Field names equal the YAML keys (strict loading by :func:`bnaf.config.load`); the YAML files
carry the citations for every value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bnaf.config import load
from bnaf.errors import BnafError

__all__ = [
    "Grid",
    "ModelParams",
    "TrainParams",
    "Resources",
    "TableParams",
    "UciParams",
    "load_uci",
    "config_name",
    "parse_config_name",
]


@dataclass
class Grid:
    layers: list[int]
    hidden_factor: list[int]


@dataclass
class ModelParams:
    flows: int
    residual: Literal["none", "normal", "gated"]
    activation: Literal["tanh", "leakyrelu"]
    permutation: Literal["flip", "random"]
    init: Literal["authors", "paper"]
    final_residual: bool


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
    model: ModelParams
    train: TrainParams
    resources: Resources
    table: TableParams
    notes: list[str] = field(default_factory=list)

    @property
    def configs(self) -> list[str]:
        return [config_name(L, k) for L in self.grid.layers for k in self.grid.hidden_factor]


def load_uci(path: str | Path) -> UciParams:
    return load(path, UciParams, section="uci")


def config_name(layers: int, hidden_factor: int) -> str:
    r"""``L2_H40``: ``L`` hidden layers of ``H = 40 d`` units per flow (Section 5.3 grid)."""
    return f"L{layers}_H{hidden_factor}"


_CONFIG = re.compile(r"L(\d+)_H(\d+)")


def parse_config_name(name: str) -> tuple[int, int]:
    match = _CONFIG.fullmatch(name)
    if not match:
        raise BnafError(
            f"bad config name {name!r}; expected L<layers>_H<hidden factor>, e.g. L2_H40"
        )
    return int(match.group(1)), int(match.group(2))
