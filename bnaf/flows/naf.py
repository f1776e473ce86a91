r"""NAF-DDSF, the baseline whose size B-NAF is compared against (Table 1, bottom rows).

Neural autoregressive flow with a deep dense sigmoidal transformer (Huang et al., 2018, Eq. 8):
every flow is a MADE conditioner with conditional weight normalisation that predicts, for each
dimension ``i``, the pseudo-parameters of a small monotone network (2 dense sigmoidal layers of
16 units) applied to ``x_i``; flows are separated by reversals and followed by an element-wise
affine flow. Sizes follow the NAF experiments (``maf_experiments.py`` of github CW-Huang/NAF with
torchkit): a conditioner of ``hidden`` units in ``hidden_layers`` ELU layers, one context unit (a
constant zero input in density estimation, whose weights are parameters nonetheless), and
``3 * (hidden // d) * ds_layers`` outputs per dimension, mapped to the transformer's
pseudo-parameters by a per-dimension linear layer.

The module is trainable: ``z, log_det = model(x)``; its log-determinant is exact for the
transform it computes (including the ``delta`` clipping of the NAF code).

References:
    | Neural Autoregressive Flows (Huang et al., 2018)
    | https://arxiv.org/abs/1804.00779
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NAF_CONFIGS", "NAFDDSF", "MaskedCWNLinear", "DenseSigmoidFlow", "naf_for_dataset"]

#: dataset -> (d, conditioner hidden units, conditioner hidden layers); NAF Section 6.2 and
#: the B-NAF authors' comparison (their ``NAF_PARAMS`` in density_estimation.py).
NAF_CONFIGS: dict[str, tuple[int, int, int]] = {
    "power": (6, 100, 2),
    "gas": (8, 100, 2),
    "hepmass": (21, 512, 2),
    "miniboone": (43, 512, 1),
    "bsds300": (63, 1024, 2),
}

_DELTA = 1e-6  # torchkit's clipping constant: keeps the logit of the DSF output finite


def made_masks(dim: int, hidden: int, hidden_layers: int, generator: torch.Generator) -> list:
    r"""MADE masks (Germain et al., 2015) for inputs in the natural order ``0..d-1``.

    Hidden units get ranks ``0..d-2`` tiled (surplus removed at random) and shuffled; a unit
    sees inputs of rank ``<=`` its own, output ``i`` sees hidden units of rank ``< i``. With
    ``d = 1`` every mask is zero (the single output has no predecessors).
    """
    sizes = [hidden] * hidden_layers
    if dim == 1:
        return [torch.zeros(o, i, dtype=torch.bool) for i, o in zip([1] + sizes, sizes + [1])]
    r_in = torch.arange(dim)
    masks, r_prev = [], r_in
    for size in sizes:
        reps = -(-size // (dim - 1))
        ranks = torch.arange(dim - 1).repeat(reps)
        excess = ranks.numel() - size
        drop = torch.randperm(dim - 1, generator=generator)[:excess]
        keep = torch.ones(ranks.numel(), dtype=torch.bool)
        keep[drop] = False
        ranks = ranks[keep][torch.randperm(size, generator=generator)]
        masks.append(ranks[:, None] >= r_prev[None, :])
        r_prev = ranks
    masks.append((r_in - 1)[:, None] >= r_prev[None, :])
    return masks


class MaskedCWNLinear(nn.Module):
    r"""Masked linear layer with conditional weight normalisation (NAF Section 4):
    ``y = s(c) * (x (M * V / ||V||)^T) + b(c)``, with ``s``, ``b`` affine in the context ``c``.
    The row norm is taken before masking, as in torchkit. Every entry of ``V`` is stored (and
    counted), masked or not."""

    def __init__(
        self, in_features: int, out_features: int, context: int, mask: Tensor, device=None
    ):
        super().__init__()
        self.direction = nn.Parameter(torch.empty(out_features, in_features, device=device))
        self.cscale = nn.Linear(context, out_features, device=device)
        self.cbias = nn.Linear(context, out_features, device=device)
        self.register_buffer("mask", mask.to(device=device, dtype=torch.bool))
        with torch.no_grad():
            self.direction.normal_(0.0, 1e-3)
            self.cscale.weight.normal_(0.0, 1e-3)
            self.cbias.weight.normal_(0.0, 1e-3)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        v = self.direction
        w = v * torch.rsqrt(v.square().sum(-1, keepdim=True)) * self.mask
        return self.cscale(context) * F.linear(x, w) + self.cbias(context)


class DenseSigmoidFlow(nn.Module):
    r"""One dense sigmoidal layer of DDSF (NAF Eq. 8), applied per dimension:
    ``y = logit(w^T sigmoid(a * (u x) + b))`` with softmax-normalised rows of ``u`` and ``w``
    and ``a > 0``. ``a, b`` and the shifts of ``u, w`` are pseudo-parameters from the
    conditioner; ``u_``/``w_`` are learnt directly. Jacobians are chained in the log domain.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, device=None):
        super().__init__()
        self.in_dim, self.hidden, self.out_dim = in_dim, hidden, out_dim
        self.u_ = nn.Parameter(torch.empty(hidden, in_dim, device=device))
        self.w_ = nn.Parameter(torch.empty(out_dim, hidden, device=device))
        with torch.no_grad():
            self.u_.uniform_(-1e-3, 1e-3)
            self.w_.uniform_(-1e-3, 1e-3)

    @property
    def num_params(self) -> int:
        """Pseudo-parameters per dimension: ``a``, ``b``, ``w`` shifts, ``u`` shifts."""
        return 3 * self.hidden + self.in_dim

    def forward(self, x: Tensor, log_j: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        r"""``x`` (n, d, in), ``log_j`` (n, d, in, 1) log dx/dx_0, ``params`` (n, d, P)."""
        k = self.hidden
        a = F.softplus(params[..., :k]) + _DELTA
        b = params[..., k : 2 * k]
        pre_w = self.w_ + params[..., None, 2 * k : 3 * k]  # (n, d, out, k)
        pre_u = self.u_ + params[..., None, 3 * k :]  # (n, d, k, in)
        log_u = F.log_softmax(pre_u, -1)
        log_w = F.log_softmax(pre_w, -1)
        pre = a * (log_u.exp() @ x.unsqueeze(-1)).squeeze(-1) + b  # (n, d, k)
        s = torch.sigmoid(pre)
        mix = (log_w.exp() @ s.unsqueeze(-1)).squeeze(-1)  # (n, d, out)
        c = mix * (1 - _DELTA) + 0.5 * _DELTA
        y = torch.log(c) - torch.log1p(-c)
        # log dy_o/dx_j = log sum_k w_ok s'(pre_k) a_k u_kj + log(1-delta) - log c_o (1 - c_o)
        log_ds = F.logsigmoid(pre) + F.logsigmoid(-pre) + torch.log(a)  # (n, d, k)
        inner = log_w[..., :, :, None] + (log_ds[..., None, :, None] + log_u[..., None, :, :])
        log_dy = torch.logsumexp(inner, -2)  # (n, d, out, in)
        log_dy = log_dy + (math.log1p(-_DELTA) - torch.log(c) - torch.log1p(-c))[..., None]
        log_j = torch.logsumexp(log_dy[..., None] + log_j[..., None, :, :], -2)
        return y, log_j


class DDSFFlow(nn.Module):
    r"""One NAF-DDSF flow: cMADE conditioner -> per-dimension linear -> DDSF transformer."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        hidden_layers: int,
        ds_dim: int,
        ds_layers: int,
        context: int,
        generator: torch.Generator,
        device=None,
    ):
        super().__init__()
        outs = 3 * (hidden // dim) * ds_layers  # torchkit's num_ds_multiplier = 3
        if outs < 1:
            raise ValueError(f"hidden ({hidden}) must be >= dim ({dim}) for NAF-DDSF")
        self.dim, self.outs = dim, outs
        masks = made_masks(dim, hidden, hidden_layers, generator)
        masks[-1] = masks[-1].repeat_interleave(outs, 0)  # output unit i*outs+m belongs to i
        sizes = [dim] + [hidden] * hidden_layers + [dim * outs]
        self.made = nn.ModuleList(
            MaskedCWNLinear(i, o, context, m, device)
            for i, o, m in zip(sizes[:-1], sizes[1:], masks)
        )
        dims = [1] + [ds_dim] * (ds_layers - 1) + [1]
        self.dsf = nn.ModuleList(
            DenseSigmoidFlow(i, ds_dim, o, device) for i, o in zip(dims[:-1], dims[1:])
        )
        self.to_params = nn.Linear(outs, sum(f.num_params for f in self.dsf), device=device)
        with torch.no_grad():
            self.to_params.weight.uniform_(-1e-3, 1e-3)
            self.to_params.bias.zero_()

    def forward(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        h = x
        for i, layer in enumerate(self.made):
            h = layer(h, context)
            if i < len(self.made) - 1:
                h = F.elu(h)
        params = self.to_params(h.view(x.shape[0], self.dim, self.outs))
        y, log_j = x.unsqueeze(-1), x.new_zeros(x.shape[0], self.dim, 1, 1)
        start = 0
        for f in self.dsf:
            y, log_j = f(y, log_j, params[..., start : start + f.num_params])
            start += f.num_params
        return y.squeeze(-1), log_j.flatten(1).sum(-1)


class WNLinear(nn.Linear):
    r"""Weight-normalised linear layer ``y = g * x (V / ||V||)^T + b`` (torchkit's WNlinear)."""

    def __init__(self, in_features: int, out_features: int, device=None):
        super().__init__(in_features, out_features, device=device)
        self.scale = nn.Parameter(torch.ones(out_features, device=device))

    def forward(self, x: Tensor) -> Tensor:
        v = self.weight
        w = self.scale[:, None] * v * torch.rsqrt(v.square().sum(-1, keepdim=True))
        return F.linear(x, w, self.bias)


class ResLinear(nn.Module):
    r"""``W_h1 relu(W_0h c) + W_01 c`` with weight-normalised layers (torchkit's ResLinear)."""

    def __init__(self, in_features: int, out_features: int, device=None):
        super().__init__()
        self.dot_0h = WNLinear(in_features, out_features, device)
        self.dot_h1 = WNLinear(out_features, out_features, device)
        self.dot_01 = WNLinear(in_features, out_features, device)

    def forward(self, c: Tensor) -> Tensor:
        return self.dot_h1(F.relu(self.dot_0h(c))) + self.dot_01(c)


class NAFDDSF(nn.Module):
    r"""``flows`` DDSF flows, each followed by a reversal, then an element-wise affine flow
    ``z = m(c) + (softplus(l(c)) + delta) x`` conditioned on the context ``c``.

    Arguments:
        dim: data dimension ``d``.
        flows: number of DDSF flows (5 or 10 in the comparison).
        hidden: conditioner hidden units.
        hidden_layers: conditioner hidden layers.
        ds_dim: units of each dense sigmoidal layer (16).
        ds_layers: dense sigmoidal layers per flow (2).
        context: context size (1, fed with zeros for unconditional density estimation).
        seed: seed of the MADE hidden ranks.
        device: where to create the parameters (``"meta"`` counts without allocating).

    Example:
        >>> model = NAFDDSF(dim=3, flows=2, hidden=12, hidden_layers=1)
        >>> z, log_det = model(torch.randn(4, 3))
        >>> z.shape, log_det.shape
        (torch.Size([4, 3]), torch.Size([4]))
    """

    def __init__(
        self,
        dim: int,
        flows: int = 5,
        hidden: int = 100,
        hidden_layers: int = 2,
        ds_dim: int = 16,
        ds_layers: int = 2,
        context: int = 1,
        seed: int = 0,
        device: str | torch.device | None = None,
    ):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.dim, self.context = dim, context
        self.flows = nn.ModuleList(
            DDSFFlow(dim, hidden, hidden_layers, ds_dim, ds_layers, context, generator, device)
            for _ in range(flows)
        )
        self.mean = ResLinear(context, dim, device)
        self.lstd = ResLinear(context, dim, device)
        # torchkit's LinearFlow start: near-zero shift and std = softplus(l) + delta near 0.77
        inv = 0.5 * math.log(math.expm1(1 - _DELTA))
        with torch.no_grad():
            for res, centre in ((self.mean, 0.0), (self.lstd, inv)):
                for layer in (res.dot_01, res.dot_h1):
                    layer.scale.uniform_(-1e-3, 1e-3)
                    layer.bias.uniform_(centre - 1e-3, centre + 1e-3)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if context is None:
            context = x.new_zeros(x.shape[0], self.context)
        log_det = x.new_zeros(x.shape[0])
        for flow in self.flows:
            x, ld = flow(x, context)
            x, log_det = x.flip(1), log_det + ld
        std = F.softplus(self.lstd(context)) + _DELTA
        return self.mean(context) + std * x, log_det + torch.log(std).sum(-1)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        z, log_det = self(x, context)
        return -0.5 * (z.square().sum(-1) + self.dim * math.log(2 * math.pi)) + log_det


def naf_for_dataset(name: str, flows: int = 5, device: str | torch.device | None = None):
    r"""The NAF-DDSF of the NAF density-estimation experiments for dataset ``name``."""
    dim, hidden, hidden_layers = NAF_CONFIGS[name]
    return NAFDDSF(dim, flows, hidden, hidden_layers, device=device)
