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
import math
import time
from pathlib import Path

import numpy as np
import torch

from bnaf.core.config import to_dict
from bnaf.core.errors import BnafError
from bnaf.core.io import atomic_write_json
from bnaf.core.runtime import (
    configure_numerics,
    environment_info,
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
from bnaf.toy.params import BnafModel, Optimiser, ToyParams, load_toy
from bnaf.toy.runs import MODELS

__all__ = ["CHUNK", "add_arguments", "run", "train"]

#: training steps whose data is drawn in one sampler call (density estimation)
CHUNK = 250


def train(model: torch.nn.Module, loss_fn, opt: Optimiser, log_every: int) -> list[dict]:
    r"""Minimise ``loss_fn(step)`` with the authors' recipe: Adam (AMSGrad) or RMSProp, gradient
    norm clipping, ``ReduceLROnPlateau`` on the training loss (``toy2d.py``).

    The models are tiny, so a step costs its number of kernels and host round trips: the loop
    reads the loss once per step (the plateau schedule needs it as a number, and the same number
    is checked and logged), and the optimiser and clipping use the multi-tensor kernels."""
    params = [p for p in model.parameters() if p.requires_grad]
    if opt.name == "adam":
        optimiser = torch.optim.Adam(params, lr=opt.lr, amsgrad=opt.amsgrad, foreach=True)
    else:
        optimiser = torch.optim.RMSprop(params, lr=opt.lr, momentum=opt.momentum, foreach=True)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimiser,
        factor=opt.decay,
        patience=opt.patience,
        min_lr=opt.min_lr,
        threshold=opt.threshold,
        threshold_mode="abs",
    )
    history, total, count, start = [], 0.0, 0, time.perf_counter()
    for step in range(1, opt.iterations + 1):
        loss = loss_fn(step)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        value = loss.item()
        if not math.isfinite(value):
            raise BnafError(f"training diverged at iteration {step} (loss {value})")
        if opt.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, max_norm=opt.clip_norm, foreach=True)
        optimiser.step()
        scheduler.step(value)
        total, count = total + value, count + 1
        if step % log_every == 0 or step == opt.iterations:
            lr = optimiser.param_groups[0]["lr"]
            row = {"iteration": step, "loss": total / count, "lr": lr}
            history.append(row)
            print(
                f"iter {step:7d}  loss {row['loss']:.4f}  lr {lr:.2e}  "
                f"{time.perf_counter() - start:.0f}s",
                flush=True,
            )
            total, count = 0.0, 0
    return history


def _batches(target: str, batch: int, rng: np.random.Generator):
    r"""``step -> (batch, 2)`` float32 training batch: fresh samples each step (Appendix A),
    drawn :data:`CHUNK` steps at a time to spare a sampler call and a conversion per step."""
    cache: dict[str, torch.Tensor] = {}

    def batch_for(step: int) -> torch.Tensor:
        i = (step - 1) % CHUNK
        if i == 0:
            x = sample2d(target, batch * CHUNK, rng)
            cache["x"] = torch.from_numpy(x).float().reshape(CHUNK, batch, 2)
        return cache["x"][i]

    return batch_for


def _bnaf(cfg: BnafModel, seed: int) -> BNAF:
    r"""The 2-D B-NAF of a toy experiment's ``bnaf`` params section."""
    return BNAF(2, **cfg.flow.kwargs(), seed=seed)


def _density(params: ToyParams, target: str, model_name: str, out: Path) -> dict:
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

    batch_for = _batches(target, opt.batch_size, rng_train)

    def loss_fn(step: int) -> torch.Tensor:
        return -model.log_prob(batch_for(step)).mean()

    history = train(model, loss_fn, opt, params.log_every)
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
        "history": history,
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


def _energy(params: ToyParams, target: str, model_name: str, out: Path) -> dict:
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

    history = train(model, loss_fn, opt, params.log_every)
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
        "history": history,
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
    device = resolve_device(params.device)
    configure_numerics(device)
    if device.type != "cpu":
        raise BnafError("the toy stage runs on the CPU (device: cpu in params)")
    seed_everything(params.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"toy {args.kind} {args.target} {args.model} budget={params.budget} seed={params.seed}")
    start = time.perf_counter()
    body = (_density if args.kind == "density" else _energy)(params, args.target, args.model, out)
    metrics = {
        "part": "toy",
        "kind": args.kind,
        "target": args.target,
        "model": args.model,
        "budget": params.budget,
        "seed": params.seed,
        **body,
        "wall_time_s": time.perf_counter() - start,
        # CPU seconds of this process: on a shared machine, the wall time's honest companion.
        "cpu_time_s": time.process_time(),
        "environment": environment_info(device),
    }
    atomic_write_json(out / "metrics.json", metrics)
    print(f"wrote {out / 'metrics.json'} ({metrics['wall_time_s']:.0f}s): {metrics['test']}")
    return 0
