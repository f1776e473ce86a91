r"""The ``vae:`` section of ``params/<budget>/vae.yaml`` (Section 5.4) and run naming.

A run is ``results/vae/<dataset>/<config>/seed<k>/``; ``<config>`` is ``vae`` (no flow, the
reference row) or ``bnaf-K<flows>-H<factor>d`` (``H = factor * d`` hidden units per flow).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bnaf.config import load
from bnaf.errors import BnafError

__all__ = [
    "FlowShape",
    "Resources",
    "VaeParams",
    "config_name",
    "configs_for",
    "load_params",
    "parse_config",
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
    layers: int
    residual: str
    final_residual: bool
    permutation: str
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


def load_params(path: str | Path) -> VaeParams:
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


def config_name(shape: FlowShape | None) -> str:
    return "vae" if shape is None else f"bnaf-K{shape.flows}-H{shape.hidden_factor}d"


def parse_config(name: str) -> FlowShape | None:
    if name == "vae":
        return None
    match = re.fullmatch(r"bnaf-K(\d+)-H(\d+)d", name)
    if not match:
        raise BnafError(f"bad VAE config name {name!r}; expected 'vae' or 'bnaf-K<k>-H<h>d'")
    return FlowShape(int(match.group(1)), int(match.group(2)))


def configs_for(params: VaeParams, dataset: str) -> list[str]:
    r"""Configs run on ``dataset``: the grid on the grid dataset, the best shape elsewhere."""
    shapes = params.grid if dataset == params.grid_dataset else [params.best]
    names = (["vae"] if params.plain_vae else []) + [config_name(s) for s in shapes]
    return list(dict.fromkeys(names))
