r"""``python -m bnaf uci train``: one B-NAF density estimator on a prepared UCI/BSDS300 file
(Section 5.3).

``python -m bnaf uci train --params params/quick/uci.yaml --data data/prepared/power.h5
--dataset power --config L2_H40 --seed 0 --out results/uci/power/L2_H40/seed0`` trains with the
authors' recipe (see ``params/paper/uci.yaml``), writes ``checkpoint.pt`` atomically after every
epoch and continues from it when started again, then evaluates the best-on-validation
Polyak-averaged model exactly on the validation and test splits and writes ``metrics.json`` and
``model.pt`` (:func:`bnaf.flows.save_flow`).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bnaf.core.checkpoint import Checkpoint, fingerprint, run_lock, tensor_digest
from bnaf.core.config import to_dict
from bnaf.core.errors import BnafError
from bnaf.core.history import write_history
from bnaf.core.io import atomic_write_json
from bnaf.core.progress import Progress
from bnaf.core.runtime import configure_numerics, environment_info, numerics_key, resolve_device
from bnaf.core.stats import batch_means_mean, log_likelihoods, summarise
from bnaf.flows import count_parameters, save_flow
from bnaf.uci.differences import UCI_DIFFERENCES
from bnaf.uci.pack import PackedTrainer
from bnaf.uci.params import UciParams, load_uci
from bnaf.uci.runs import flow_config, seed_folder
from bnaf.uci.splits import load_splits, subset
from bnaf.uci.trainer import Trainer

__all__ = ["add_arguments", "load_splits", "run", "run_fingerprint", "train_run", "train_runs"]


def run_fingerprint(
    params: UciParams, splits: dict[str, torch.Tensor], device: torch.device, **run: Any
) -> str:
    r"""What a checkpoint must agree with to be resumed (:mod:`bnaf.core.checkpoint`): the
    data, the code of the training path, the device type and every setting that changes the
    trajectory (not threads or bookkeeping)."""
    skip = {"device", "threads", "keep_checkpoint", "checkpoint_every", "eval_batch_size"}
    train = {k: v for k, v in asdict(params.train).items() if k not in skip}
    settings = {"run": run, "flow": asdict(params.flow), "train": train}
    settings["device"] = numerics_key(device)
    return fingerprint(settings, tensor_digest(*splits.values()), [__name__])


def cpu_model() -> str:
    r"""The CPU's model name (``platform.processor()`` only says ``x86_64`` on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _ll(values: torch.Tensor, batch: int) -> dict[str, Any]:
    s = summarise(values)
    if not s.finite:
        raise BnafError("the final model gives a non-finite log-likelihood on an evaluation split")
    return {
        "log_likelihood": s.mean,
        "stderr": s.stderr,
        "n": s.n,
        "batch_means_log_likelihood": batch_means_mean(values, batch),
    }


def train_run(
    params: UciParams,
    data: str | Path,
    dataset: str,
    config: str,
    seed: int,
    out: str | Path,
    device: str | None = None,
    stop_after_epochs: int | None = None,
    log: Any = print,
) -> dict[str, Any] | None:
    r"""Train (or continue) one run; returns the metrics, or None when ``stop_after_epochs``
    ended this call early (the checkpoint then holds the run)."""
    done = train_runs(params, data, dataset, config, [seed], [out], device, stop_after_epochs, log)
    return None if done is None else done[0]


