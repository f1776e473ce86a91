r"""The seeds of one grid point trained together: a *pack* of :class:`Trainer`\ s (Section 5.3).

Each member is a whole :class:`bnaf.uci.trainer.Trainer`: its model, initial weights, data
order, AMSGrad state, gradient clipping, Polyak average, plateau schedule with reload-best,
early stopping, non-finite policy and checkpoint are its own, exactly as in its separate run.
Only the forward and backward passes are shared: the members' parameters are stacked
(:func:`bnaf.flows.pack.stack_parameters`) and one pass computes every member's loss on its
own batch (:func:`bnaf.flows.pack.pack_log_prob`); each member's gradient is then its row of the
stacked gradient, and the member's own optimiser and average step its own parameters (views
of the stack). A member that stops early (or diverges) leaves the pack; the rest go on.
Members never mix: each member's numbers equal its separate run's up to rounding
(``tests/test_uci_pack.py``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from bnaf.core.errors import BnafError
from bnaf.flows import BNAF
from bnaf.flows.compiled import CompiledLoss, compile_errors
from bnaf.flows.pack import check_packable, pack_log_prob, stack_parameters
from bnaf.uci.trainer import Trainer

__all__ = ["PackedTrainer", "pack_losses"]


def pack_losses(models: list[BNAF], x: Tensor, stacked: dict[str, Tensor]) -> Tensor:
    r"""Each member's mean negative log-likelihood on its batch ``x[m]`` (Eq. 1), shape (M,)."""
    return -pack_log_prob(models, x, stacked).mean(-1)


class PackedTrainer:
    r"""Steps the unfinished members of a pack together, one epoch at a time.

    Arguments:
        trainers: one :class:`Trainer` per seed, on the same training split and params.
    """

    def __init__(self, trainers: Sequence[Trainer]):
        self.trainers = list(trainers)
        first = self.trainers[0]
        if any(t.x_train is not first.x_train or t.tp != first.tp for t in self.trainers):
            raise ValueError("the members of a pack share their training split and params")
        check_packable([t.model for t in self.trainers])
        # the members' own losses are compiled or not alike (their params are equal)
        self.losses = CompiledLoss(pack_losses) if first.tp.compile else pack_losses
        #: seed index -> the message that made the member leave the pack (divergence)
        self.failed: dict[int, str] = {}
        self._members: list[Trainer] = []
        self._stacked: dict[str, Tensor] = {}

    @property
    def active(self) -> list[Trainer]:
        r"""The members still training: neither finished nor failed."""
        return [t for i, t in enumerate(self.trainers) if not t.finished and i not in self.failed]

    @property
    def finished(self) -> bool:
        return not self.active

    def _stack(self, members: list[Trainer]) -> dict[str, Tensor]:
        r"""The stacked parameters of ``members``, stacked afresh when the pack changed."""
        if [id(t) for t in members] != [id(t) for t in self._members]:
            self._stacked = stack_parameters([t.model for t in members])
            self._members = list(members)
        return self._stacked

    # ------------------------------------------------------------------ loop
    def step(self, members: list[Trainer], x: Tensor) -> tuple[Tensor, Tensor]:
        r"""One optimiser step of each member on its batch ``x[m]`` (M, batch, d): the
        members' losses and gradient norms before clipping (M,), left on the device."""
        stacked = self._stack(members)
        models = [t.model for t in members]
        with compile_errors():  # a compiled loss compiles its backward pass at the first
            losses = self.losses(models, x, stacked)  # Eq. 1, per member
            for leaf in stacked.values():
                leaf.grad = None
            losses.sum().backward()  # members are independent: row m is member m's gradient
        grads = {name: leaf.grad.unbind(0) for name, leaf in stacked.items()}  # type: ignore[union-attr]
        norms = []
        for i, t in enumerate(members):
            for name, p in t.model.named_parameters():
                p.grad = grads[name][i]
            # then exactly what the member's own Trainer.step does after its backward pass
            norms.append(torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.tp.clip_norm))
            t.optimizer.step()
            t.polyak.update()
        return losses.detach(), torch.stack(norms)

    def train_epoch(self, members: list[Trainer]) -> list[float | None]:
        r"""One pass of each member over the training split in its own order (its own
        shuffling generator, as :meth:`Trainer.train_epoch`); each member's mean batch loss,
        or None where a loss or gradient norm of that member was not finite."""
        first = members[0]
        n, bs, device = len(first.x_train), first.tp.batch_size, first.device
        perm = torch.stack(
            [torch.randperm(n, generator=t.generator) for t in members]
        ).to(device)  # fmt: skip
        total = torch.zeros(len(members), device=device, dtype=torch.float64)
        finite = torch.ones(len(members), device=device, dtype=torch.bool)
        steps = 0
        for start in range(0, n, bs):
            loss, norm = self.step(members, first.x_train[perm[:, start : start + bs]])
            total += loss
            finite &= torch.isfinite(loss) & torch.isfinite(norm)
            steps += 1
        means = (total / steps).tolist()  # one read per epoch, as Trainer.train_epoch
        return [m if ok else None for m, ok in zip(means, finite.tolist())]

    def run_epoch(self, last_good: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
        r"""One epoch of every active member (:meth:`Trainer.run_epoch` for each): members
        whose epoch was not finite are restored from ``last_good[i]`` with a lower learning
        rate and retried together, the others wait; a member out of retries leaves the pack
        (``failed``). Returns the epoch records by member index."""
        index = {id(t): i for i, t in enumerate(self.trainers)}
        todo, attempts = self.active, {id(t): 0 for t in self.active}
        records: dict[int, dict[str, Any]] = {}
        while todo:
            start = time.perf_counter()
            losses = self.train_epoch(todo)
            seconds = time.perf_counter() - start
            retry = []
            for t, loss in zip(todo, losses):
                i = index[id(t)]
                if loss is not None:
                    records[i] = t.end_epoch(loss, seconds)
                    continue
                attempts[id(t)] += 1
                try:
                    t.recover(attempts[id(t)], last_good[i])
                except BnafError as exc:
                    self.failed[i] = str(exc)
                    continue
                retry.append(t)
            todo = retry
        return records
