r"""``python -m bnaf toy train``: train and evaluate 2-D toy models (Sections 5.1 and 5.2,
Figures 2-3), one run or a pack of runs of one shape side by side.

``python -m bnaf toy train --params params/quick/toy.yaml --kind density --target 8gaussians
--model bnaf --out results/toy/density/8gaussians/bnaf`` trains one model and writes
``metrics.json``, ``model.pt`` (B-NAF via :func:`bnaf.flows.save_flow`; Glow and planar flows in
their own format) and ``grid.npz`` (the model's log-density on a grid, for the figures).
``--target U1 U2 U3 U4 --out A B C D`` trains the four runs as one pack (:mod:`bnaf.toy.pack`):
each writes the files its separate run would, with the same numbers up to rounding.

* ``density`` (5.1): maximum likelihood on fresh samples each step (Appendix A); models
  ``bnaf`` and ``glow``. Test log-likelihood: per-sample mean over fresh samples.
* ``energy`` (5.2): ``KL(q || p)`` by Monte Carlo (Appendix B, Eq. 14) against
  ``p ~ exp(-U - confinement)``; models ``bnaf`` and ``planar``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bnaf.core.checkpoint import Checkpoint, fingerprint, run_lock
from bnaf.core.config import to_dict
from bnaf.core.errors import BnafError
from bnaf.core.history import write_history
from bnaf.core.io import atomic_write_json
from bnaf.core.runtime import (
    configure_numerics,
    environment_info,
    numerics_key,
    resolve_device,
)
from bnaf.core.stats import mean_se, standard_normal_log_prob
from bnaf.data.toy import DATASETS, best_log_likelihood, sample2d
from bnaf.flows import count_parameters, save_flow
from bnaf.flows.glow import save_glow
from bnaf.flows.planar import save_planar
from bnaf.toy.energy import ENERGIES, confined_energy, grid, log_normaliser
from bnaf.toy.evaluate import batched, bnaf_sampler_log_prob_grid, coverage
from bnaf.toy.fit import Member, fit
from bnaf.toy.optimise import PackOptimiser
from bnaf.toy.pack import PACKED, Pack, build_model, pack_loss, stream_for
from bnaf.toy.params import ToyParams, load_toy
from bnaf.toy.runs import MODELS

__all__ = ["add_arguments", "run", "run_fingerprint", "train_pack", "train_run"]


def _density_test(
    params: ToyParams, target: str, model_name: str, model: torch.nn.Module, out: Path
) -> dict[str, Any]:
    r"""Save a density model, its test log-likelihood on fresh samples and its grid."""
    exp = params.density
    rng_test = np.random.default_rng([params.seed, 1])
    model.eval()
    if model_name == "bnaf":
        save_flow(model, out / "model.pt", objective="density", direction="x->z", target=target)
    else:
        save_glow(model, out / "model.pt", target=target)
    model64 = model.double()
    test = torch.from_numpy(sample2d(target, exp.test_samples, rng_test))
    ll = batched(model64.log_prob, test).numpy()
    centres, pts = grid(exp.grid_limit, exp.grid_step)
    log_grid = batched(model64.log_prob, torch.from_numpy(pts)).numpy()
    n = len(centres)
    np.savez_compressed(
        out / "grid.npz",
        centres=centres,
        log_density=log_grid.reshape(n, n),
        target=target,
        model=model_name,
    )
    mean, se = mean_se(ll)
    return {
        "log_likelihood": mean,
        "log_likelihood_se": se,
        "samples": exp.test_samples,
        "best_achievable": best_log_likelihood(target),
        "mass_on_grid": float(np.exp(log_grid).sum() * exp.grid_step**2),
    }


def _energy_test(
    params: ToyParams, target: str, model_name: str, model: torch.nn.Module, out: Path
) -> dict[str, Any]:
    r"""Save a sampler, its ``KL(q || p)`` by Monte Carlo, its coverage and its grid."""
    exp = params.energy
    model.eval()
    if model_name == "bnaf":
        save_flow(
            model,
            out / "model.pt",
            objective="energy",
            direction="y->x",
            target=target,
            bound=exp.bound,
        )
    else:
        save_planar(model, out / "model.pt", target=target, bound=exp.bound)
    model = model.double()
    log_z = log_normaliser(target, exp.bound)
    g_eval = torch.Generator().manual_seed(params.seed + 2)
    terms = []
    with torch.no_grad():
        for start in range(0, exp.kl_samples, 50_000):
            z0 = torch.randn(min(50_000, exp.kl_samples - start), 2, generator=g_eval,
                             dtype=torch.float64)  # fmt: skip
            x, log_det = model(z0)  # x = f(z0); log q(x) = log N(z0) - log|det J_f(z0)|
            log_q = standard_normal_log_prob(z0) - log_det
            terms.append((log_q + confined_energy(target, x, exp.bound)).numpy())
    kl, kl_se = mean_se(np.concatenate(terms) + log_z)
    centres, pts = grid(exp.grid_limit, exp.grid_step)
    n = len(centres)
    if model_name == "bnaf":
        log_q_grid = bnaf_sampler_log_prob_grid(model, centres)
    else:
        log_q_grid = batched(model.log_prob, torch.from_numpy(pts)).numpy().reshape(n, n)
    with torch.no_grad():
        log_p_grid = (-confined_energy(target, torch.from_numpy(pts), exp.bound) - log_z).numpy()
    log_p_grid = log_p_grid.reshape(n, n)
    np.savez_compressed(
        out / "grid.npz",
        centres=centres,
        log_density=log_q_grid,
        log_target=log_p_grid,
        target=target,
        model=model_name,
    )
    return {
        "kl": kl,
        "kl_se": kl_se,
        "samples": exp.kl_samples,
        "log_z": log_z,
        "coverage": coverage(log_p_grid, log_q_grid, exp.coverage_level),
        "coverage_level": exp.coverage_level,
        "model_mass_on_grid": float(np.exp(log_q_grid).sum() * exp.grid_step**2),
        "target_mass_on_grid": float(np.exp(log_p_grid).sum() * exp.grid_step**2),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params/<budget>/toy.yaml")
    parser.add_argument("--kind", required=True, choices=sorted(MODELS))
    several = "datasets (density) or U1-U4 (energy); several train as one pack"
    parser.add_argument("--target", required=True, nargs="+", help=several)
    parser.add_argument("--model", required=True, choices=["bnaf", "glow", "planar"])
    parser.add_argument("--out", required=True, nargs="+", help="each run's folder, as --target")


def run_fingerprint(
    params: ToyParams, kind: str, target: str, model: str, pack: list[str] | None = None
) -> str:
    r"""What a toy checkpoint must agree with to be resumed (:mod:`bnaf.core.checkpoint`): the
    run, its seed, the pack it trains in (packing changes rounding), the model's section
    (architecture and optimiser), the numerics and the code of the training path (the data are
    drawn by that code from the seed)."""
    exp = params.experiment(kind)
    settings = {
        "run": [kind, target, model, params.seed],
        "pack": pack or [target],
        "log_every": params.log_every,  # the history's rows
        "model": to_dict(getattr(exp, model)),
        "bound": getattr(exp, "bound", None),
        "device": numerics_key(resolve_device(params.device)),
    }
    return fingerprint(settings, "", [__name__])


def train_pack(
    params: ToyParams,
    kind: str,
    targets: list[str],
    model: str,
    outs: list[str | Path],
    stop_after: int | None = None,
    log: Callable[[str], Any] = print,
) -> list[dict[str, Any]] | None:
    r"""Train (or continue) and evaluate the runs ``(kind, target, model)`` of ``targets`` side
    by side (:func:`bnaf.toy.fit.fit`); each writes ``model.pt``, ``grid.npz`` and, last,
    ``metrics.json`` into its folder of ``outs``. Returns their metrics, or ``None`` when
    ``stop_after`` iterations of this call ended it early (the checkpoints then hold the runs)."""
    if len(targets) != len(outs) or len(set(targets)) != len(targets):
        raise BnafError(f"a pack needs one --out per distinct --target: {targets} -> {outs}")
    if len(targets) > 1 and model not in PACKED:
        raise BnafError(f"{model} runs train one at a time; packed models: {sorted(PACKED)}")
    folders = [Path(o) for o in outs]
    device = resolve_device(params.device)
    configure_numerics(device)
    if device.type != "cpu":
        raise BnafError("the toy stage runs on the CPU (device: cpu in params)")
    opt = getattr(params.experiment(kind), model).optimiser
    members = []
    for target, out in zip(targets, folders):
        key = run_fingerprint(params, kind, target, model, targets)
        net = build_model(params, kind, model)
        members.append(
            Member(net, Checkpoint(out, key, log), stream_for(params, kind, target, opt), opt)
        )
    names = [f"{kind} {t} {model}" for t in targets]
    log(f"toy {kind} {' '.join(targets)} {model} budget={params.budget} seed={params.seed}")
    start = time.perf_counter()
    pack = Pack([m.model for m in members])
    optimiser = PackOptimiser(pack.params, opt, len(members), pack.stacked)
    fitted = fit(members, optimiser, pack_loss(params, kind, targets, members, pack),
                 params.log_every, params.checkpoint_every, stop_after, log, names)  # fmt: skip
    if fitted is None:
        return None
    test = _density_test if kind == "density" else _energy_test
    done = []
    for target, out, member, body in zip(targets, folders, members, fitted):
        metrics = {
            "part": "toy",
            "kind": kind,
            "target": target,
            "model": model,
            "budget": params.budget,
            "seed": params.seed,
            "iterations": opt.iterations,
            "pack": targets,  # the runs trained side by side in this process
            **body,
            "config": to_dict(getattr(params.experiment(kind), model)),
            "parameters": count_parameters(member.model),
            "test": test(params, target, model, member.model, out),
            "wall_time_s": time.perf_counter() - start,  # of the pack so far
            # CPU seconds of this process: on a shared machine, the wall time's honest companion.
            "cpu_time_s": time.process_time(),
            "environment": environment_info(device),
        }
        write_history(out / "history.csv", metrics["history"])
        atomic_write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run
        member.checkpoint.finish(keep=params.keep_checkpoint)
        log(f"wrote {out / 'metrics.json'} ({metrics['wall_time_s']:.0f}s): {metrics['test']}")
        done.append(metrics)
    return done


def train_run(
    params: ToyParams,
    kind: str,
    target: str,
    model: str,
    out: str | Path,
    stop_after: int | None = None,
    log: Callable[[str], Any] = print,
) -> dict[str, Any] | None:
    r"""Train (or continue) and evaluate one toy run (:func:`train_pack` with one member)."""
    done = train_pack(params, kind, [target], model, [out], stop_after, log)
    return None if done is None else done[0]


def run(args: argparse.Namespace) -> int:
    params = load_toy(args.params)
    if args.model not in MODELS[args.kind]:
        raise BnafError(
            f"model {args.model!r} is not trained for {args.kind}: {MODELS[args.kind]}"
        )
    known = DATASETS if args.kind == "density" else ENERGIES
    for target in args.target:
        if target not in known:
            raise BnafError(
                f"unknown {args.kind} target {target!r}; expected one of {list(known)}"
            )
    torch.set_num_threads(params.threads)
    with ExitStack() as locks:
        for out in args.out:
            locks.enter_context(run_lock(out))
        train_pack(
            params, args.kind, args.target, args.model, args.out,
            log=lambda line: print(line, flush=True),
        )  # fmt: skip
    return 0
