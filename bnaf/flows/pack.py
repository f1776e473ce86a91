r"""Several B-NAF models of one shape in one forward pass: a *pack* (the seeds of a grid point).

A B-NAF step of the small density models is mostly per-operation overhead, not arithmetic, so
running the members of a pack through the same kernels costs far less than running them one
after the other. The members' parameters are stacked on a leading member dimension
(:func:`stack_parameters`); each member's own parameters become views of its row, so the
members' optimisers, Polyak averages, checkpoints and evaluations keep working on the members
themselves, and whatever they write lands in the pack.

Inside the pack the members sit side by side: a batch of ``n`` rows per member is one
``(n, M d)`` tensor whose ``M d`` "dimensions" are the members' dimensions in turn. Everything
a B-NAF does per dimension (activations, the diagonal Jacobian blocks of Eq. 10-11, the
residual gates, the permutations) is then the single model's code with ``M d`` dimensions
(:func:`bnaf.flows.chain.chain`); only the masked products are per member (batched products
with each member's weight, Eq. 8 with weight normalisation; where a single model's layer skips
its zero blocks, :mod:`bnaf.flows.blocksparse`, each member's product does so too). Each
member's log-density equals its own model's up to rounding (``tests/test_uci_pack.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnaf.core.stats import standard_normal_log_prob
from bnaf.flows.blocksparse import block_sparse_linear, panels_for
from bnaf.flows.chain import chain
from bnaf.flows.layers import BlockFlow, MaskedBlockLinear, Permutation
from bnaf.flows.logjac import masked_weights
from bnaf.flows.model import BNAF

__all__ = ["bnaf_pack", "check_packable", "pack_log_prob", "stack_parameters"]


def stack_parameters(models: Sequence[nn.Module]) -> dict[str, Tensor]:
    r"""Each parameter of ``models`` (one class and shape) stacked on a leading member
    dimension, as a new leaf; each model's parameter becomes a view of its row, so the
    models always show the pack's current values (checkpoints, evaluation) and loading a
    model's state, or an optimiser's step on it, writes into the pack."""
    stacked = {}
    for name, _ in models[0].named_parameters():
        leaf = torch.stack([m.get_parameter(name).detach() for m in models]).requires_grad_()
        for i, m in enumerate(models):
            m.get_parameter(name).data = leaf.detach()[i]
        stacked[name] = leaf
    return stacked


def check_packable(models: Sequence[BNAF]) -> None:
    r"""Raise ``ValueError`` unless ``models`` are B-NAFs of one architecture (their
    permutations may differ: random ones follow each member's seed)."""
    if not models:
        raise ValueError("a pack needs at least one model")
    first = {k: v for k, v in models[0].config.items() if k != "seed"}
    for m in models[1:]:
        if {k: v for k, v in m.config.items() if k != "seed"} != first:
            raise ValueError(f"models of different shapes cannot be packed: {m.config} vs {first}")


def _packed_linear(layer: MaskedBlockLinear, prefix: str, p: dict[str, Tensor], members: int):
    r"""The pack's product of one masked layer: ``h (n, M b d) -> (n, M a d)`` with each
    member's weight, and the log diagonal blocks ``(M d, a, b)``."""
    d, a, b = layer.dim, layer.out_factor, layer.in_factor
    weight, log_scale, bias = (p[prefix + k] for k in ("weight", "log_scale", "bias"))

    def linear(h: Tensor) -> tuple[Tensor, Tensor]:
        n = h.shape[0]
        panels = layer.panels
        if panels is None:
            panels = panels_for(d, *layer.weight.shape, h.device)
        if panels > 1:  # large layers on the CPU: each member skips its zero blocks
            rows = h.view(n, members, -1)
            parts = [block_sparse_linear(rows[:, m], weight[m], log_scale[m], bias[m],
                                         (d, a, b), panels)
                     for m in range(members)]  # fmt: skip
            out = torch.stack([o for o, _ in parts], 1).view(n, -1)
            return out, torch.stack([g for _, g in parts]).view(members * d, a, b)
        w, log_diag = masked_weights(weight, log_scale, layer.mask_o, (d, a, b))
        # (M, n, b d) @ (M, b d, a d): the members' rows are strided views of h, no copy
        out = torch.baddbmm(bias.unsqueeze(1), h.view(n, members, -1).transpose(0, 1),
                            w.transpose(1, 2))  # fmt: skip
        return out.transpose(0, 1).reshape(n, -1), log_diag.reshape(members * d, a, b)

    return linear


def _block_flow(
    flow: BlockFlow, prefix: str, p: dict[str, Tensor], x: Tensor, members: int
) -> tuple[Tensor, Tensor]:
    r"""One block flow over the pack: ``x (n, M d) -> (y (n, M d), log|det| (n, M))``,
    residual included (Section 3.1), as :meth:`BlockFlow.forward` does for one model."""
    n, d = x.shape[0], flow.dim
    linears = [
        _packed_linear(lin, f"{prefix}linears.{i}.", p, members)
        for i, lin in enumerate(flow.linears)
    ]
    y, log_g = chain(x, linears, list(flow.activations), members * d)
    log_g = log_g.view(n, members, d)
    if flow.residual == "normal":
        return x + y, F.softplus(log_g).sum(-1)
    if flow.residual == "gated":
        gate = p[prefix + "gate"]  # (M, 1)
        alpha = torch.sigmoid(gate)
        log_det = F.softplus(log_g + gate).sum(-1) - d * F.softplus(gate).squeeze(-1)
        y = torch.lerp(x.view(n, members, d), y.view(n, members, d), alpha)
        return y.view(n, members * d), log_det
    return y, log_g.sum(-1)


def bnaf_pack(
    models: Sequence[BNAF], x: Tensor, p: dict[str, Tensor] | None = None
) -> tuple[Tensor, Tensor]:
    r"""``(f_m(x[m]), log|det J_{f_m}(x[m])|)`` for every member ``m`` of a pack of B-NAFs
    (Eq. 9): ``x`` is ``(M, n, d)``, the results ``(M, n, d)`` and ``(M, n)``. ``p`` holds
    their parameters stacked (:func:`stack_parameters`); stacked afresh when ``None``."""
    members, n, d = x.shape
    if p is None:
        p = stack_parameters(models)
    h = x.transpose(0, 1).reshape(n, members * d)
    log_det = x.new_zeros(n, members)
    for i, t in enumerate(models[0].transforms):
        if isinstance(t, Permutation):  # each member's own (random ones differ by seed)
            perms = torch.stack([m.transforms[i].perm for m in models])  # type: ignore[index]
            offsets = torch.arange(members, device=perms.device).unsqueeze(1) * d
            h = torch.index_select(h, 1, (perms + offsets).view(-1))
        else:
            h, ladj = _block_flow(t, f"transforms.{i}.", p, h, members)  # type: ignore[arg-type]
            log_det = log_det + ladj
    return h.view(n, members, d).transpose(0, 1), log_det.transpose(0, 1)


def pack_log_prob(models: Sequence[BNAF], x: Tensor, p: dict[str, Tensor] | None = None) -> Tensor:
    r"""``log p_m(x[m])`` (M, n) under each member (Eq. 1, 13d)."""
    z, log_det = bnaf_pack(models, x, p)
    return standard_normal_log_prob(z) + log_det
