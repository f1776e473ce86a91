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
from bnaf.flows.planar import PlanarFlow, planar_pack
from bnaf.toy.energy import confinement, energy
from bnaf.toy.fit import FreshBatches, Member, Noise, Stream
from bnaf.toy.params import Optimiser, ToyParams

__all__ = ["PACKED", "build_model", "pack_forward", "pack_log_prob", "pack_loss", "stream_for"]

#: toy model name -> (its class, the forward pass over a pack of them)
PACKED: dict[str, tuple[type[nn.Module], Callable[..., tuple[Tensor, Tensor]]]] = {
    "glow": (Glow, glow_pack),
    "planar": (PlanarFlow, planar_pack),
}


def pack_forward(models: Sequence[nn.Module], x: Tensor) -> tuple[Tensor, Tensor]:
    r"""``(f_m(x[m]), log|det J_{f_m}(x[m])|)`` for every model of the pack: ``x`` is (M, batch,
    d), the results (M, batch, d) and (M, batch). A model without a packed forward (B-NAF) runs
    alone, as a pack of one."""
    for cls, forward in PACKED.values():
        if all(type(m) is cls for m in models):
            return forward(models, x)
    if len(models) != 1:
        raise BnafError(f"no packed forward pass for {[type(m).__name__ for m in models]}")
    z, log_det = models[0](x[0])
    return z[None], log_det[None]


def pack_log_prob(models: Sequence[nn.Module], x: Tensor) -> Tensor:
    r"""``log p_m(x[m])`` under each density model of the pack (change of variables, Eq. 2),
    shape (M, batch)."""
    if len(models) == 1 and not any(type(models[0]) is cls for cls, _ in PACKED.values()):
        return models[0].log_prob(x[0])[None]  # type: ignore[operator]
    z, log_det = pack_forward(models, x)
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
    params: ToyParams, kind: str, targets: list[str], members: list[Member]
) -> Callable[[int], Tensor]:
    r"""``step -> (M,)``: each member's loss on its own draw, all in one forward pass: the
    negative log-likelihood of fresh samples (5.1) or the Monte Carlo ``KL(q || p)`` up to
    ``log Z`` (Appendix B, Eq. 14) against the confined energy (5.2)."""
    models = [m.model for m in members]
    if kind == "density":

        def density_loss(step: int) -> Tensor:
            x = torch.stack([m.stream(step) for m in members])  # type: ignore[operator]
            return -pack_log_prob(models, x).mean(-1)

        return density_loss
    bound, batch = params.energy.bound, members[0].opt.batch_size
    noise = [m.stream.generator for m in members]  # type: ignore[attr-defined]

    def energy_loss(step: int) -> Tensor:
        z0 = torch.stack([torch.randn(batch, 2, generator=g) for g in noise])
        x, log_det = pack_forward(models, z0)
        log_q = standard_normal_log_prob(z0) - log_det
        # U of each member, the confinement of all at once (the same numbers as
        # confined_energy member by member, in fewer kernels)
        u = torch.stack([energy(t, x_m) for t, x_m in zip(targets, x)])
        if bound is not None:
            u = u + confinement(x, bound)
        return (log_q + u).mean(-1)

    return energy_loss
