r"""The toy experiments' training loop (Sections 5.1-5.2, Appendices A-B), resumable.

The authors' recipe (``toy2d.py``): Adam (AMSGrad) or RMSProp, gradient-norm clipping,
``ReduceLROnPlateau`` on the training loss. Every ``checkpoint_every`` iterations the loop saves
everything its future depends on (weights, optimiser and schedule state, the running loss, the
history, the data stream and every random stream) under the run's fingerprint
(:mod:`bnaf.core.checkpoint`), so a killed run restarted with the same command ends exactly as an
uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from bnaf.core.checkpoint import Checkpoint, rng_state, set_rng_state
from bnaf.core.errors import BnafError
from bnaf.core.progress import Progress
from bnaf.data.toy import sample2d
from bnaf.toy.params import Optimiser

__all__ = ["CHUNK", "FreshBatches", "Noise", "Stream", "fit"]

#: training steps whose data is drawn in one sampler call (density estimation)
CHUNK = 250


class Stream(Protocol):
    r"""Where a loss draws its randomness from, with a state a checkpoint can hold."""

    def state(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...


class FreshBatches:
    r"""``step -> (batch, 2)`` float32 training batch of ``target``: fresh samples each step
    (Appendix A), drawn :data:`CHUNK` steps at a time to spare a sampler call per step."""

    def __init__(self, target: str, batch: int, rng: np.random.Generator):
        self.target, self.batch, self.rng = target, batch, rng
        self.chunk: torch.Tensor | None = None

    def __call__(self, step: int) -> torch.Tensor:
        i = (step - 1) % CHUNK
        if i == 0:
            x = sample2d(self.target, self.batch * CHUNK, self.rng)
            self.chunk = torch.from_numpy(x).float().reshape(CHUNK, self.batch, 2)
        assert self.chunk is not None  # step 1 of a chunk always comes first
        return self.chunk[i]

    def state(self) -> dict[str, Any]:
        # The bit generator's state is plain ints and strings: weights-only loading reads it.
        return {"rng": self.rng.bit_generator.state, "chunk": self.chunk}

    def restore(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.chunk = state["chunk"]


class Noise:
    r"""The base samples of a sampler trained by ``KL(q || p)`` (Appendix B): one torch stream."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def restore(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def _optimiser(params: list[torch.nn.Parameter], opt: Optimiser) -> torch.optim.Optimizer:
    if opt.name == "adam":
        return torch.optim.Adam(params, lr=opt.lr, amsgrad=opt.amsgrad, foreach=True)
    return torch.optim.RMSprop(params, lr=opt.lr, momentum=opt.momentum, foreach=True)


def fit(
    model: torch.nn.Module,
    loss_fn: Callable[[int], torch.Tensor],
    opt: Optimiser,
    log_every: int,
    checkpoint: Checkpoint,
    stream: Stream,
    every: int,
    stop_after: int | None = None,
    log: Callable[[str], Any] = print,
) -> dict[str, Any] | None:
    r"""Minimise ``loss_fn(step)`` for ``opt.iterations`` steps, continuing from ``checkpoint``
    when it belongs to this run; returns ``{"history", "resumes", "train_s"}``, or ``None`` when
    ``stop_after`` steps of this call ended it early (the checkpoint then holds the run).

    The models are tiny, so a step costs its number of kernels and host round trips: the loop
    reads the loss once per step (the plateau schedule needs it as a number, and the same number
    is checked and logged), and the optimiser and clipping use the multi-tensor kernels."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = _optimiser(params, opt)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimiser,
        factor=opt.decay,
        patience=opt.patience,
        min_lr=opt.min_lr,
        threshold=opt.threshold,
        threshold_mode="abs",
    )
    done, history, total, count, train_s, resumes = 0, [], 0.0, 0, 0.0, 0
    checkpoint.reserve(model)
    blob = checkpoint.load()
    if blob is not None:
        s = blob["state"]
        model.load_state_dict(s["model"])
        optimiser.load_state_dict(s["optimiser"])
        scheduler.load_state_dict(s["scheduler"])
        stream.restore(s["stream"])
        set_rng_state(s["rng"])
        done, history, total, count = s["step"], s["history"], s["total"], s["count"]
        train_s, resumes = s["train_s"], s["resumes"] + 1
        log(f"resumed from {checkpoint.path} at iteration {done}")
    start, steps_this_call = time.perf_counter(), 0
    progress = Progress(opt.iterations, type(model).__name__, "it", done, log)
    for step in range(done + 1, opt.iterations + 1):
        if stop_after is not None and steps_this_call >= stop_after:
            progress.close()
            return None
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
        total, count, steps_this_call = total + value, count + 1, steps_this_call + 1
        progress.advance()
        elapsed = train_s + time.perf_counter() - start
        if step % log_every == 0 or step == opt.iterations:
            lr = optimiser.param_groups[0]["lr"]
            history.append({"iteration": step, "loss": total / count, "lr": lr})
            progress.log(f"iter {step:7d}  loss {total / count:.4f}  lr {lr:.2e}  {elapsed:.0f}s")
            total, count = 0.0, 0
        if step % every == 0 or step == opt.iterations:
            state = {
                "step": step,
                "model": model.state_dict(),
                "optimiser": optimiser.state_dict(),
                "scheduler": scheduler.state_dict(),
                "stream": stream.state(),
                "rng": rng_state(),
                "history": history,
                "total": total,
                "count": count,
                "train_s": elapsed,
                "resumes": resumes,
            }
            checkpoint.save(state)
    progress.close()
    elapsed = train_s + time.perf_counter() - start
    return {"history": history, "resumes": resumes, "train_s": elapsed}
