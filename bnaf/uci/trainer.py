r"""The density-estimation training loop of Section 5.3, resumable at every epoch.

One :class:`Trainer` holds everything a run needs to continue bit-identically after a kill:
the model, the optimiser, the Polyak average, the plateau schedule, the shuffling generator,
the global RNG states, the epoch counter, the history and the best-on-validation state.
:meth:`Trainer.snapshot` captures all of it and :meth:`Trainer.restore` puts it back.

Per epoch: one pass over a fresh permutation of the training split in batches of slices of a
tensor already on the device; the loss is the mean negative log-likelihood (Eq. 1), clipped
gradients, an optimiser step and a Polyak update per batch. Then validation on the averaged
weights, one step of the plateau schedule, possibly a reload of the best state and a decay.
"""

from __future__ import annotations

import copy
import random
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bnaf.core.checkpoint import cpu_copy, rng_state, set_rng_state
from bnaf.core.errors import BnafError
from bnaf.core.optim import Adam, PlateauSchedule, PolyakAverage, decayed_lr
from bnaf.core.stats import batch_means_mean, log_likelihoods, summarise
from bnaf.flows import BNAF, FlowConfig
from bnaf.flows.compiled import CompiledLoss, compile_errors
from bnaf.uci.params import TrainParams

__all__ = ["Trainer", "batch_loss", "rng_state", "set_rng_state"]


def batch_loss(model: BNAF, x: Tensor) -> Tensor:
    r"""Mean negative log-likelihood of a batch (Eq. 1)."""
    return -model.log_prob(x).mean()


