r"""The runs of the density-estimation part (Section 5.3, Table 1): their names and paths.

The one place the naming scheme exists: a run is ``results/uci/<dataset>/<config>/seed<k>``
with ``<config> = L<layers>_H<hidden factor>`` (``H = k d``). The Snakemake rules, selection,
Table 1 and the normalisation check all take their runs from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from bnaf.core.errors import BnafError
from bnaf.core.runs import Run
from bnaf.flows.config import FlowConfig
from bnaf.uci.params import UciParams

__all__ = [
    "CONFIG_PATTERN",
    "RUN",
    "SELECTION",
    "UciRun",
    "config_name",
    "configs",
    "flow_config",
    "parse_config_name",
    "runs",
    "runtime",
    "seed_folder",
]

#: a seed's folder inside its grid point's (a packed job's ``--out``)
SEED = "seed{seed}"
#: a run's folder (``metrics.json``, ``model.pt``, ``checkpoint.pt``), as a format pattern
RUN = "results/uci/{dataset}/{config}/" + SEED
#: a dataset's selection over the grid (``python -m bnaf uci select``)
SELECTION = "results/uci/{dataset}/selection.json"
#: the regular expression a config name matches (Snakemake's wildcard constraint)
CONFIG_PATTERN = r"L\d+_H\d+"


@dataclass(frozen=True)
class UciRun(Run):
    PATTERN: ClassVar[str] = RUN
    dataset: str
    config: str
    seed: int


def seed_folder(config_folder: str | Path, seed: int) -> Path:
    r"""The run folder of ``seed`` inside a grid point's folder (a pack's members)."""
    return Path(config_folder) / SEED.format(seed=seed)


def config_name(layers: int, hidden_factor: int) -> str:
    r"""``L2_H40``: ``L`` hidden layers of ``H = 40 d`` units per flow (Section 5.3 grid)."""
    return f"L{layers}_H{hidden_factor}"


def parse_config_name(name: str) -> tuple[int, int]:
    match = re.fullmatch(r"L(\d+)_H(\d+)", name)
    if not match:
        raise BnafError(
            f"bad config name {name!r}; expected L<layers>_H<hidden factor>, e.g. L2_H40"
        )
    return int(match.group(1)), int(match.group(2))


def configs(params: UciParams) -> list[str]:
    r"""The grid of Section 5.3 as config names, layers first."""
    return [config_name(L, k) for L in params.grid.layers for k in params.grid.hidden_factor]


def flow_config(params: UciParams, config: str) -> FlowConfig:
    r"""The flow of one grid point: ``params.flow`` with its layers and hidden factor."""
    layers, hidden_factor = parse_config_name(config)
    return replace(params.flow, layers=layers, hidden_factor=hidden_factor)


def runs(params: UciParams, dataset: str | None = None) -> list[UciRun]:
    r"""Every (dataset, config, seed) of the grid, or those of one dataset."""
    datasets = params.datasets if dataset is None else [dataset]
    return [UciRun(d, c, s) for d in datasets for c in configs(params) for s in params.seeds]


def runtime(params: UciParams, dataset: str) -> int:
    r"""Minutes a training job of ``dataset`` may run (``uci.resources.runtime``: one number,
    or per dataset with a ``default``)."""
    minutes = params.resources.runtime
    return minutes if isinstance(minutes, int) else minutes.get(dataset, minutes["default"])
