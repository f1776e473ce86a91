r"""The toy experiments' training loop (Sections 5.1-5.2, Appendices A-B), resumable.

The authors' recipe (``toy2d.py``): Adam (AMSGrad) or RMSProp, gradient-norm clipping,
``ReduceLROnPlateau`` on the training loss, applied to a whole pack at once by
:mod:`bnaf.toy.optimise` (member by member ``torch.optim``'s numbers, bit for bit). Every
``checkpoint_every`` iterations the loop saves everything its future depends on (weights,
optimiser and schedule state, the running loss, the history, the data stream and every random
stream) under the run's fingerprint (:mod:`bnaf.core.checkpoint`), so a killed run restarted
with the same command ends exactly as an uninterrupted one.
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
from bnaf.toy.optimise import PackOptimiser, Plateau
from bnaf.toy.params import Optimiser

__all__ = ["CHUNK", "FreshBatches", "Member", "Noise", "Stream", "fit", "train_step"]

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
            # the training dtype is the default one (float32 in the pipeline)
            x = torch.from_numpy(x).to(torch.get_default_dtype())
            self.chunk = x.reshape(CHUNK, self.batch, 2)
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


class Member:
    r"""One run of a pack: its model, checkpoint and data stream, and everything the loop
    keeps per run (plateau schedule, running loss, history); the pack's
    :class:`~bnaf.toy.optimise.PackOptimiser` keeps its optimiser state and clipping."""

    def __init__(self, model: torch.nn.Module, checkpoint: Checkpoint, stream: Stream,
                 opt: Optimiser):  # fmt: skip
        self.model, self.checkpoint, self.stream, self.opt = model, checkpoint, stream, opt
        self.plateau = Plateau(opt)
        self.history: list[dict[str, Any]] = []
        self.total, self.count, self.train_s, self.resumes = 0.0, 0, 0.0, 0

    def step(self, value: float) -> None:
        r"""Step this run's schedule on its loss (after the optimiser's step, as toy2d.py)."""
        self.plateau.step(value)
        self.total, self.count = self.total + value, self.count + 1

    def log_row(self, step: int) -> dict[str, Any]:
        row = {"iteration": step, "loss": self.total / self.count, "lr": self.plateau.lr}
        self.history.append(row)
        self.total, self.count = 0.0, 0
        return row

    def state(self, step: int, elapsed: float, optimiser: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": step,
            # copies: a packed run's parameters are views into the pack's stacked tensors
            "model": {k: v.clone() for k, v in self.model.state_dict().items()},
            "optimiser": optimiser,
            "plateau": self.plateau.state(),
            "stream": self.stream.state(),
            "rng": rng_state(),
            "history": self.history,
            "total": self.total,
            "count": self.count,
            "train_s": elapsed,
            "resumes": self.resumes,
        }

    def restore(self, s: dict[str, Any]) -> int:
        self.model.load_state_dict(s["model"])  # in place: into the pack's stacked tensors
        self.plateau.restore(s["plateau"])
        self.stream.restore(s["stream"])
        self.history, self.total, self.count = s["history"], s["total"], s["count"]
        self.train_s, self.resumes = s["train_s"], s["resumes"] + 1
        return s["step"]


def _resume(members: list[Member], optimiser: PackOptimiser, log: Callable[[str], Any]) -> int:
    r"""Continue every member from its checkpoint when all hold one at the same iteration;
    else start them all afresh (a pack was killed between two members' saves, or a member's
    checkpoint belonged to another run): the iteration to continue after."""
    blobs = [m.checkpoint.load() for m in members]
    if all(b is None for b in blobs):
        return 0
    steps = {b["state"]["step"] if b is not None else None for b in blobs}
    if len(steps) != 1:
        log(f"the pack's checkpoints are at iterations {sorted(map(str, steps))}: starting afresh")
        return 0
    for i, (m, b) in enumerate(zip(members, blobs)):
        m.restore(b["state"])
        optimiser.restore(i, b["state"]["optimiser"])
    set_rng_state(blobs[0]["state"]["rng"])
    done = blobs[0]["state"]["step"]
    log(f"resumed from {members[0].checkpoint.path} at iteration {done}"
        + (f" ({len(members)} runs)" if len(members) > 1 else ""))  # fmt: skip
    return done


def train_step(
    members: list[Member],
    optimiser: PackOptimiser,
    loss_fn: Callable[[int], torch.Tensor],
    step: int,
    names: list[str],
) -> list[float]:
    r"""One step of every member: the losses in one forward pass, one backward pass of their
    sum (each member's gradient is its own), the optimiser's step with each member's learning
    rate, then each member's schedule on its loss. The losses are read once per step (the
    schedules need them as numbers); a non-finite one stops the pack before any step."""
    losses = loss_fn(step)
    optimiser.zero_grad()
    losses.sum().backward()
    values = losses.tolist()
    for name, value in zip(names, values):
        if not math.isfinite(value):
            raise BnafError(f"{name}: training diverged at iteration {step} (loss {value})")
    optimiser.step([m.plateau.lr for m in members])
    for m, value in zip(members, values):
        m.step(value)
    return values


def fit(
    members: list[Member],
    optimiser: PackOptimiser,
    loss_fn: Callable[[int], torch.Tensor],
    log_every: int,
    every: int,
    stop_after: int | None = None,
    log: Callable[[str], Any] = print,
    names: list[str] | None = None,
) -> list[dict[str, Any]] | None:
    r"""Minimise each member's loss, ``loss_fn(step)[m]``, for ``opt.iterations`` steps,
    continuing from the members' checkpoints when they belong to these runs; returns one
    ``{"history", "resumes", "train_s"}`` per member, or ``None`` when ``stop_after`` steps of
    this call ended it early (the checkpoints then hold the runs).

    The members are independent runs of one shape trained side by side: ``loss_fn`` computes
    all their losses in one pass (:mod:`bnaf.toy.pack`), one backward pass of their sum gives
    each its own gradient, ``optimiser`` clips and steps each member with its own state and
    learning rate, and each member keeps its own schedule, so a member follows its separate run
    up to rounding. The models are tiny, so a step costs its number of
    kernels and host round trips: the loop reads the losses once per step (the plateau schedule
    needs them as numbers, and the same numbers are checked and logged)."""
    iterations = members[0].opt.iterations
    names = names or [type(m.model).__name__ for m in members]
    for m in members:
        m.checkpoint.reserve(m.model)
    done = _resume(members, optimiser, log)
    start, steps_this_call = time.perf_counter(), 0
    progress = Progress(iterations, type(members[0].model).__name__, "it", done, log)
    for step in range(done + 1, iterations + 1):
        if stop_after is not None and steps_this_call >= stop_after:
            progress.close()
            return None
        train_step(members, optimiser, loss_fn, step, names)
        steps_this_call += 1
        progress.advance()
        elapsed = time.perf_counter() - start
        if step % log_every == 0 or step == iterations:
            for m, name in zip(members, names):
                row = m.log_row(step)
                progress.log(
                    f"iter {step:7d}  loss {row['loss']:.4f}  lr {row['lr']:.2e}"
                    f"  {m.train_s + elapsed:.0f}s" + (f"  {name}" if len(members) > 1 else "")
                )
        if step % every == 0 or step == iterations:
            for i, m in enumerate(members):
                m.checkpoint.save(m.state(step, m.train_s + elapsed, optimiser.state(i)))
    progress.close()
    elapsed = time.perf_counter() - start
    return [
        {"history": m.history, "resumes": m.resumes, "train_s": m.train_s + elapsed}
        for m in members
    ]
