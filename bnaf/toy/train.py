r"""``python -m bnaf toy train``: train and evaluate one 2-D toy model (Sections 5.1 and 5.2,
Figures 2-3).

``python -m bnaf toy train --params params/quick/toy.yaml --kind density --target 8gaussians
--model bnaf --out results/toy/density/8gaussians/bnaf`` trains one model and writes
``metrics.json``, ``model.pt`` (B-NAF via :func:`bnaf.flows.save_flow`; Glow and planar flows in
their own format) and ``grid.npz`` (the model's log-density on a grid, for the figures).

* ``density`` (5.1): maximum likelihood on fresh samples each step (Appendix A); models
  ``bnaf`` and ``glow``. Test log-likelihood: per-sample mean over fresh samples.
* ``energy`` (5.2): ``KL(q || p)`` by Monte Carlo (Appendix B, Eq. 14) against
  ``p ~ exp(-U - confinement)``; models ``bnaf`` and ``planar``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
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
    seed_everything,
)
from bnaf.core.stats import mean_se, standard_normal_log_prob
from bnaf.data.toy import DATASETS, best_log_likelihood, sample2d
from bnaf.flows import BNAF, count_parameters, save_flow
from bnaf.flows.glow import Glow, save_glow
from bnaf.flows.planar import PlanarFlow, save_planar
from bnaf.toy.energy import ENERGIES, confined_energy, grid, log_normaliser
from bnaf.toy.evaluate import batched, bnaf_sampler_log_prob_grid, coverage
from bnaf.toy.fit import FreshBatches, Noise, fit
from bnaf.toy.params import BnafModel, Optimiser, ToyParams, load_toy
from bnaf.toy.runs import MODELS

__all__ = ["add_arguments", "run", "run_fingerprint", "train_run"]


def _bnaf(cfg: BnafModel, seed: int) -> BNAF:
    r"""The 2-D B-NAF of a toy experiment's ``bnaf`` params section."""
    return BNAF(2, **cfg.flow.kwargs(), seed=seed)


#: ``(model, loss_fn, optimiser params, stream) -> fit's result or None``: :func:`fit` bound to
#: the run's checkpoint
Fitter = Callable[..., "dict[str, Any] | None"]


def _density(
    params: ToyParams, target: str, model_name: str, out: Path, fitter: Fitter
) -> dict | None:
    exp = params.density
    rng_train = np.random.default_rng([params.seed, 0])
    rng_test = np.random.default_rng([params.seed, 1])
    if model_name == "bnaf":
        cfg = exp.bnaf
        model = _bnaf(cfg, params.seed)
        opt = cfg.optimiser
    else:
        cfg = exp.glow
        model = Glow(2, depth=cfg.depth, hidden=cfg.hidden, seed=params.seed)
        opt = cfg.optimiser

    batch_for = FreshBatches(target, opt.batch_size, rng_train)

    def loss_fn(step: int) -> torch.Tensor:
        return -model.log_prob(batch_for(step)).mean()

    fitted = fitter(model, loss_fn, opt, batch_for)
    if fitted is None:
        return None
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
        **fitted,
        "config": to_dict(cfg),
        "parameters": count_parameters(model),
        "test": {
            "log_likelihood": mean,
            "log_likelihood_se": se,
            "samples": exp.test_samples,
            "best_achievable": best_log_likelihood(target),
            "mass_on_grid": float(np.exp(log_grid).sum() * exp.grid_step**2),
        },
    }


