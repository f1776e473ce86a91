r"""Glow (Kingma and Dhariwal, 2018) for 2-D points: the baseline of Figure 2.

Each of ``depth`` steps is actnorm (per-dimension scale and bias, initialised from the first
batch so its output has zero mean and unit variance), an invertible linear map ``W`` (the 2-D
analogue of the invertible 1x1 convolution; ``log|det W|`` by ``slogdet``), and an affine
coupling ``y2 = (x2 + t(x1)) * sigmoid(s(x1) + 2)`` whose net ends in a zero-initialised layer,
so every step starts as the identity up to actnorm, as in Glow.

A 2-D Glow step is a handful of tiny kernels, so a 100-step model's cost is their number:
:meth:`Glow.forward` merges actnorm and ``W`` into one affine map per step and computes the
parts that depend on the parameters only (``exp`` of the actnorm scales, the merged maps, every
``log|det W|``) for all steps at once; :meth:`Glow.forward_reference` runs the steps one by one
and is what it is tested against.

References:
    | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma and Dhariwal, 2018)
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnaf.core.io import load_module, save_module
from bnaf.core.stats import standard_normal_log_prob

__all__ = ["Glow", "GlowStep", "load_glow", "save_glow"]


class GlowStep(nn.Module):
    r"""actnorm -> invertible linear -> affine coupling (Glow, Table 1 there)."""

    def __init__(self, dim: int, hidden: int, generator: torch.Generator):
        super().__init__()
        self.split = dim // 2
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialised", torch.tensor(False))
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
        self.weight = nn.Parameter(q)  # a random rotation, as Glow initialises W
        out = 2 * (dim - self.split)
        self.net = nn.Sequential(
            nn.Linear(self.split, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, out),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialised):
            with torch.no_grad():  # data-dependent actnorm initialisation
                self.bias.copy_(-x.mean(0))
                self.log_scale.copy_(-torch.log(x.std(0) + 1e-6))
                self.initialised.fill_(True)
        x = (x + self.bias) * self.log_scale.exp()
        log_det = self.log_scale.sum().expand(x.shape[0])
        x = x @ self.weight.T
        log_det = log_det + torch.linalg.slogdet(self.weight)[1]
        x1, x2 = x[:, : self.split], x[:, self.split :]
        shift, raw = self.net(x1).chunk(2, dim=-1)
        scale = torch.sigmoid(raw + 2.0)
        y2 = (x2 + shift) * scale
        return torch.cat([x1, y2], -1), log_det + torch.log(scale).sum(-1)

    def couple(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""The affine coupling alone: ``x`` (already through actnorm and ``W``) and the
        per-sample ``log sigmoid(s(x1) + 2)``, shape (batch, dim - split)."""
        x1, x2 = x[:, : self.split], x[:, self.split :]
        shift, raw = self.net(x1).chunk(2, dim=-1)
        raw = raw + 2.0
        return torch.cat([x1, (x2 + shift) * torch.sigmoid(raw)], -1), F.logsigmoid(raw)


class Glow(nn.Module):
    r"""``depth`` Glow steps mapping data to a standard normal (density estimation).

    Arguments:
        dim: data dimension.
        depth: number of steps (the paper's Figure 2 shows a 100-step model).
        hidden: units of the coupling networks' two hidden layers.
        seed: seed of the initial rotations.

    Example:
        >>> model = Glow(2, depth=3, hidden=8)
        >>> model.log_prob(torch.randn(5, 2)).shape
        torch.Size([5])
    """

    def __init__(self, dim: int = 2, depth: int = 8, hidden: int = 64, seed: int = 0):
        super().__init__()
        self.config = dict(dim=dim, depth=depth, hidden=hidden, seed=seed)
        self.dim = dim
        generator = torch.Generator().manual_seed(seed)
        self.steps = nn.ModuleList(GlowStep(dim, hidden, generator) for _ in range(depth))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""``z`` and ``log|det dz/dx|``: per step ``x <- (x + bias) exp(log_scale) W^T``,
        one ``addmm`` with ``A = diag(exp(log_scale)) W^T`` and ``c = (bias exp(log_scale))
        W^T``, then the coupling."""
        if self.training and not bool(self.steps[-1].initialised):
            return self.forward_reference(x)  # the first batch initialises actnorm step by step
        steps = list(self.steps)
        log_scale = torch.stack([s.log_scale for s in steps])  # (depth, dim)
        scale = log_scale.exp()
        weight_t = torch.stack([s.weight for s in steps]).mT  # (depth, dim, dim)
        a = scale[:, :, None] * weight_t
        c = torch.bmm((torch.stack([s.bias for s in steps]) * scale)[:, None, :], weight_t)
        constant = log_scale.sum() + torch.linalg.slogdet(weight_t)[1].sum()
        coupling = []
        for step, a_k, c_k in zip(steps, a.unbind(0), c.unbind(0)):
            x, ld = step.couple(torch.addmm(c_k, x, a_k))
            coupling.append(ld)
        return x, torch.cat(coupling, -1).sum(-1) + constant

    def forward_reference(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r""":meth:`forward` one :class:`GlowStep` at a time (the reference of the fast path)."""
        log_det = x.new_zeros(x.shape[0])
        for step in self.steps:
            x, ld = step(x)
            log_det = log_det + ld
        return x, log_det

    def log_prob(self, x: Tensor) -> Tensor:
        z, log_det = self(x)
        return standard_normal_log_prob(z) + log_det


def save_glow(model: Glow, path: str | Path, **extra: object) -> None:
    save_module(model, path, **extra)


def load_glow(path: str | Path) -> Glow:
    return load_module(Glow, path)[0]
