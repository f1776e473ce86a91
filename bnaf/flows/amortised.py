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
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnaf.flows.config import FlowConfig
from bnaf.flows.layers import BlockFlow, Init, Residual, build_stack, log_matvec

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

    def transform(self, x: Tensor, theta: Tensor | None = None) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        r"""``f(x; theta)`` without the residual and ``log df_i/dx_i`` (batch, d) (Eq. 9-11)."""
        if theta is None:
            raise ValueError("an amortised flow needs its per-datapoint parameters theta")
        batch, d = x.shape[0], self.dim
        h, log_g, offset = x, None, 0
        for index, (linear, (n, m)) in enumerate(zip(self.linears, self.sizes)):
            bias = theta[:, offset : offset + n]
            log_v1 = theta[:, offset + n : offset + 2 * n]
            log_v2 = theta[:, offset + 2 * n : offset + 2 * n + m]
            offset += 2 * n + m
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
    unless ``final_residual``. ``forward(z, theta)`` maps posterior samples ``z`` (batch, d) with
    per-datapoint parameters ``theta`` (batch, :attr:`n_amortised`) to ``(z_K, log|det J|)``.

    Example:
        >>> flow = AmortisedBNAF(dim=4, flows=2, hidden_factor=2)
        >>> z, log_det = flow(torch.randn(3, 4), torch.zeros(3, flow.n_amortised))
        >>> z.shape, log_det.shape
        (torch.Size([3, 4]), torch.Size([3]))
    """

    def __init__(
        self, dim: int, *, flows: int = 8, hidden_factor: int = 4, seed: int = 0, **options: Any
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

    def forward(self, z: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        if theta.shape != (z.shape[0], self.n_amortised):
            raise ValueError(
                f"theta has shape {tuple(theta.shape)}, expected ({z.shape[0]}, "
                f"{self.n_amortised})"
            )
        log_det = z.new_zeros(z.shape[0])
        offset = 0
        for t in self.transforms:
            if isinstance(t, AmortisedBlockFlow):
                z, ladj = t(z, theta[:, offset : offset + t.n_amortised])
                offset += t.n_amortised
            else:
                z, ladj = t(z)
            log_det = log_det + ladj
        return z, log_det