class Trainer:
    r"""Training state and loop for one (dataset, config, seed).

    Arguments:
        train, validation: the splits, already on ``device``.
        flow: the flow of this grid point (``uci.flow`` with its ``L`` and ``H``).
        seed: seeds the initial weights (global RNG) and the shuffling generator.
        train_params: the ``uci.train`` params.
        log: a function that prints one progress line.
    """

    def __init__(
        self,
        train: Tensor,
        validation: Tensor,
        flow: FlowConfig,
        seed: int,
        train_params: TrainParams,
        device: torch.device,
        log: Any = print,
    ):
        self.x_train, self.x_val = train, validation
        self.tp, self.device, self.log = train_params, device, log
        # the eager loss is the reference; compile: true fuses it (bnaf.flows.compiled)
        self.loss = CompiledLoss(batch_loss) if train_params.compile else batch_loss
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        self.model = BNAF(train.shape[1], **flow.kwargs(), seed=seed).to(device)
        tp = train_params
        self.optimizer = Adam(
            self.model.parameters(),
            tp.lr,
            tuple(tp.betas),
            tp.eps,
            tp.optimizer == "amsgrad",
            fused=tp.fused_adam,
        )
        self.polyak = PolyakAverage(self.model, tp.polyak, tp.polyak_init)
        self.schedule = PlateauSchedule(
            tp.patience, tp.cooldown, tp.early_stopping, tp.threshold, tp.threshold_mode
        )
        # Shuffling has its own generator (a separate stream from the initial weights).
        self.generator = torch.Generator().manual_seed(int(seed) * 7919 + 1)
        self.epoch = 0
        self.finished = False
        self.stop_reason = ""
        self.history: list[dict[str, Any]] = []
        self.nonfinite_events: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.best_epoch = 0
        self.best_validation: float | None = None
        self.train_s = 0.0
        self.samples_seen = 0

    # ----------------------------------------------------------------- state
    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def weights(self) -> dict[str, Any]:
        r"""A copy of the model, optimiser (incl. learning rate) and Polyak states: what the
        authors' ``save_model`` keeps at a new best and ``load_model`` restores at a decay."""
        return cpu_copy(  # on the host: a BSDS300 L2 H40d copy is 127 MB of device memory
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "polyak": self.polyak.state_dict(),
            }
        )

    def load_weights(self, weights: dict[str, Any]) -> None:
        self.model.load_state_dict(weights["model"])
        self.optimizer.load_state_dict(copy.deepcopy(weights["optimizer"]))
        self.polyak.load_state_dict(weights["polyak"])

    def snapshot(self) -> dict[str, Any]:
        r"""Everything needed to continue exactly from here (a checkpoint's content)."""
        return {
            "weights": self.weights(),
            "best": copy.deepcopy(self.best),
            "schedule": self.schedule.state_dict(),
            "rng": rng_state(self.generator),
            **copy.deepcopy(
                {k: getattr(self, k) for k in ("epoch", "finished", "stop_reason", "history")}
            ),
            **copy.deepcopy(
                {
                    k: getattr(self, k)
                    for k in ("nonfinite_events", "best_epoch", "best_validation")
                }
            ),
            "train_s": self.train_s,
            "samples_seen": self.samples_seen,
        }

    def restore(self, snap: dict[str, Any]) -> None:
        self.load_weights(snap["weights"])
        self.best = copy.deepcopy(snap["best"])
        self.schedule.load_state_dict(snap["schedule"])
        set_rng_state(snap["rng"], self.generator)
        for key in ("epoch", "finished", "stop_reason", "history", "nonfinite_events"):
            setattr(self, key, copy.deepcopy(snap[key]))
        for key in ("best_epoch", "best_validation", "train_s", "samples_seen"):
            setattr(self, key, snap[key])

    # ------------------------------------------------------------------ loop
    def step(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""One optimiser step on batch ``x``: the loss and the gradient norm before clipping,
        both left on the device (nothing in a step waits for the device)."""
        with compile_errors():  # a compiled loss compiles its backward pass at the first
            loss = self.loss(self.model, x)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tp.clip_norm)
        self.optimizer.step()
        self.polyak.update()
        return loss.detach(), norm

    def train_epoch(self) -> float | None:
        r"""One pass over the training split; the mean batch loss, or None if any loss or
        gradient norm was not finite (checked once per epoch to avoid a sync per step)."""
        n, bs = len(self.x_train), self.tp.batch_size
        perm = torch.randperm(n, generator=self.generator).to(self.device)
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        finite = torch.ones((), device=self.device, dtype=torch.bool)
        steps = 0
        for start in range(0, n, bs):
            loss, norm = self.step(self.x_train[perm[start : start + bs]])
            total += loss
            finite &= torch.isfinite(loss) & torch.isfinite(norm)
            steps += 1
        if not bool(finite):
            return None
        return float(total) / steps

    def validate(self) -> tuple[float, float]:
        r"""Validation log-likelihood on the Polyak-averaged weights: (exact per-sample mean,
        the signal for the schedule: per-sample or batch-means as ``selection_mean`` says)."""
        self.polyak.swap()
        try:
            values = log_likelihoods(self.model, self.x_val, self.tp.eval_batch_size)
        finally:
            self.polyak.swap()
        exact = summarise(values).mean
        if self.tp.selection_mean == "batch":
            return exact, batch_means_mean(values, self.tp.batch_size)
        return exact, exact

    def run_epoch(self, last_good: dict[str, Any]) -> dict[str, Any]:
        r"""Train one epoch, validate, step the schedule; returns the epoch's record. A
        non-finite loss restores ``last_good`` with a lower learning rate and retries."""
        attempts = 0
        while True:
            start = time.perf_counter()
            loss = self.train_epoch()
            seconds = time.perf_counter() - start
            if loss is not None:
                return self.end_epoch(loss, seconds)
            attempts += 1
            self.recover(attempts, last_good)

    def recover(self, attempts: int, last_good: dict[str, Any]) -> None:
        r"""After the ``attempts``-th non-finite try of an epoch: restore ``last_good`` (the
        state the epoch started from) with a lower learning rate, or fail when the retries
        are spent."""
        failed_lr, events = self.lr, self.nonfinite_events  # kept across the restore
        if attempts > self.tp.nonfinite_retries:
            raise BnafError(
                f"training diverged: non-finite loss in epoch {self.epoch + 1} after "
                f"{self.tp.nonfinite_retries} retries with a lower learning rate "
                f"(last lr {failed_lr:.3g}); the checkpoint of epoch {self.epoch} is kept"
            )
        self.restore(last_good)
        new_lr = failed_lr * self.tp.nonfinite_lr_factor
        self.nonfinite_events = events + [
            {"epoch": self.epoch + 1, "attempt": attempts, "lr_after": new_lr}
        ]
        for group in self.optimizer.param_groups:
            group["lr"] = new_lr
        self.log(f"non-finite loss in epoch {self.epoch + 1}: restored, lr -> {new_lr:.3g}")

    def end_epoch(self, loss: float, seconds: float) -> dict[str, Any]:
        r"""Close an epoch whose training gave the mean batch loss ``loss`` in ``seconds``:
        validate, step the schedule (keep a new best, reload it and decay on a plateau, stop
        early) and return the epoch's record."""
        n = len(self.x_train)
        self.train_s += seconds
        self.samples_seen += n
        val_ll, signal = self.validate()
        lr_used = self.lr
        decision = self.schedule.step(-signal)
        self.epoch += 1
        if decision.improved:
            self.best = self.weights()
            self.best_epoch, self.best_validation = self.epoch, val_ll
        if decision.reduce:
            if self.tp.reload_best_on_decay and self.best is not None:
                self.load_weights(self.best)
            new_lr = decayed_lr(self.lr, self.tp.lr_decay, self.tp.min_lr)
            for group in self.optimizer.param_groups:
                group["lr"] = new_lr
        if decision.stop:
            self.finished, self.stop_reason = True, "early_stopping"
        elif self.epoch >= self.tp.max_epochs:
            self.finished, self.stop_reason = True, "max_epochs"
        record = {
            "epoch": self.epoch,
            "train_nll": loss,
            "validation_ll": val_ll if np.isfinite(val_ll) else None,
            "lr": lr_used,
            "samples_per_s": n / seconds,
            "seconds": seconds,
            "best": decision.improved,
            "decay": decision.reduce,
        }
        self.history.append(record)
        return record
