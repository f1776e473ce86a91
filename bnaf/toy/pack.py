r"""Several toy runs of one shape in one forward pass: a *pack*.

The toy baselines are tiny models trained for many steps (a 100-step Glow for 20k iterations,
Section 5.1; K = 32 planar flows for 500k, Section 5.2), so a step costs its number of kernels,
not its arithmetic. Stacking the parameters of the runs of one shape (the three targets of
Figure 2, the four energies of Figure 3) on a leading *member* dimension runs them all through
the same kernels (batched products), for about the cost of one. Everything that is per run
stays per run (:class:`bnaf.toy.fit.Member`): data, initial weights, optimiser, clipping,
schedule, checkpoint and output files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bnaf.core.errors import BnafError
from bnaf.core.runtime import seed_everything
from bnaf.core.stats import standard_normal_log_prob
from bnaf.flows import BNAF
from bnaf.flows.glow import Glow, glow_pack
from bnaf.flows.pack import stack_parameters
from bnaf.flows.planar import PlanarFlow, planar_pack
from bnaf.toy.energy import confined_energies
from bnaf.toy.fit import FreshBatches, Member, Noise, Stream
from bnaf.toy.params import Optimiser, ToyParams

__all__ = ["PACKED", "Pack", "build_model", "pack_loss", "stack_parameters", "stream_for"]

#: toy model name -> (its class, the forward pass over a pack of them: ``(models, x, p=None)``,
#: with ``p`` their parameters stacked on a member dimension, stacked afresh when ``None``)
PACKED: dict[str, tuple[type[nn.Module], Callable[..., tuple[Tensor, Tensor]]]] = {
    "glow": (Glow, glow_pack),
    "planar": (PlanarFlow, planar_pack),
}


class Pack:
    r"""The models of a pack and the tensors its optimiser steps: their parameters stacked
    (:func:`stack_parameters`) when the model has a packed forward pass, else the one model's
    own parameters (B-NAF trains alone, a pack of one)."""

    def __init__(self, models: Sequence[nn.Module]):
        self.models = list(models)
        self.forward_pass = next((fwd for cls, fwd in PACKED.values()
                                  if all(type(m) is cls for m in self.models)), None)  # fmt: skip
        if self.forward_pass is None and len(self.models) != 1:
            names = [type(m).__name__ for m in self.models]
            raise BnafError(f"no packed forward pass for {names}")
        self.stacked = self.forward_pass is not None
        if self.stacked:
            self.named = stack_parameters(self.models)
            self.params = list(self.named.values())
        else:
            self.params = [p for p in self.models[0].parameters() if p.requires_grad]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""``(f_m(x[m]), log|det J_{f_m}(x[m])|)`` for every member: ``x`` (M, batch, d)."""
        if self.forward_pass is None:
            z, log_det = self.models[0](x[0])
            return z[None], log_det[None]
        return self.forward_pass(self.models, x, self.named)

    def log_prob(self, x: Tensor) -> Tensor:
        r"""``log p_m(x[m])`` under each density model (change of variables, Eq. 2)."""
        if self.forward_pass is None:
            return self.models[0].log_prob(x[0])[None]  # type: ignore[operator]
        z, log_det = self.forward(x)
        return standard_normal_log_prob(z) + log_det


def build_model(params: ToyParams, kind: str, model_name: str) -> nn.Module:
    r"""A run's model, built from the seed exactly as its separate run builds it."""
    seed_everything(params.seed)
    if model_name == "bnaf":
        exp: Any = params.experiment(kind)
        return BNAF(2, **exp.bnaf.flow.kwargs(), seed=params.seed)
    if model_name == "glow":
        cfg = params.density.glow
        return Glow(2, depth=cfg.depth, hidden=cfg.hidden, seed=params.seed)
    planar = params.energy.planar
    return PlanarFlow(2, flows=planar.flows, init_std=planar.init_std)


def stream_for(params: ToyParams, kind: str, target: str, opt: Optimiser) -> Stream:
    r"""A run's training randomness: fresh data batches (5.1) or base noise (5.2)."""
    if kind == "density":
        return FreshBatches(target, opt.batch_size, np.random.default_rng([params.seed, 0]))
    return Noise(torch.Generator().manual_seed(params.seed + 1))


def pack_loss(
    params: ToyParams, kind: str, targets: list[str], members: list[Member], pack: Pack
) -> Callable[[int], Tensor]:
    r"""``step -> (M,)``: each member's loss on its own draw, all in one forward pass: the
    negative log-likelihood of fresh samples (5.1) or the Monte Carlo ``KL(q || p)`` up to
    ``log Z`` (Appendix B, Eq. 14) against the confined energy (5.2)."""
    if kind == "density":

        def density_loss(step: int) -> Tensor:
            x = torch.stack([m.stream(step) for m in members])  # type: ignore[operator]
            return -pack.log_prob(x).mean(-1)

        return density_loss
    bound, batch = params.energy.bound, members[0].opt.batch_size
    noise = [m.stream.generator for m in members]  # type: ignore[attr-defined]

    def energy_loss(step: int) -> Tensor:
        z0 = torch.stack([torch.randn(batch, 2, generator=g) for g in noise])
        x, log_det = pack.forward(z0)
        log_q = standard_normal_log_prob(z0) - log_det
        # each member's confined U with its gradient in closed form (one autograd node)
        return (log_q + confined_energies(x, targets, bound)).mean(-1)

    return energy_loss
