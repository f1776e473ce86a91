r"""The runs of the VAE part (Section 5.4, Table 2): their names and paths.

The one place the naming scheme exists: a run is ``results/vae/<dataset>/<config>/seed<k>``;
``<config>`` is ``vae`` (no flow, the reference row) or ``bnaf-K<flows>-H<factor>d``
(``H = factor * d`` hidden units per flow). The grid runs on ``grid_dataset``, the best shape
elsewhere (Section 5.4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import ClassVar

from bnaf.core.errors import BnafError
from bnaf.core.runs import Run
from bnaf.flows.config import FlowConfig
from bnaf.vae.params import FlowShape, VaeParams

__all__ = [
    "CONFIG_PATTERN",
    "COUNT",
    "RESULTS",
    "RUN",
    "VaeRun",
    "config_name",
    "configs_for",
    "flow_config",
    "parse_config",
    "runs",
]

#: where the part writes; a run is ``RUN`` below it
RESULTS = "results/vae"
RUN = RESULTS + "/{dataset}/{config}/seed{seed}"
#: the Section 5.4 size comparison (``python -m bnaf vae count``)
COUNT = "results/vae/count.json"
CONFIG_PATTERN = r"vae|bnaf-K\d+-H\d+d"


@dataclass(frozen=True)
class VaeRun(Run):
    PATTERN: ClassVar[str] = RUN
    dataset: str
    config: str
    seed: int


def config_name(shape: FlowShape | None) -> str:
    return "vae" if shape is None else f"bnaf-K{shape.flows}-H{shape.hidden_factor}d"


def parse_config(name: str) -> FlowShape | None:
    if name == "vae":
        return None
    match = re.fullmatch(r"bnaf-K(\d+)-H(\d+)d", name)
    if not match:
        raise BnafError(f"bad VAE config name {name!r}; expected 'vae' or 'bnaf-K<k>-H<h>d'")
    return FlowShape(int(match.group(1)), int(match.group(2)))


def flow_config(params: VaeParams, config: str) -> FlowConfig | None:
    r"""The posterior flow of a config: ``params.flow`` with its K and H (``None``: plain VAE)."""
    shape = parse_config(config)
    if shape is None:
        return None
    return replace(params.flow, flows=shape.flows, hidden_factor=shape.hidden_factor)


def configs_for(params: VaeParams, dataset: str) -> list[str]:
    r"""Configs run on ``dataset``: the grid on the grid dataset, the best shape elsewhere."""
    shapes = params.grid if dataset == params.grid_dataset else [params.best]
    names = (["vae"] if params.plain_vae else []) + [config_name(s) for s in shapes]
    return list(dict.fromkeys(names))


def runs(params: VaeParams, datasets: list[str] | None = None) -> list[VaeRun]:
    r"""Every (dataset, config, seed) of the part, or those of some datasets."""
    return [
        VaeRun(d, c, s)
        for d in (params.datasets if datasets is None else datasets)
        for c in configs_for(params, d)
        for s in params.seeds
    ]
