r"""The ``vae:`` section of ``params/<budget>/vae.yaml`` (Section 5.4); runs:
:mod:`bnaf.vae.runs`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bnaf.core.config import load
from bnaf.core.errors import BnafError
from bnaf.flows.config import FlowConfig

__all__ = [
    "FlowShape",
    "Resources",
    "VaeParams",
    "load_vae",
]


@dataclass
class FlowShape:
    flows: int  # K
    hidden_factor: int  # H / d


@dataclass
class Resources:
    threads: int
    mem_mb: int
    runtime: int  # minutes
    gpu: int


@dataclass
class VaeParams:
    budget: str
    datasets: list[str]
    grid_dataset: str
    grid: list[FlowShape]
    best: FlowShape
    plain_vae: bool
    seeds: list[int]
    latent: int
    flow: FlowConfig
    batch_size: int
    lr: float
    adamax_eps: float
    warmup_epochs: int
    max_beta: float
    early_stopping_epochs: int
    max_epochs: int
    train_subset: int | None
    valid_subset: int | None
    test_subset: int | None
    check_sizes: bool
    eval_batch: int
    nll_samples: dict[str, int]
    nll_chunk: int
    device: str
    resources: Resources


def load_vae(path: str | Path) -> VaeParams:
    params = load(path, VaeParams, section="vae")
    for shape in [*params.grid, params.best]:
        if shape.flows < 1 or shape.hidden_factor < 1:
            raise BnafError(f"{path}: flows and hidden_factor must be >= 1")
    if params.grid_dataset not in params.datasets:
        raise BnafError(f"{path}: grid_dataset {params.grid_dataset!r} is not in datasets")
    missing = [d for d in params.datasets if d not in params.nll_samples]
    if missing:
        raise BnafError(f"{path}: nll_samples has no entry for {', '.join(missing)}")
    return params