def _energy(
    params: ToyParams, target: str, model_name: str, out: Path, fitter: Fitter
) -> dict | None:
    exp = params.energy
    gen = torch.Generator().manual_seed(params.seed + 1)
    if model_name == "bnaf":
        cfg = exp.bnaf
        model = _bnaf(cfg, params.seed)

        def sample(n: int, g: torch.Generator | None, dtype=torch.float32):
            y = torch.randn(n, 2, generator=g, dtype=dtype)
            x, log_det = model(y)  # x = f(y); log q(x) = log N(y) - log|det J_f(y)|
            return x, standard_normal_log_prob(y) - log_det
    else:
        cfg = exp.planar
        model = PlanarFlow(2, flows=cfg.flows, init_std=cfg.init_std)

        def sample(n: int, g: torch.Generator | None, dtype=torch.float32):
            z0 = torch.randn(n, 2, generator=g, dtype=dtype)
            x, log_det = model(z0)
            return x, standard_normal_log_prob(z0) - log_det

    opt = cfg.optimiser

    def loss_fn(step: int) -> torch.Tensor:
        x, log_q = sample(opt.batch_size, gen)
        return (log_q + confined_energy(target, x, exp.bound)).mean()

    fitted = fitter(model, loss_fn, opt, Noise(gen))
    if fitted is None:
        return None
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
            x, log_q = sample(min(50_000, exp.kl_samples - start), g_eval, torch.float64)
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
        **fitted,
        "config": to_dict(cfg),
        "parameters": count_parameters(model),
        "test": {
            "kl": kl,
            "kl_se": kl_se,
            "samples": exp.kl_samples,
            "log_z": log_z,
            "coverage": coverage(log_p_grid, log_q_grid, exp.coverage_level),
            "coverage_level": exp.coverage_level,
            "model_mass_on_grid": float(np.exp(log_q_grid).sum() * exp.grid_step**2),
            "target_mass_on_grid": float(np.exp(log_p_grid).sum() * exp.grid_step**2),
        },
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params/<budget>/toy.yaml")
    parser.add_argument("--kind", required=True, choices=sorted(MODELS))
    parser.add_argument("--target", required=True, help="a dataset (density) or U1-U4 (energy)")
    parser.add_argument("--model", required=True, choices=["bnaf", "glow", "planar"])
    parser.add_argument("--out", required=True, help="output folder of this run")


def run_fingerprint(params: ToyParams, kind: str, target: str, model: str) -> str:
    r"""What a toy checkpoint must agree with to be resumed (:mod:`bnaf.core.checkpoint`): the
    run, its seed, the model's section (architecture and optimiser), the numerics and the code
    of the training path (the data are drawn by that code from the seed)."""
    exp = params.density if kind == "density" else params.energy
    settings = {
        "run": [kind, target, model, params.seed],
        "log_every": params.log_every,  # the history's rows
        "model": to_dict(getattr(exp, model)),
        "bound": getattr(exp, "bound", None),
        "device": numerics_key(resolve_device(params.device)),
    }
    return fingerprint(settings, "", [__name__])


def train_run(
    params: ToyParams,
    kind: str,
    target: str,
    model: str,
    out: str | Path,
    stop_after: int | None = None,
    log: Callable[[str], Any] = print,
) -> dict[str, Any] | None:
    r"""Train (or continue) and evaluate one toy run; writes ``model.pt``, ``grid.npz`` and, last,
    ``metrics.json``. Returns the metrics, or ``None`` when ``stop_after`` iterations of this
    call ended it early (the checkpoint then holds the run)."""
    out = Path(out)
    device = resolve_device(params.device)
    configure_numerics(device)
    if device.type != "cpu":
        raise BnafError("the toy stage runs on the CPU (device: cpu in params)")
    seed_everything(params.seed)
    ckpt = Checkpoint(out, run_fingerprint(params, kind, target, model), log)
    exp = params.density if kind == "density" else params.energy

    def fitter(net: torch.nn.Module, loss_fn, opt: Optimiser, stream) -> dict | None:
        every = params.checkpoint_every
        return fit(net, loss_fn, opt, params.log_every, ckpt, stream, every, stop_after, log)

    log(f"toy {kind} {target} {model} budget={params.budget} seed={params.seed}")
    start = time.perf_counter()
    body = (_density if kind == "density" else _energy)(params, target, model, out, fitter)
    if body is None:
        return None
    metrics = {
        "part": "toy",
        "kind": kind,
        "target": target,
        "model": model,
        "budget": params.budget,
        "seed": params.seed,
        "iterations": getattr(exp, model).optimiser.iterations,
        **body,
        "wall_time_s": time.perf_counter() - start,
        # CPU seconds of this process: on a shared machine, the wall time's honest companion.
        "cpu_time_s": time.process_time(),
        "environment": environment_info(device),
    }
    write_history(out / "history.csv", metrics["history"])
    atomic_write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run
    ckpt.finish(keep=params.keep_checkpoint)
    log(f"wrote {out / 'metrics.json'} ({metrics['wall_time_s']:.0f}s): {metrics['test']}")
    return metrics


def run(args: argparse.Namespace) -> int:
    params = load_toy(args.params)
    if args.model not in MODELS[args.kind]:
        raise BnafError(
            f"model {args.model!r} is not trained for {args.kind}: {MODELS[args.kind]}"
        )
    known = DATASETS if args.kind == "density" else ENERGIES
    if args.target not in known:
        raise BnafError(
            f"unknown {args.kind} target {args.target!r}; expected one of {list(known)}"
        )
    torch.set_num_threads(params.threads)
    with run_lock(args.out):
        train_run(
            params, args.kind, args.target, args.model, args.out,
            log=lambda line: print(line, flush=True),
        )  # fmt: skip
    return 0
