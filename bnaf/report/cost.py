r"""The report's cost model: what the paper budget would take on the hardware that ran this run.

Every training run records how long it trained and how many optimiser steps it took. A run
whose model has the shape the paper budget trains (the same model, optimiser and batch; only
the number of steps or epochs differs) measures that shape's seconds per step on its device.
The paper budget's runs of the shape (``params/paper/*.yaml``) times their steps times that gives
its job-hours: one number per shape, measured rather than guessed. The step counts of Table 1
and Table 2 are upper bounds (``max_epochs`` full passes; early stopping ends most runs sooner);
a toy run's are exact. A toy pack's step trains all its members, so its cost is counted once
per pack. Shapes that nothing in this run trained are listed as not measured, never projected:
a step's cost does not scale simply with the model's size (small models cost their number of
kernels, large ones their arithmetic).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bnaf.core.config import to_dict
from bnaf.core.errors import BnafError
from bnaf.core.io import read_json

__all__ = ["Cost", "cost_lines", "costs"]


@dataclass
class Cost:
    r"""One shape of the paper budget: its jobs, the steps of each (``upper_bound``: at most
    that many), and the seconds per step measured here on ``hardware`` (``None``: not trained
    here)."""

    part: str
    shape: str
    jobs: int
    steps: int | None
    upper_bound: bool
    s_per_step: float | None = None
    measured_by: int = 0
    hardware: str | None = None

    @property
    def job_hours(self) -> float | None:
        if self.steps is None or self.s_per_step is None:
            return None
        return self.jobs * self.steps * self.s_per_step / 3600


def _metrics(path: Path) -> dict[str, Any] | None:
    return read_json(path, shape={}) if path.is_file() else None  # an object


def _toy_step(m: dict[str, Any]) -> float:
    return m["train_s"] / m["iterations"]


def _uci_step(m: dict[str, Any]) -> float:
    return 1.0 / m["throughput"]["steps_per_s"]


def _vae_step(m: dict[str, Any]) -> float:
    per_epoch = math.ceil(m["sizes"]["train"] / m["params"]["batch_size"])
    return m["timing"]["train_wall_s"] / (m["epochs_run"] * per_epoch)


def _per_step(folder: str, m: dict[str, Any], compute: Any) -> float:
    r"""A run's seconds per step from its ``metrics.json`` (``compute(m)``); a file without the
    timing fields (or with nonsense in them) is one error naming it."""
    try:
        value = float(compute(m))
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise BnafError(f"{folder}/metrics.json: no usable timing ({exc!r})") from None
    if not (math.isfinite(value) and value > 0):
        raise BnafError(f"{folder}/metrics.json: timing gives {value} s a step")
    return value


def _hardware(m: dict[str, Any]) -> str:
    env = m.get("environment") if isinstance(m.get("environment"), dict) else {}
    device = env.get("device") or m.get("device") or "cpu"
    what = env.get("gpu") or m.get("hardware") or env.get("processor") or "?"
    threads = env.get("torch_threads")
    return f"{device}: {what}" + (f", {threads} thread(s)" if threads else "")


def _measure(cost: Cost, seconds: list[float], hardware: set[str]) -> Cost:
    if seconds:
        cost.s_per_step = sum(seconds) / len(seconds)
        cost.measured_by = len(seconds)
        cost.hardware = "; ".join(sorted(hardware))
    return cost


def _toy(workdir: Path, paper_file: Path) -> list[Cost]:
    from bnaf.toy import runs as toy_runs
    from bnaf.toy.params import load_toy

    paper = load_toy(paper_file)
    out = []
    packed = {(j.kind, j.model): j for j in toy_runs.jobs(paper)}
    for kind in toy_runs.KINDS:
        exp = paper.experiment(kind)
        for model in exp.models:
            section = to_dict(getattr(exp, model))
            steps = section["optimiser"]["iterations"]
            job = packed.get((kind, model))
            jobs = 1 if job else len(exp.targets)
            size = len(job.targets) if job else 1
            cost = Cost("toy", f"{kind} {model}" + (f", pack of {size}" if job else ""), jobs,
                        steps, upper_bound=False)  # fmt: skip
            seconds, hardware, seen = [], set(), set()
            for run in toy_runs.runs(paper, kind, model):
                m = _metrics(workdir / run.path / "metrics.json")
                if m is None or not _same_shape(m.get("config"), section, ("iterations",)):
                    continue
                pack = tuple(m.get("pack") or [m["target"]])
                if len(pack) != size or pack in seen:  # a pack's time is its members' time
                    continue
                seen.add(pack)
                seconds.append(_per_step(run.path, m, _toy_step))
                hardware.add(_hardware(m))
            out.append(_measure(cost, seconds, hardware))
    return out


def _same_shape(measured: Any, paper: dict[str, Any], steps_keys: tuple[str, ...]) -> bool:
    r"""Whether a run's recorded model section is the paper's, the step counts aside."""
    if not isinstance(measured, dict):
        return False

    def strip(d: dict[str, Any]) -> dict[str, Any]:
        return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items()
                if k not in steps_keys}  # fmt: skip

    return json.dumps(strip(measured), sort_keys=True) == json.dumps(strip(paper), sort_keys=True)


def _train_size(workdir: Path, dataset: str, m: dict[str, Any] | None, key: str) -> int | None:
    r"""The full training split's size: a run on the whole split recorded it; else the
    prepared file holds it."""
    if m is not None and m.get("train_subset") is None and isinstance(m.get(key), int):
        return m[key]
    path = workdir / "data" / "prepared" / f"{dataset}.h5"
    if not path.is_file():
        return None
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return int(f["train"].shape[0])
    except (OSError, KeyError) as exc:
        raise BnafError(f"{path}: no readable 'train' split ({exc})") from None


def _full_passes(part: str, shape: str, jobs: int, size: int | None, epochs: int,
                 batch: int) -> Cost:  # fmt: skip
    r"""A shape trained for at most ``epochs`` passes over a split of ``size`` in batches of
    ``batch`` (``size`` unknown: steps unknown)."""
    steps = None if size is None else epochs * math.ceil(size / batch)
    return Cost(part, shape, jobs, steps, upper_bound=True)


def _uci(workdir: Path, paper_file: Path) -> list[Cost]:
    from bnaf.uci import runs as uci_runs
    from bnaf.uci.params import load_uci

    paper = load_uci(paper_file)
    batch, epochs = paper.train.batch_size, paper.train.max_epochs
    out = []
    for dataset in paper.datasets:
        flow = to_dict(paper.flow)  # the grid point is the run's config name
        for config in uci_runs.configs(paper):
            seconds, hardware, size, members = [], set(), None, set()
            for run in uci_runs.runs(paper, dataset):
                if run.config != config:
                    continue
                m = _metrics(workdir / run.path / "metrics.json")
                if m is None:
                    continue
                size = size or _train_size(workdir, dataset, m, "train_samples")
                if m.get("params", {}).get("flow") != flow:
                    continue  # another flow than the paper's (a reduced budget's)
                if m.get("params", {}).get("train", {}).get("batch_size") != batch:
                    continue
                seconds.append(_per_step(run.path, m, _uci_step))
                hardware.add(_hardware(m))
                members.add((m.get("pack") or {}).get("members", 1))
            size = size or _train_size(workdir, dataset, None, "train_samples")
            # a packed run's step time is its share of the pack's (bnaf/uci/train.py): the
            # runs' job-hours then add up to the packs' device time
            shape = f"{dataset} {config}" + "".join(
                f", measured in packs of {k}" for k in sorted(members) if k > 1)  # fmt: skip
            cost = _full_passes("table1", shape, len(paper.seeds), size, epochs, batch)
            out.append(_measure(cost, seconds, hardware))
    return out


def _vae(workdir: Path, paper_file: Path) -> list[Cost]:
    from bnaf.vae import runs as vae_runs
    from bnaf.vae.params import load_vae

    paper = load_vae(paper_file)
    batch, epochs = paper.batch_size, paper.max_epochs
    out = []
    for dataset in paper.datasets:
        for config in vae_runs.configs_for(paper, dataset):
            seconds, hardware, size = [], set(), None
            for seed in paper.seeds:
                run = vae_runs.VaeRun(dataset, config, seed)
                m = _metrics(workdir / run.path / "metrics.json")
                if m is None:
                    continue
                sizes = m.get("sizes") or {}
                if m.get("params", {}).get("train_subset") is None:
                    size = size or sizes.get("train")
                if m.get("params", {}).get("batch_size") != batch:
                    continue
                seconds.append(_per_step(run.path, m, _vae_step))
                hardware.add(_hardware(m))
            size = size or _train_size(workdir, dataset, None, "train")
            cost = _full_passes("table2", f"{dataset} {config}", len(paper.seeds), size, epochs,
                                batch)  # fmt: skip
            out.append(_measure(cost, seconds, hardware))
    return out


#: part -> (its params file, its reader)
PARTS = {"toy": ("toy.yaml", _toy), "table1": ("uci.yaml", _uci), "table2": ("vae.yaml", _vae)}


def costs(workdir: Path, parts: list[str], paper_params: Path | None = None) -> list[Cost] | None:
    r"""The paper budget's shapes of ``parts``, each with the step time measured here if a run
    of this workdir trained it; ``None`` without the paper budget's params (``params/paper``
    of the workdir, or ``paper_params``)."""
    folder = paper_params or workdir / "params" / "paper"
    out: list[Cost] = []
    for part in parts:
        if part in PARTS:
            if not (folder / PARTS[part][0]).is_file():
                return None
            name, reader = PARTS[part]
            out += reader(workdir, folder / name)
    return out


def cost_lines(rows: list[Cost] | None) -> tuple[list[str], list[dict[str, Any]]]:
    r"""The "Cost of the paper budget" section and its JSON rows."""
    out = ["### Cost of the paper budget, from this run's step times", ""]
    if rows is None:
        return out + ["No `params/paper` in this workdir: the paper budget is unknown here."], []
    measured = [c for c in rows if c.job_hours is not None]
    if not rows:
        return out + ["No part with training runs is in this report."], []
    shown = [c for c in rows if c.s_per_step is not None]
    table = [
        [
            c.part,
            c.shape,
            c.jobs,
            "?" if c.steps is None else ("<= " if c.upper_bound else "") + f"{c.steps:,}",
            f"{1e3 * c.s_per_step:.2f}",  # type: ignore[operator]
            "?" if c.job_hours is None else f"{c.job_hours:,.1f}",
            c.hardware or "",
        ]
        for c in shown
    ]
    header = ["part", "shape", "jobs", "steps per job", "ms per step", "job-hours", "measured on"]
    if table:
        out += [tabulate(table, header, "github", disable_numparse=True), ""]
    out += [
        "Each shape's time per step is the mean over this run's jobs of that shape (a toy pack's "
        "step trains all its members); steps marked <= are `max_epochs` full passes, an upper "
        "bound that early stopping cuts; `?`: the full training split's size is not known here "
        "(no run on it, no prepared file). Shapes not trained here are not projected: a step's "
        "cost does not scale simply with the model's size.",
        "",
    ]
    by_part: dict[str, float] = {}
    for c in measured:
        by_part[c.part] = by_part.get(c.part, 0.0) + c.job_hours  # type: ignore[operator]
    for part in dict.fromkeys(c.part for c in rows):
        hours = by_part.get(part)
        mine = [c for c in rows if c.part == part]
        missing = [c.shape for c in mine if c.s_per_step is None]
        line = f"- **{part}:** " + (
            f"{hours:,.1f} job-hours for the {sum(c.job_hours is not None for c in mine)} "
            f"of {len(mine)} shapes measured and sized here"
            if hours is not None
            else "no shape measured and sized here"
        )
        if missing:
            line += f"; not trained here: {', '.join(missing)}"
        out.append(line + ".")
    return out, [{**asdict(c), "job_hours": c.job_hours} for c in rows]
