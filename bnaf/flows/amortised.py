r"""B-NAF with amortised parameters as a VAE posterior (Sec. 5.4, "Amortizing flow parameters").

Every affine matrix ``W`` of the flow is shared by all datapoints. For each affine layer the
encoder predicts, per datapoint, a bias ``b`` in ``R^n`` and two positive vectors ``v1`` in
``R^n`` and ``v2`` in ``R^m`` that scale ``W`` row- and column-wise:
``y = diag(v1) W diag(v2) h + b``. The scaled matrix keeps the block structure of Eq. 8 (its
diagonal blocks stay positive), so the flow stays autoregressive and monotone, and the log
diagonal blocks become ``log v1_p + log W_pq + log v2_q``. The column scaling is folded into the
Jacobian chain before the log-matrix product of Eq. 11 and the row scaling added after it, so
:func:`bnaf.flows.layers.log_matvec` is used unchanged.

The shared weights are :class:`bnaf.flows.layers.MaskedBlockLinear` (same weight normalisation and
initialisation); their own bias is removed because the bias is predicted.

The same class is the conditional B-NAF: ``theta`` comes from a context network, the VAE's
encoder (Section 5.4) or the small network of :class:`bnaf.flows.conditional.ConditionalBNAF`.
Beyond the paper, a flow at given ``theta`` is inverted row by row as in
:mod:`bnaf.flows.inverse` (the per-point scales keep every row strictly increasing), with
implicit-function gradients (:mod:`bnaf.flows.implicit`), and sampled exactly by rejection
outside a bounded range as in :mod:`bnaf.flows.sampling`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnaf.core.errors import BnafError
from bnaf.core.stats import standard_normal_log_prob
from bnaf.flows.amortised_inverse import LayerParams, ScaledRowSolver
from bnaf.flows.config import FlowConfig
from bnaf.flows.implicit import differentiable_invert
from bnaf.flows.inverse import InverseResult
from bnaf.flows.layers import BlockFlow, Init, Residual, build_stack, log_matvec
from bnaf.flows.sampling import Samples

__all__ = ["AmortisedBNAF", "AmortisedBlockFlow"]


class AmortisedBlockFlow(BlockFlow):
    r"""A :class:`~bnaf.flows.layers.BlockFlow` whose layers take per-datapoint
    ``(b, log v1, log v2)``.

    The predicted vectors arrive as one tensor ``theta`` of shape ``(batch, n_amortised)``,
    laid out layer by layer as ``[b (n), log v1 (n), log v2 (m)]``. Positivity of ``v1, v2``
    comes from the exponential (the paper does not name the map).
    """

    def __init__(
        self,
        dim: int,
        layers: int = 1,
        hidden_factor: int = 4,
        residual: Residual = "gated",
        activation: str = "tanh",
        init: Init = "authors",
    ):
        super().__init__(dim, layers, hidden_factor, residual, activation, init)
        for linear in self.linears:
            linear.bias = None  # predicted per datapoint instead
        self.sizes = [(lin.weight.shape[0], lin.weight.shape[1]) for lin in self.linears]
        self.n_amortised = sum(2 * n + m for n, m in self.sizes)

    def split(self, theta: Tensor) -> LayerParams:
        r"""``theta`` (batch, :attr:`n_amortised`) as ``(b, log v1, log v2)`` per layer."""
        out, offset = [], 0
        for n, m in self.sizes:
            out.append(
                (
                    theta[:, offset : offset + n],
                    theta[:, offset + n : offset + 2 * n],
                    theta[:, offset + 2 * n : offset + 2 * n + m],
                )
            )
            offset += 2 * n + m
        return out

    def transform(self, x: Tensor, theta: Tensor | None = None) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        r"""``f(x; theta)`` without the residual and ``log df_i/dx_i`` (batch, d) (Eq. 9-11)."""
        if theta is None:
            raise ValueError("an amortised flow needs its per-datapoint parameters theta")
        batch, d = x.shape[0], self.dim
        h, log_g = x, None
        layers = zip(self.linears, self.split(theta))
        for index, (linear, (bias, log_v1, log_v2)) in enumerate(layers):
            w, log_w = linear.weights()  # shared: (n, m) and log diagonal blocks (d, a, b)
            y = log_v1.exp() * F.linear(h * log_v2.exp(), w) + bias
            log_v1 = log_v1.view(batch, d, -1)
            log_v2 = log_v2.view(batch, d, -1)
            if log_g is None:  # input side has one unit per dimension: blocks are a x 1
                log_g = log_w.squeeze(-1).unsqueeze(0) + log_v2 + log_v1
            else:
                log_g = log_matvec(log_w, log_g + log_v2) + log_v1
            if index < len(self.activations):
                y, log_act = self.activations[index](y)
                log_g = log_g + log_act.view(batch, d, -1)
            h = y
        return h, log_g.squeeze(-1)

    def forward(self, x: Tensor, theta: Tensor | None = None) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        y, log_g = self.transform(x, theta)
        # The residual connections of Section 3.1, as in BlockFlow.forward.
        if self.residual == "normal":
            return x + y, F.softplus(log_g).sum(-1)
        if self.residual == "gated":
            alpha = torch.sigmoid(self.gate)
            log_det = F.softplus(log_g + self.gate) - F.softplus(self.gate)
            return alpha * y + (1.0 - alpha) * x, log_det.sum(-1)
        return y, log_g.sum(-1)


class AmortisedBNAF(nn.Module):
    r"""``flows`` amortised B-NAF flows with a permutation after each but the last.

    Built like :class:`bnaf.flows.model.BNAF`, with the same keywords and defaults except
    ``flows=8, hidden_factor=4`` (Section 5.4's best shape); the last flow has no residual
    unless ``final_residual``. ``forward(z, context)`` maps ``z`` (batch, d) to
    ``(z_K, log|det J|)`` with per-point parameters ``theta = context_net(context)`` of shape
    (batch, :attr:`n_amortised`); without a ``context_net`` (the VAE, whose encoder predicts
    ``theta``) the context is ``theta`` itself.

    Example:
        >>> flow = AmortisedBNAF(dim=4, flows=2, hidden_factor=2)
        >>> z, log_det = flow(torch.randn(3, 4), torch.zeros(3, flow.n_amortised))
        >>> z.shape, log_det.shape
        (torch.Size([3, 4]), torch.Size([3]))
    """

    def __init__(
        self,
        dim: int,
        *,
        flows: int = 8,
        hidden_factor: int = 4,
        seed: int = 0,
        context_net: nn.Module | None = None,
        **options: Any,
    ):
        super().__init__()
        # the other keywords and their defaults are BNAF's (bnaf.flows.model.BNAF)
        flow = FlowConfig.of(flows=flows, hidden_factor=hidden_factor, **options)
        self.config = dict(dim=dim, **flow.kwargs(), seed=seed)
        self.dim = dim
        self.transforms = build_stack(AmortisedBlockFlow, dim, flow, seed)
        self.n_amortised = sum(
            t.n_amortised for t in self.transforms if isinstance(t, AmortisedBlockFlow)
        )
        self.context_net = context_net

    def theta(self, context: Tensor) -> Tensor:
        r"""The per-point flow parameters (batch, :attr:`n_amortised`) of ``context``."""
        return context if self.context_net is None else self.context_net(context)

    def _per_flow(self, z: Tensor, theta: Tensor) -> list[Tensor | None]:
        """``theta`` cut into each block flow's share (``None`` for permutations)."""
        if theta.shape != (z.shape[0], self.n_amortised):
            raise ValueError(
                f"theta has shape {tuple(theta.shape)}, expected ({z.shape[0]}, "
                f"{self.n_amortised})"
            )
        out: list[Tensor | None] = []
        offset = 0
        for t in self.transforms:
            if isinstance(t, AmortisedBlockFlow):
                out.append(theta[:, offset : offset + t.n_amortised])
                offset += t.n_amortised
            else:
                out.append(None)
        return out

    def forward(self, z: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        log_det = z.new_zeros(z.shape[0])
        for t, theta in zip(self.transforms, self._per_flow(z, self.theta(context))):
            z, ladj = t(z) if theta is None else t(z, theta)
            log_det = log_det + ladj
        return z, log_det

    def log_prob(self, x: Tensor, context: Tensor) -> Tensor:
        r"""``log p(x | context) = log N(f(x; theta); 0, I) + log|det J|`` (Eq. 1), (batch,)."""
        z, log_det = self(x, context)
        return standard_normal_log_prob(z) + log_det

    def invert(
        self, z: Tensor, context: Tensor, xtol: float | None = None, max_iter: int = 100
    ) -> InverseResult:
        r"""``x = f^{-1}(z; theta)`` row by row (:mod:`bnaf.flows.amortised_inverse`), with
        implicit-function gradients with respect to ``z``, the shared weights and ``theta``
        (so to the context network too). Rows outside the range are NaN, ``inside`` False."""
        theta = self.theta(context)
        return self._invert_theta(z.to(theta), theta, xtol, max_iter)

    def inverse(
        self, z: Tensor, context: Tensor, outside: Literal["raise", "mask"] = "raise"
    ) -> Tensor | tuple[Tensor, Tensor]:
        r""":meth:`invert`'s ``x``; a point outside the range (or a search that did not
        converge) raises :class:`~bnaf.core.errors.BnafError`, or with ``outside="mask"``
        comes back as a NaN row beside the mask of points inside (``(x, inside)``)."""
        res = self.invert(z, context)
        if outside == "mask":
            return res.x, res.inside
        if not bool(res.inside.all()):
            raise BnafError(
                f"{int((~res.inside).sum())} of {len(z)} points lie outside the flow's range "
                "at their context; use outside='mask' to invert the others"
            )
        if not bool(res.converged.all()):
            raise BnafError(
                f"the root search did not converge for {int((~res.converged).sum())} points"
            )
        return res.x

    def sample(
        self,
        n: int,
        context: Tensor,
        generator: torch.Generator | None = None,
        max_draws: int | None = None,
    ) -> Samples:
        r"""``n`` samples of ``p(x | context)`` normalised over its range, by inverting base
        draws and rejecting those outside the range (as :func:`bnaf.flows.sampling.sample`).

        ``context`` of shape ``(c,)`` gives ``x`` of shape ``(n, d)``; a batch ``(m, c)``
        gives ``(n, m, d)``, ``n`` draws per context. The draws are differentiable with
        respect to the parameters and the context (implicit gradients of the inverse; the
        accepted base points themselves do not move). ``accepted`` is the accepted fraction
        over all contexts. Gives up with :class:`~bnaf.core.errors.BnafError` after
        ``max_draws`` base draws (default ``100`` per requested sample).
        """
        single = context.dim() == 1
        contexts = context[None] if single else context
        m = contexts.shape[0]
        theta = self.theta(contexts).repeat(n, 1)  # row j * m + k: draw j at context k
        like = theta
        x = torch.full((n * m, self.dim), math.nan, dtype=like.dtype, device=like.device)
        pending = torch.ones(n * m, dtype=torch.bool, device=like.device)
        max_draws = 100 * max(n * m, 1) if max_draws is None else max_draws
        drawn = 0
        while bool(pending.any()):
            if drawn >= max_draws:
                raise BnafError(
                    f"{int(pending.sum())} of {n * m} samples still missing after {drawn} base "
                    "draws: the flow's range holds too little base mass"
                )
            idx = pending.nonzero().squeeze(1)
            z = torch.randn(len(idx), self.dim, generator=generator, dtype=like.dtype)
            res = self._invert_theta(z.to(like.device), theta[idx])
            drawn += len(idx)
            got = idx[res.inside]
            x = x.index_put((got,), res.x[res.inside])
            pending[got] = False
        x = x.view(n, m, self.dim)
        return Samples(x[:, 0] if single else x, n * m / drawn, drawn)

    def _invert_theta(
        self, z: Tensor, theta: Tensor, xtol: float | None = None, max_iter: int = 100
    ) -> InverseResult:
        return differentiable_invert(
            self,
            z,
            xtol,
            max_iter,
            per_flow=self._per_flow(z, theta),
            make_solver=lambda t, th, y: ScaledRowSolver(t, t.split(th), y),
        )
