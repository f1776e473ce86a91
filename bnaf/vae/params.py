r"""The ``vae:`` section of ``params/<budget>/vae.yaml`` (Section 5.4); runs:
:mod:`bnaf.vae.runs`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bnaf.core.config import between, load
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
    flows: int = between(1)  # K
    hidden_factor: int = between(1)  # H / d


@dataclass
class Resources:
    threads: int = between(1)
    mem_mb: int = between(1)
    runtime: int = between(1)  # minutes
    gpu: int = between(0)


@dataclass
class VaeParams:
    budget: str
    datasets: list[str]
    grid_dataset: str
    grid: list[FlowShape]
    best: FlowShape
    plain_vae: bool
    seeds: list[int] = between(0)
    latent: int = between(1)
    flow: FlowConfig
    batch_size: int = between(1)
    lr: float = between(0, lo_open=True)
    adamax_eps: float = between(0, lo_open=True)
    warmup_epochs: int = between(0)
    max_beta: float = between(0, lo_open=True)
    early_stopping_epochs: int = between(1)
    max_epochs: int = between(1)
    train_subset: int | None = between(1)
    valid_subset: int | None = between(1)
    test_subset: int | None = between(1)
    check_sizes: bool
    eval_batch: int = between(1)
    nll_samples: dict[str, int] = between(1)
    nll_chunk: int = between(1)
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
