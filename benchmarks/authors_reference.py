r"""The B-NAF authors' implementation approach, restated for timing comparisons.

Follows the structure of ``bnaf.py`` in github nicola-decao/BNAF (the code behind the
published numbers): each masked layer materialises its full masked weight, gathers the log
diagonal blocks with a boolean mask, and chains the log-Jacobian blocks with a 4-D broadcast
``logsumexp`` over a ``(batch, d, a, b, c)`` tensor after repeating the weight blocks over the
batch; ``tanh`` carries its log-derivative; a gated residual closes every flow but the last.
This is a benchmark reference only: the library's flow is :mod:`bnaf.flows.layers`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AuthorsBNAF"]


class _MaskedWeight(nn.Module):
    def __init__(self, in_features: int, out_features: int, dim: int):
        super().__init__()
        self.in_features, self.out_features, self.dim = in_features, out_features, dim
        a, b = out_features // dim, in_features // dim
        weight = torch.zeros(out_features, in_features)
        for i in range(dim):
            nn.init.xavier_uniform_(weight[i * a : (i + 1) * a, : (i + 1) * b])
        self._weight = nn.Parameter(weight)
        self._diag_weight = nn.Parameter(torch.rand(out_features, 1).log())
        bound = 1.0 / math.sqrt(out_features)
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        block = torch.arange(out_features)[:, None] // a, torch.arange(in_features)[None] // b
        self.register_buffer("mask_d", (block[0] == block[1]).float())
        self.register_buffer("mask_o", (block[0] > block[1]).float())

    def get_weights(self) -> tuple[Tensor, Tensor]:
        w = torch.exp(self._weight) * self.mask_d + self._weight * self.mask_o
        sq = (w**2).sum(-1, keepdim=True)
        w = self._diag_weight.exp() * w / sq.sqrt()
        wpl = self._diag_weight + self._weight - 0.5 * torch.log(sq)
        diag = wpl.t()[self.mask_d.bool().t()]
        return w.t(), diag.view(self.dim, self.in_features // self.dim, -1)

    def forward(self, x: Tensor, grad: Tensor | None) -> tuple[Tensor, Tensor]:
        w, wpl = self.get_weights()
        g = wpl.transpose(-2, -1).unsqueeze(0).repeat(x.shape[0], 1, 1, 1)  # (n, d, a, b)
        y = x.matmul(w) + self.bias
        if grad is None:
            return y, g
        # (n, d, a, 1, b) + (n, d, 1, c, b) -> logsumexp over b -> (n, d, a, c)
        return y, torch.logsumexp(g.unsqueeze(-2) + grad.transpose(-2, -1).unsqueeze(-3), -1)


class _Tanh(nn.Module):
    def forward(self, x: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
        g = -2 * (x - math.log(2) + F.softplus(-2 * x))
        return torch.tanh(x), g.view(grad.shape) + grad


class _Flow(nn.Module):
    def __init__(self, dim: int, layers: int, hidden_factor: int, gated: bool):
        super().__init__()
        h = dim * hidden_factor
        mods: list[nn.Module] = [_MaskedWeight(dim, h, dim), _Tanh()]
        for _ in range(layers - 1):
            mods += [_MaskedWeight(h, h, dim), _Tanh()]
        mods.append(_MaskedWeight(h, dim, dim))
        self.mods = nn.ModuleList(mods)
        self.gate = nn.Parameter(torch.randn(1)) if gated else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out, grad = x, None
        for m in self.mods:
            out, grad = m(out, grad)
            grad = grad if grad.dim() == 4 else grad.view(*grad.shape, 1, 1)
        grad = grad.squeeze(-1).squeeze(-1)
        if self.gate is None:
            return out, grad.sum(-1)
        a = self.gate.sigmoid()
        ld = F.softplus(grad + self.gate) - F.softplus(self.gate)
        return a * out + (1 - a) * x, ld.sum(-1)


class AuthorsBNAF(nn.Module):
    r"""``flows`` flows (gated residual on all but the last), reversed in between."""

    def __init__(self, dim: int, flows: int, layers: int, hidden_factor: int):
        super().__init__()
        self.flows = nn.ModuleList(
            _Flow(dim, layers, hidden_factor, gated=f < flows - 1) for f in range(flows)
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_det = 0.0
        for i, flow in enumerate(self.flows):
            x, ld = flow(x)
            log_det = log_det + ld
            if i < len(self.flows) - 1:
                x = x.flip(-1)
        return x, log_det
