r"""The runs of the density-estimation part (Section 5.3, Table 1): their names and paths.

The one place the naming scheme exists: a run is ``results/uci/<dataset>/<config>/seed<k>``
with ``<config> = L<layers>_H<hidden factor>`` (``H = k d``). The Snakemake rules, selection,
Table 1 and the normalisation check all take their runs from here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from bnaf.core.errors import BnafError
from bnaf.core.runs import Run
from bnaf.flows.config import FlowConfig
from bnaf.uci.params import UciParams

__all__ = [
    "CONFIG",
    "CONFIG_PATTERN",
    "RUN",
    "SELECTION",
    "UciRun",
    "config_name",
    "configs",
    "flow_config",
    "job_args",
    "job_log",
    "job_members",
    "job_outputs",
    "mem_mb",
    "packed",
    "parse_config_name",
    "runs",
    "runtime",
    "seed_folder",
]

#: a seed's folder inside its grid point's (a packed job's ``--out``)
SEED = "seed{seed}"
#: a grid point's folder: its seeds' run folders, a packed job's ``--out``
CONFIG = "results/uci/{dataset}/{config}"
#: a run's folder (``metrics.json``, ``model.pt``, ``checkpoint.pt``), as a format pattern
RUN = CONFIG + "/" + SEED
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
    r"""Minutes a training job of ``dataset`` may run: ``uci.resources.runtime`` (one number,
    or per dataset with a ``default``) is per run, so a packed job gets it once per member
    (an upper bound: on a GPU a pack costs little more than one run)."""
    minutes = params.resources.runtime
    per_run = minutes if isinstance(minutes, int) else minutes.get(dataset, minutes["default"])
    return per_run * job_members(params)


def mem_mb(params: UciParams) -> int:
    r"""Memory of one training job: ``uci.resources.mem_mb`` per run, once per member of a
    pack (an upper bound: the data are shared)."""
    return params.resources.mem_mb * job_members(params)


def packed(params: UciParams) -> bool:
    r"""Whether a grid point's seeds train as one pack, one job (``uci.resources.pack_seeds``
    with more than one seed), rather than one job per seed."""
    return params.resources.pack_seeds and len(params.seeds) > 1


def job_outputs(params: UciParams, name: str) -> list[str]:
    r"""The files ``name`` one ``uci_train`` job writes, as Snakemake patterns: one run's
    (wildcards dataset, config, seed) or, packed, every seed's of a grid point (dataset,
    config)."""
    if not packed(params):
        return [f"{RUN}/{name}"]
    return [f"{CONFIG}/{SEED.format(seed=s)}/{name}" for s in params.seeds]


def job_log(params: UciParams) -> str:
    r"""The log of one ``uci_train`` job, as a Snakemake pattern."""
    return "logs/uci_train/{dataset}/{config}" + ("" if packed(params) else "/seed{seed}") + ".log"


def job_args(params: UciParams, wildcards: Mapping[str, str]) -> str:
    r"""``--seed ... --out ...`` of one ``uci_train`` job: its seed and run folder, or, packed,
    the grid point's seeds and folder."""
    if packed(params):
        seeds = " ".join(str(s) for s in params.seeds)
        return f"--seed {seeds} --out {CONFIG.format(**dict(wildcards.items()))}"
    return f"--seed {wildcards['seed']} --out {RUN.format(**dict(wildcards.items()))}"


def job_members(params: UciParams) -> int:
    r"""Runs in one ``uci_train`` job: its resources (memory, time limit) scale with them."""
    return len(params.seeds) if packed(params) else 1