def train_runs(
    params: UciParams,
    data: str | Path,
    dataset: str,
    config: str,
    seeds: Sequence[int],
    outs: Sequence[str | Path],
    device: str | None = None,
    stop_after_epochs: int | None = None,
    log: Any = print,
) -> list[dict[str, Any]] | None:
    r"""Train (or continue) the runs of ``seeds`` of one grid point, each into its folder of
    ``outs``; several seeds train as one pack (:class:`bnaf.uci.pack.PackedTrainer`), one seed
    alone. Returns each run's metrics, or None when ``stop_after_epochs`` ended this call
    early (the checkpoints then hold the runs). A member that diverged is reported after the
    others' results are written."""
    start = time.perf_counter()
    if len(set(seeds)) != len(seeds) or len(outs) != len(seeds) or not seeds:
        raise BnafError(f"give distinct seeds, one output folder each (seeds {list(seeds)})")
    flow = flow_config(params, config)
    tp = params.train
    dev = resolve_device(device or tp.device)
    configure_numerics(dev)
    splits = load_splits(data, dataset)
    x_train = subset(splits["train"], tp.train_subset).to(dev)
    x_val, x_test = splits["validation"].to(dev), splits["test"].to(dev)
    # a pack's rounding differs from a separate run's: its checkpoints are its own
    pack = {"pack": list(seeds)} if len(seeds) > 1 else {}
    members: list[_Member] = []
    for seed, out in zip(seeds, outs):
        key = run_fingerprint(params, splits, dev, dataset=dataset, config=config, seed=seed,
                              **pack)  # fmt: skip
        trainer = Trainer(x_train, x_val, flow, seed, tp, dev, log=log)
        member = _Member(seed, Path(out), trainer, Checkpoint(out, key, log))
        member.ckpt.reserve(trainer.model)
        blob = member.ckpt.load()
        if blob is not None:
            trainer.restore(blob["state"])
            member.wall_before, member.resumes = blob["wall_s"], blob["resumes"] + 1
            log(f"resumed from {member.ckpt.path} at epoch {trainer.epoch}")
        members.append(member)
    names = " ".join(str(s) for s in seeds)
    log(
        f"{dataset} {config} seed{'s' if pack else ''} {names}: d={x_train.shape[1]}, "
        f"train={len(x_train)}, validation={len(x_val)}, test={len(x_test)}, device={dev}, "
        f"budget={params.budget}"
    )
    packed = PackedTrainer([m.trainer for m in members]) if pack else None
    snaps = {i: m.trainer.snapshot() for i, m in enumerate(members)}
    epochs_this_call = 0
    name = f"{dataset} {config} seed{'s' if pack else ''} {names}"
    first_epoch = min(m.trainer.epoch for m in members)
    with Progress(tp.max_epochs, name, "epoch", first_epoch, log) as progress:
        while not all(m.trainer.finished for m in members) and not (packed and packed.finished):
            if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
                return None
            if packed is None:
                records = {0: members[0].trainer.run_epoch(snaps[0])}
            else:
                records = packed.run_epoch(snaps)
            epochs_this_call += 1
            progress.advance()
            for i, r in records.items():
                m = members[i]
                val = "nan" if r["validation_ll"] is None else f"{r['validation_ll']:.4f}"
                progress.log(
                    (f"seed {m.seed} " if pack else "")
                    + f"epoch {r['epoch']:4d}/{tp.max_epochs} train_nll {r['train_nll']:.4f} "
                    f"val_ll {val} lr {r['lr']:.2e} samples/s {r['samples_per_s']:.0f}"
                    + (" best" if r["best"] else "")
                    + (" decay" if r["decay"] else "")
                )
                snaps[i] = m.trainer.snapshot()
                wall = m.wall_before + time.perf_counter() - start
                if m.trainer.finished or m.trainer.epoch % tp.checkpoint_every == 0:
                    m.ckpt.save(snaps[i], wall_s=wall, resumes=m.resumes)
    failed = packed.failed if packed is not None else {}
    results = [
        _finish(params, m, dataset, config, x_train, x_val, x_test, dev, start, list(seeds))
        for i, m in enumerate(members)
        if i not in failed
    ]
    if failed:
        raise BnafError("; ".join(f"seed {seeds[i]}: {msg}" for i, msg in failed.items()))
    return results


@dataclass
class _Member:
    r"""One run of :func:`train_runs`: its seed, folder, trainer and checkpoint."""

    seed: int
    out: Path
    trainer: Trainer
    ckpt: Checkpoint
    wall_before: float = 0.0
    resumes: int = 0


