r"""``python -m bnaf vae train``: train one VAE (plain or with an amortised B-NAF posterior),
then evaluate it.

The procedure of van den Berg et al. (2018; ``main_experiment.py``, ``optimization/training.py``)
that Section 5.4 reuses: Adamax (lr 5e-4, eps 1e-7), batches of 100, KL warm-up
``beta = min(epoch / warmup, max_beta)`` over the first epochs, validation ``-ELBO`` (beta = 1)
after every epoch, the best-on-validation weights kept, early stopping once the validation
loss has not improved for ``early_stopping_epochs`` epochs (counted only after the warm-up),
at most ``max_epochs`` epochs. The test ``-ELBO`` (one sample per point) and the
importance-sampled NLL are then computed for the best weights.

Every epoch ends with an atomic checkpoint (model, optimiser, best weights, early-stopping
state, history and every RNG state), so a killed run restarted with the same command continues
where it stopped.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bnaf.core.checkpoint import (
    Checkpoint,
    fingerprint,
    rng_state,
    run_lock,
    set_rng_state,
    tensor_digest,
)
from bnaf.core.config import to_dict
from bnaf.core.errors import BnafError
from bnaf.core.history import write_history
from bnaf.core.io import atomic_torch_save, atomic_write_json
from bnaf.core.progress import Progress
from bnaf.core.runtime import (
    configure_numerics,
    environment_info,
    numerics_key,
    resolve_device,
    seed_everything,
)
from bnaf.data.images import load_images
from bnaf.data.status import read_status
from bnaf.flows import count_parameters
from bnaf.flows.amortised import AmortisedBNAF
from bnaf.vae.differences import DIFFERENCES
from bnaf.vae.evaluate import importance_nll, negative_elbo
from bnaf.vae.model import VAE
from bnaf.vae.params import VaeParams, load_vae
from bnaf.vae.runs import flow_config

__all__ = [
    "add_arguments",
    "binarise",
    "build_model",
    "run",
    "run_fingerprint",
    "to_device",
    "train",
    "train_step",
    "warmup_beta",
]


def warmup_beta(epoch: int, warmup: int, max_beta: float) -> float:
    r"""KL weight of epoch ``epoch`` (1-based), as in the Sylvester code."""
    return min(epoch / max(warmup, 1), max_beta)


def build_model(params: VaeParams, config: str, shape: tuple, likelihood: str, seed: int) -> VAE:
    flow = flow_config(params, config)
    posterior = None if flow is None else AmortisedBNAF(params.latent, **flow.kwargs(), seed=seed)
    return VAE(shape, likelihood, params.latent, posterior)  # type: ignore[arg-type]


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    r"""``t`` on ``device``; to a GPU from pinned memory without blocking the host."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def binarise(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    r"""Dynamic binarisation (Omniglot): each pixel ~ Bernoulli(intensity), drawn afresh every
    batch. On the CPU from ``gen`` (the data generator); on a GPU from the device's default
    generator, where the batch lives (no round trip through host memory)."""
    if batch.device.type == "cpu":
        return torch.bernoulli(batch, generator=gen)
    return torch.bernoulli(batch)


def train_step(
    model: VAE, optimiser: torch.optim.Optimizer, batch: torch.Tensor, beta: float
) -> torch.Tensor:
    r"""One Adamax step on the -ELBO with KL weight ``beta`` (Eq. 12); returns the batch's
    summed loss, left on the device."""
    log_px, kl = model.terms(batch)
    loss = (-log_px + beta * kl).mean()
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return loss.detach().double() * batch.shape[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params/<budget>/vae.yaml")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--config", required=True, help="'vae' or 'bnaf-K<k>-H<h>d'")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--status", required=True, help="data/raw/<dataset>.status.json")
    parser.add_argument("--out", required=True, help="results/vae/<dataset>/<config>/seed<k>")


def run_fingerprint(
    params: VaeParams, args: argparse.Namespace, x: dict[str, torch.Tensor], device: torch.device
) -> str:
    r"""What a checkpoint must agree with to be resumed (:mod:`bnaf.core.checkpoint`): the data
    (the subsets trained and validated on), the code of the training path, the device type and
    every param that changes the trajectory (evaluation-only keys left out)."""
    skip = {"nll_samples", "nll_chunk", "eval_batch", "test_subset", "device", "resources"}
    settings = {k: v for k, v in to_dict(params).items() if k not in skip}
    settings |= {"dataset": args.dataset, "config": args.config, "seed": args.seed}
    settings["device"] = numerics_key(device)
    return fingerprint(settings, tensor_digest(x["train"], x["valid"]), [__name__])


def run(args: argparse.Namespace) -> int:
    with run_lock(args.out):
        return train(args)


def log(line: str) -> None:
    print(line, flush=True)


def train(args: argparse.Namespace) -> int:
    r"""Train (or continue) one run of ``args`` and evaluate it (see the module docstring)."""
    params = load_vae(args.params)
    status = read_status(args.status, args.dataset)
    if not status["available"]:
        raise BnafError(f"dataset {args.dataset!r} is not available: {status.get('reason')}")
    if not isinstance(status.get("paths"), dict):
        raise BnafError(f"{args.status}: 'paths' must map the dataset's file names to local paths")
    torch.set_num_threads(params.resources.threads)
    seed_everything(args.seed)
    device = resolve_device(params.device)
    configure_numerics(device)
    data = load_images(args.dataset, status["paths"], args.seed, params.check_sizes)
    cut = {"train": params.train_subset, "valid": params.valid_subset, "test": params.test_subset}
    x = {k: torch.from_numpy(getattr(data, k)[: cut[k]]).to(device) for k in cut}
    model = build_model(params, args.config, data.shape, data.likelihood, args.seed).to(device)
    optimiser = torch.optim.Adamax(model.parameters(), lr=params.lr, eps=params.adamax_eps)
    gen = torch.Generator().manual_seed(args.seed)  # batch order and dynamic binarisation
    out = Path(args.out)
    ckpt = Checkpoint(out, run_fingerprint(params, args, x, device), log)
    ckpt.reserve(model)
    state: dict[str, Any] = {"epoch": 0, "best_val": math.inf, "best_epoch": 0, "patience": 0}
    state.update(history=[], finished=False, train_seconds=0.0, best_state=None)
    blob = ckpt.load()
    if blob is not None:  # on the CPU; load_state_dict places the tensors on the device
        model.load_state_dict(blob["model"])
        optimiser.load_state_dict(blob["optimizer"])
        state = blob["state"]
        set_rng_state(blob["rng"], gen)
        log(f"resuming {out} after epoch {state['epoch']}")
    n = x["train"].shape[0]
    name = f"{args.dataset} {args.config} seed {args.seed}"
    progress = Progress(params.max_epochs, name, "epoch", state["epoch"], log)
    while not state["finished"]:
        epoch = state["epoch"] + 1
        beta = warmup_beta(epoch, params.warmup_epochs, params.max_beta)
        start = time.process_time(), time.perf_counter()
        model.train()
        total = torch.zeros((), dtype=torch.float64, device=device)  # read once per epoch
        for idx in to_device(torch.randperm(n, generator=gen), device).split(params.batch_size):
            batch = x["train"][idx]
            if data.dynamic_binarization:
                batch = binarise(batch, gen)
            total += train_step(model, optimiser, batch, beta)
        total = float(total)
        cpu, wall = time.process_time() - start[0], time.perf_counter() - start[1]
        val = float(negative_elbo(model, x["valid"], params.eval_batch).mean())
        if not math.isfinite(val):
            raise BnafError(f"{out}: validation loss became {val} at epoch {epoch}")
        if val < state["best_val"]:
            state.update(best_val=val, best_epoch=epoch, patience=0)
            state["best_state"] = {
                k: v.detach().cpu().clone() for k, v in model.state_dict().items()
            }
        elif params.early_stopping_epochs > 0 and epoch >= params.warmup_epochs:
            state["patience"] += 1
        stop = state["patience"] > params.early_stopping_epochs > 0
        state["finished"] = stop or epoch >= params.max_epochs
        state["epoch"] = epoch
        state["train_seconds"] += wall
        state["history"].append(
            dict(epoch=epoch, beta=beta, train=total / n, valid=val, cpu_s=cpu, wall_s=wall)
        )
        # the best state is kept on the CPU: a copy of the weights, not device memory
        ckpt.save(state, model=model.state_dict(), optimizer=optimiser.state_dict(),
                  rng=rng_state(gen))  # fmt: skip
        progress.advance()
        progress.log(
            f"epoch {epoch:4d} beta {beta:.3f} train {total / n:9.3f} valid {val:9.3f} "
            f"best {state['best_val']:9.3f}@{state['best_epoch']} {n / wall:7.1f} img/s"
        )
    progress.close()
    _evaluate(args, params, model, state, data, x, device)
    ckpt.finish(keep=False)
    return 0


def _evaluate(args, params, model, state, data, x, device) -> None:
    model.load_state_dict(state["best_state"])
    samples = params.nll_samples[args.dataset]
    torch.manual_seed(args.seed + 1)  # evaluation noise independent of how training went
    t0 = time.process_time(), time.perf_counter()
    test_elbo = negative_elbo(model, x["test"], params.eval_batch)
    t1 = time.process_time(), time.perf_counter()
    test_nll = importance_nll(model, x["test"], samples, params.nll_chunk)
    t2 = time.process_time(), time.perf_counter()
    valid_elbo = negative_elbo(model, x["valid"], params.eval_batch)
    dims = int(np.prod(data.shape))
    bpd = data.likelihood == "categorical"  # Frey faces are reported in bits per dimension
    scale = 1.0 / (dims * math.log(2.0)) if bpd else 1.0
    flow_params = (
        count_parameters(model.flow) + count_parameters(model.amortise)
        if model.flow is not None
        else 0
    )
    epochs = state["history"]
    metrics = {
        "part": "vae",
        "dataset": args.dataset,
        "config": args.config,
        "seed": args.seed,
        "budget": params.budget,
        "unit": "bits/dim" if bpd else "nats",
        "test_neg_elbo": float(test_elbo.mean()) * scale,
        "test_nll": float(test_nll.mean()) * scale,
        "valid_neg_elbo": float(valid_elbo.mean()) * scale,
        "test_neg_elbo_nats": float(test_elbo.mean()),
        "test_nll_nats": float(test_nll.mean()),
        "nll_samples": samples,
        "best_epoch": state["best_epoch"],
        "epochs_run": state["epoch"],
        "stopped_early": state["epoch"] < params.max_epochs,
        "sizes": {k: int(v.shape[0]) for k, v in x.items()},
        "parameters": {
            "total": count_parameters(model),
            "flow_and_heads": flow_params,
            "values_predicted_per_datapoint": model.flow.n_amortised if model.flow else 0,
        },
        "timing": {
            "train_wall_s": state["train_seconds"],
            "epoch_cpu_s_mean": float(np.mean([e["cpu_s"] for e in epochs])),
            "epoch_wall_s_mean": float(np.mean([e["wall_s"] for e in epochs])),
            "test_elbo_cpu_s": t1[0] - t0[0],
            "test_nll_cpu_s": t2[0] - t1[0],
            "test_nll_wall_s": t2[1] - t1[1],
        },
        "history": epochs,
        "params": to_dict(params),
        "differences": DIFFERENCES,
        "environment": environment_info(device),
    }
    out = Path(args.out)
    model_blob = {
        "config": {
            "dataset": args.dataset,
            "name": args.config,
            "shape": list(data.shape),
            "likelihood": data.likelihood,
            "latent": params.latent,
            "flow": model.flow.config if model.flow is not None else None,
        },
        "state_dict": model.state_dict(),
    }
    atomic_torch_save(model_blob, out / "model.pt")
    write_history(out / "history.csv", epochs)
    atomic_write_json(out / "metrics.json", metrics)
    print(
        f"test -ELBO {metrics['test_neg_elbo']:.4f} NLL {metrics['test_nll']:.4f} "
        f"{metrics['unit']} (S={samples}, {metrics['timing']['test_nll_cpu_s']:.1f} CPU s)"
    )
