r"""Glow (Kingma and Dhariwal, 2018) for 2-D points: the baseline of Figure 2.

Each of ``depth`` steps is actnorm (per-dimension scale and bias, initialised from the first
batch so its output has zero mean and unit variance), an invertible linear map ``W`` (the 2-D
analogue of the invertible 1x1 convolution; ``log|det W|`` by ``slogdet``), and an affine
coupling ``y2 = (x2 + t(x1)) * sigmoid(s(x1) + 2)`` whose net ends in a zero-initialised layer,
so every step starts as the identity up to actnorm, as in Glow.

A 2-D Glow step is a handful of tiny kernels, so a 100-step model's cost is their number:
:func:`glow_pack` merges actnorm and ``W`` into one affine map per step, computes the parts
that depend on the parameters only (``exp`` of the actnorm scales, the merged maps, every
``log|det W|``) for all steps at once, and runs several models (the three targets of Figure 2)
through the same kernels; :meth:`Glow.forward_reference` runs the steps one by one and is what
it is tested against.

References:
    | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma and Dhariwal, 2018)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnaf.core.io import load_module, save_module
from bnaf.core.stats import standard_normal_log_prob

__all__ = ["PARAMETERS", "Glow", "glow_pack", "load_glow", "save_glow"]


#: the parameters of a Glow, each stacked over its steps (leading dimension ``depth``)
PARAMETERS = ("log_scale", "bias", "weight", "w1", "b1", "w2", "b2", "w3", "b3")


class Glow(nn.Module):
    r"""``depth`` Glow steps mapping data to a standard normal (density estimation).

    Each parameter holds all steps (leading dimension ``depth``): actnorm ``log_scale`` and
    ``bias`` (depth, dim), the linear maps ``weight`` (depth, dim, dim), and the coupling nets
    ``split -> hidden -> hidden -> 2 (dim - split)`` as ``w1, b1, w2, b2, w3, b3``.

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
        self.dim, self.split = dim, dim // 2
        generator = torch.Generator().manual_seed(seed)
        out = 2 * (dim - self.split)
        rotations, layers = [], []
        for _ in range(depth):
            q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
            rotations.append(q)  # a random rotation, as Glow initialises W
            # nn.Linear's default initialisation, drawn step by step from the global stream
            layers.append([nn.Linear(self.split, hidden), nn.Linear(hidden, hidden),
                           nn.Linear(hidden, out)])  # fmt: skip
        self.log_scale = nn.Parameter(torch.zeros(depth, dim))
        self.bias = nn.Parameter(torch.zeros(depth, dim))
        self.weight = nn.Parameter(torch.stack(rotations))
        for i in (1, 2, 3):
            w = torch.stack([step[i - 1].weight.detach() for step in layers])
            b = torch.stack([step[i - 1].bias.detach() for step in layers])
            if i == 3:  # zero last layer: every step starts as the identity up to actnorm
                w, b = torch.zeros_like(w), torch.zeros_like(b)
            setattr(self, f"w{i}", nn.Parameter(w))
            setattr(self, f"b{i}", nn.Parameter(b))
        self.register_buffer("initialised", torch.tensor(False))

    def _couple(self, k: int, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""Step ``k``'s affine coupling, plainly: ``x`` and ``log sigmoid(s(x1) + 2)``."""
        x1, x2 = x[:, : self.split], x[:, self.split :]
        h = torch.relu(x1 @ self.w1[k].T + self.b1[k])
        h = torch.relu(h @ self.w2[k].T + self.b2[k])
        shift, raw = (h @ self.w3[k].T + self.b3[k]).chunk(2, dim=-1)
        scale = torch.sigmoid(raw + 2.0)
        return torch.cat([x1, (x2 + shift) * scale], -1), torch.log(scale)

    @torch.no_grad()
    def initialise(self, x: Tensor) -> None:
        r"""Data-dependent actnorm initialisation on the first training batch: each step's
        actnorm gives its input zero mean and unit variance."""
        for k in range(self.log_scale.shape[0]):
            self.bias[k].copy_(-x.mean(0))
            self.log_scale[k].copy_(-torch.log(x.std(0) + 1e-6))
            x = ((x + self.bias[k]) * self.log_scale[k].exp()) @ self.weight[k].T
            x = self._couple(k, x)[0]
        self.initialised.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""``z`` and ``log|det dz/dx|`` (:func:`glow_pack` with one model)."""
        z, log_det = glow_pack([self], x[None])
        return z[0], log_det[0]

    def forward_reference(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r""":meth:`forward` one step at a time, as Glow states it (the reference of the fast
        path): actnorm, linear map, coupling."""
        if self.training and not bool(self.initialised):
            self.initialise(x)
        log_det = x.new_zeros(x.shape[0])
        for k in range(self.log_scale.shape[0]):
            x = (x + self.bias[k]) * self.log_scale[k].exp()
            x = x @ self.weight[k].T
            x, log_scale = self._couple(k, x)
            log_det = log_det + self.log_scale[k].sum() + torch.linalg.slogdet(self.weight[k])[1]
            log_det = log_det + log_scale.sum(-1)
        return x, log_det

    def log_prob(self, x: Tensor) -> Tensor:
        z, log_det = self(x)
        return standard_normal_log_prob(z) + log_det


def glow_pack(
    models: Sequence[Glow], x: Tensor, p: Mapping[str, Tensor] | None = None
) -> tuple[Tensor, Tensor]:
    r"""``z`` and ``log|det dz/dx|`` of each of ``models`` (same shape) on its own ``x[m]``:
    ``x`` is (M, batch, dim), the results (M, batch, dim) and (M, batch). ``p`` holds their
    :data:`PARAMETERS` stacked on a leading member dimension (a trained pack's tensors,
    :func:`bnaf.flows.pack.stack_parameters`, of which the models' parameters are views, so the
    actnorm initialisation below writes into them); ``None`` stacks them here.

    Per step ``x <- (x + bias) exp(log_scale) W^T`` is one ``baddbmm`` with ``A = diag(exp(
    log_scale)) W^T`` and ``c = (bias exp(log_scale)) W^T``, computed with every
    parameter-only log-determinant for all steps and models at once; each coupling layer is one
    ``baddbmm`` for all models, so a pack costs about what one model costs."""
    for model, x_m in zip(models, x):
        if model.training and not bool(model.initialised):
            model.initialise(x_m)  # the first training batch of each model
    if p is None:
        p = {name: torch.stack([getattr(m, name) for m in models]) for name in PARAMETERS}
    split = models[0].split
    scale = p["log_scale"].exp()  # (M, depth, dim)
    weight_t = p["weight"].mT
    a = scale[..., None] * weight_t  # (M, depth, dim, dim)
    c = (p["bias"] * scale)[..., None, :] @ weight_t  # (M, depth, 1, dim)
    constant = p["log_scale"].sum((1, 2)) + torch.linalg.slogdet(weight_t)[1].sum(1)
    # per-step views by unbind: its backward stacks the steps' gradients once, where indexing
    # step by step would write each into a zeroed full-size tensor (quadratic in depth)
    steps = zip(
        a.unbind(1), c.unbind(1),
        p["w1"].mT.unbind(1), p["b1"][:, :, None].unbind(1),
        p["w2"].mT.unbind(1), p["b2"][:, :, None].unbind(1),
        p["w3"].mT.unbind(1), p["b3"][:, :, None].unbind(1),
    )  # fmt: skip
    coupling = []
    for a_k, c_k, w1, b1, w2, b2, w3, b3 in steps:
        x = torch.baddbmm(c_k, x, a_k)
        x1, x2 = x[..., :split], x[..., split:]
        h = torch.relu(torch.baddbmm(b1, x1, w1))
        h = torch.relu(torch.baddbmm(b2, h, w2))
        shift, raw = torch.baddbmm(b3, h, w3).chunk(2, dim=-1)
        raw = raw + 2.0
        x = torch.cat([x1, (x2 + shift) * torch.sigmoid(raw)], -1)
        coupling.append(F.logsigmoid(raw))
    return x, torch.cat(coupling, -1).sum(-1) + constant[:, None]


def save_glow(model: Glow, path: str | Path, **extra: object) -> None:
    save_module(model, path, **extra)


def load_glow(path: str | Path) -> Glow:
    return load_module(Glow, path)[0]