def _finish(
    params: UciParams,
    member: _Member,
    dataset: str,
    config: str,
    x_train: torch.Tensor,
    x_val: torch.Tensor,
    x_test: torch.Tensor,
    dev: torch.device,
    start: float,
    seeds: list[int],
) -> dict[str, Any]:
    r"""Evaluate a finished run's best-on-validation averaged model exactly on the validation
    and test splits and write its ``model.pt``, ``history.csv`` and ``metrics.json``."""
    trainer, out, seed, tp = member.trainer, member.out, member.seed, params.train
    if trainer.best is None:
        raise BnafError(
            f"seed {seed}: no epoch gave a finite validation log-likelihood; nothing to evaluate"
        )
    flow = flow_config(params, config)
    layers, hidden_factor = flow.layers, flow.hidden_factor
    trainer.load_weights(trainer.best)
    trainer.polyak.swap()  # evaluate (and save) the averaged weights, as the authors do
    model = trainer.model
    ev = tp.eval_batch_size
    validation = _ll(log_likelihoods(model, x_val, ev), tp.batch_size)
    test = _ll(log_likelihoods(model, x_test, ev), tp.batch_size)
    wall = member.wall_before + time.perf_counter() - start
    env = environment_info(dev)
    # a packed epoch's time is the pack's: each member's share of the device is 1 / M of it
    share = 1.0 / len(seeds)
    metrics = {
        "part": "uci",
        "dataset": dataset,
        "config": config,
        "layers": layers,
        "hidden_factor": hidden_factor,
        "hidden_units": hidden_factor * x_train.shape[1],
        "seed": seed,
        "budget": params.budget,
        "reduced": params.reduced,
        "model": model.config,
        "parameters": {c: count_parameters(model, c) for c in ("paper", "full")},
        "best_epoch": trainer.best_epoch,
        "epochs_run": trainer.epoch,
        "stop_reason": trainer.stop_reason,
        "validation": validation,
        "test": test,
        "units": "nats per sample (log-likelihood, higher is better)",
        "train_samples": len(x_train),
        "train_subset": tp.train_subset,
        "wall_s": wall * share,  # this run's share of its job: sums over runs add up
        "train_s": trainer.train_s,
        "throughput": {
            "train_samples_per_s": trainer.samples_seen / max(trainer.train_s * share, 1e-9),
            "steps_per_s": trainer.samples_seen
            / tp.batch_size
            / max(trainer.train_s * share, 1e-9),
        },
        "pack": {"seeds": seeds, "members": len(seeds)},  # wall_s x members: the job's wall
        "resumes": member.resumes,
        "nonfinite_events": trainer.nonfinite_events,
        "device": str(dev),
        "hardware": env.get("gpu") or cpu_model(),
        "environment": env,
        "params": {"flow": to_dict(params.flow), "train": to_dict(tp)},
        "differences": UCI_DIFFERENCES,
        "history": trainer.history,
    }
    save_flow(model, out / "model.pt", dataset=dataset, seed=seed, weights="polyak_average")
    write_history(out / "history.csv", trainer.history)
    atomic_write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run
    member.ckpt.finish(keep=tp.keep_checkpoint)
    member.trainer.log(
        f"done{f' (seed {seed})' if len(seeds) > 1 else ''}: best epoch {trainer.best_epoch}, "
        f"validation LL {validation['log_likelihood']:.4f} +- {validation['stderr']:.4f}, "
        f"test LL {test['log_likelihood']:.4f} +- {test['stderr']:.4f} nats, {wall:.1f} s"
    )
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params/<budget>/uci.yaml")
    parser.add_argument("--data", required=True, help="prepared HDF5 file (train/validation/test)")
    parser.add_argument("--dataset", required=True, help="dataset name, e.g. power")
    parser.add_argument("--config", required=True, help="grid point, e.g. L2_H40")
    parser.add_argument(
        "--seed", type=int, nargs="+", required=True,
        help="one seed (--out is its run folder), or several trained as one pack (--out is the "
        "config folder; each seed writes seed<k>/ in it)",
    )  # fmt: skip
    parser.add_argument("--out", required=True, help="run folder (one seed) or config folder")
    parser.add_argument("--device", default=None, help="overrides train.device (auto/cpu/cuda)")
    parser.add_argument("--threads", type=int, default=None, help="overrides train.threads")


def run(args: argparse.Namespace) -> int:
    params = load_uci(args.params)
    threads = args.threads if args.threads is not None else params.train.threads
    if threads > 0:
        torch.set_num_threads(threads)
    seeds = list(args.seed)
    if len(set(seeds)) != len(seeds):
        raise BnafError(f"give distinct seeds, not {seeds}")
    outs = [Path(args.out)] if len(seeds) == 1 else [seed_folder(args.out, s) for s in seeds]
    with contextlib.ExitStack() as locks:
        for out in outs:
            locks.enter_context(run_lock(out))
        train_runs(
            params, args.data, args.dataset, args.config, seeds, outs, args.device,
            log=lambda line: print(line, flush=True),
        )  # fmt: skip
    return 0
