r"""The pieces of a B-NAF stack (De Cao, Titov and Aziz, 2019): masked block layers, the
strictly increasing activations, one block flow, the permutations between flows, and the
builder of a stack of them (:func:`build_stack`), shared by :class:`bnaf.flows.model.BNAF` and
the amortised posterior :class:`bnaf.flows.amortised.AmortisedBNAF`.

Each block flow keeps the diagonal blocks of its Jacobian in the log domain, as a tensor of
shape ``(batch, d, a)`` (the input side of every chain has one column per dimension, so the
diagonal blocks of the partial Jacobian ``dh/dx`` are ``a x 1``), and chains them through the
layers with the log-matrix product of Eq. 10-11 / Appendix D.

References:
    | Block Neural Autoregressive Flow (De Cao et al., 2019)
    | https://arxiv.org/abs/1904.04676
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnaf.flows.blocksparse import block_sparse_linear, panels_for
from bnaf.flows.chain import chain, chain_log, chain_scaled
from bnaf.flows.config import FlowConfig
from bnaf.flows.logjac import log_matvec, masked_weights, tanh_derivative, tanh_log_derivative

__all__ = [
    "ACTIVATIONS",
    "BlockFlow",
    "Init",
    "LeakyReLU",
    "MaskedBlockLinear",
    "Permutation",
    "Residual",
    "Stack",
    "Tanh",
    "build_stack",
    "log_matvec",
]

Residual = Literal["none", "normal", "gated"]
Init = Literal["authors", "paper"]


class Stack(Protocol):
    """What the inverse and the sampler need of a flow: its ``dim`` and its ``transforms``
    (block flows and permutations, applied in order)."""

    dim: int
    transforms: nn.ModuleList

    def parameters(self, recurse: bool = True): ...


class MaskedBlockLinear(nn.Module):
    r"""Affine map with a lower block-triangular weight ``W`` in ``R^{ad x bd}`` (Eq. 7-8).

    Diagonal blocks are ``g(B_ii) = exp(B_ii)``, blocks below the diagonal are free, blocks
    above are structurally zero. Each row is weight-normalised, ``w = exp(s) v / ||v||``
    (Appendix C); the bias is free.

    Arguments:
        dim: the number of flow dimensions ``d``.
        in_factor: ``b``, input units per dimension.
        out_factor: ``a``, output units per dimension.
        init: ``"authors"`` (the released code: Xavier-uniform per block row, which produced
            the published numbers) or ``"paper"`` (Appendix C: ``v ~ N(0, 1)``).

    The attribute ``panels`` chooses the product: ``None`` (default) lets
    :func:`bnaf.flows.blocksparse.panels_for` decide by size and device, ``1`` forces the dense
    product, more forces that many row panels that skip the zero blocks.
    """

    def __init__(self, dim: int, in_factor: int, out_factor: int, init: Init = "authors"):
        super().__init__()
        self.dim, self.in_factor, self.out_factor = dim, in_factor, out_factor
        out_features, in_features = dim * out_factor, dim * in_factor
        row = torch.arange(out_features) // out_factor  # block row of each output unit
        col = torch.arange(in_features) // in_factor  # block column of each input unit
        self.register_buffer("mask_d", row[:, None] == col[None, :], persistent=False)
        self.register_buffer("mask_o", row[:, None] > col[None, :], persistent=False)
        self.register_buffer("mask_u", row[:, None] < col[None, :], persistent=False)

        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.log_scale = nn.Parameter(torch.empty(out_features, 1))  # s in Appendix C
        self.bias = nn.Parameter(torch.empty(out_features))
        self.panels: int | None = None
        self.reset_parameters(init)

    @torch.no_grad()
    def reset_parameters(self, init: Init = "authors") -> None:
        d, a, b = self.dim, self.out_factor, self.in_factor
        self.weight.zero_()
        if init == "authors":
            for i in range(d):
                nn.init.xavier_uniform_(self.weight[i * a : (i + 1) * a, : (i + 1) * b])
        elif init == "paper":
            self.weight.normal_().mul_(self.mask_d | self.mask_o)
        else:
            raise ValueError(f"unknown init {init!r}; expected 'authors' or 'paper'")
        # s = log u, u ~ U(0, 1]; 1 - rand avoids log(0).
        self.log_scale.copy_(torch.log(1.0 - torch.rand_like(self.log_scale)))
        bound = 1.0 / math.sqrt(d * a)
        self.bias.uniform_(-bound, bound)

    @property
    def structural_zeros(self) -> int:
        """Entries of ``weight`` above the block diagonal, which are never used."""
        return int((~(self.mask_d | self.mask_o)).sum())

    def weights(self) -> tuple[Tensor, Tensor]:
        r"""The weight ``W`` (Eq. 8 with weight normalisation) and ``log`` of its diagonal
        blocks, shape ``(d, a, b)``."""
        # log w_ij = s_i + B_ij - log ||v_i|| on the diagonal blocks, computed without ever
        # taking the log of w itself (bnaf.flows.logjac.masked_weights: one autograd node)
        weight = self.weight if self.weight.is_contiguous() else self.weight.contiguous()
        shape = (self.dim, self.out_factor, self.in_factor)
        return masked_weights(weight, self.log_scale, self.mask_o, shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        panels = self.panels
        if panels is None:
            panels = panels_for(self.dim, *self.weight.shape, x.device)
        if panels > 1 and x.dim() == 2:
            # large layers: the products skip the zero blocks (bnaf.flows.blocksparse)
            weight = self.weight if self.weight.is_contiguous() else self.weight.contiguous()
            shape = (self.dim, self.out_factor, self.in_factor)
            return block_sparse_linear(x, weight, self.log_scale, self.bias, shape, panels)
        w, log_diag = self.weights()
        return F.linear(x, w, self.bias), log_diag

    def extra_repr(self) -> str:
        return f"dim={self.dim}, in_factor={self.in_factor}, out_factor={self.out_factor}"


class Tanh(nn.Module):
    r"""``tanh`` with ``log tanh'(x) = 2 (log 2 - |x| - log1p(exp(-2|x|)))``, finite for any
    ``x``; :meth:`with_derivative` gives ``tanh'`` itself, for the flow's scaled chain."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return tanh_log_derivative(x)

    def with_derivative(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return tanh_derivative(x)


class LeakyReLU(nn.Module):
    r"""LeakyReLU with slope ``negative_slope`` for ``x < 0``; strictly increasing."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        if not negative_slope > 0:
            raise ValueError("negative_slope must be > 0 for the flow to be invertible")
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        positive = x >= 0
        y = torch.where(positive, x, self.negative_slope * x)
        log_d = torch.where(positive, 0.0, math.log(self.negative_slope)).to(x.dtype)
        return y, log_d

    def with_derivative(self, x: Tensor) -> tuple[Tensor, Tensor]:
        positive = x >= 0
        y = torch.where(positive, x, self.negative_slope * x)
        return y, torch.where(positive, 1.0, self.negative_slope).to(x.dtype)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": Tanh, "leakyrelu": LeakyReLU}


class BlockFlow(nn.Module):
    r"""One B-NAF transformation: masked layers ``d -> k d -> ... -> k d -> d`` with an
    activation between consecutive layers (none after the last), and an optional residual
    connection (Section 3.1): ``"normal"`` gives ``x + f(x)``, ``"gated"`` gives
    ``alpha f(x) + (1 - alpha) x`` with ``alpha = sigmoid(gate)`` and a trainable ``gate``.

    Arguments:
        dim: ``d``.
        layers: number of hidden layers ``L`` (``L = 1`` is ``d -> k d -> d``).
        hidden_factor: ``k``, hidden units per dimension (``H = k d``).
        residual: ``"none"``, ``"normal"`` or ``"gated"``.
        activation: a key of :data:`ACTIVATIONS`.
        init: see :class:`MaskedBlockLinear`.
    """

    def __init__(
        self,
        dim: int,
        layers: int = 1,
        hidden_factor: int = 10,
        residual: Residual = "gated",
        activation: str = "tanh",
        init: Init = "authors",
    ):
        super().__init__()
        if layers < 1 or hidden_factor < 1 or dim < 1:
            raise ValueError("dim, layers and hidden_factor must be >= 1")
        if residual not in ("none", "normal", "gated"):
            raise ValueError(f"unknown residual {residual!r}; expected none, normal or gated")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
        factors = [1] + [hidden_factor] * layers + [1]
        self.dim = dim
        self.residual = residual
        self.linears = nn.ModuleList(
            MaskedBlockLinear(dim, b, a, init) for b, a in zip(factors[:-1], factors[1:])
        )
        self.activations = nn.ModuleList(ACTIVATIONS[activation]() for _ in range(layers))
        if residual == "gated":
            self.gate = nn.Parameter(torch.randn(1))

    def transform(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""``f(x)`` without the residual, and ``log df_i/dx_i``, shape ``(batch, d)``
        (:func:`chain`)."""
        return chain(x, self.linears, self.activations, self.dim)  # type: ignore[arg-type]

    def _transform_log(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The log-domain chain alone (:func:`chain_log`)."""
        return chain_log(x, list(self.linears), list(self.activations), self.dim)

    def _transform_scaled(self, x: Tensor) -> tuple[Tensor, Tensor] | None:
        """The scaled chain alone, or None where it would fall back (:func:`chain_scaled`)."""
        return chain_scaled(x, list(self.linears), list(self.activations), self.dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y, log_g = self.transform(x)
        if self.residual == "normal":
            return x + y, F.softplus(log_g).sum(-1)
        if self.residual == "gated":
            alpha = torch.sigmoid(self.gate)
            # log(alpha e^g + 1 - alpha) = softplus(g + gate) - softplus(gate)
            log_det = F.softplus(log_g + self.gate).sum(-1) - self.dim * F.softplus(self.gate)
            return torch.lerp(x, y, alpha), log_det  # alpha y + (1 - alpha) x
        return y, log_g.sum(-1)

    def extra_repr(self) -> str:
        return f"residual={self.residual!r}"


class Permutation(nn.Module):
    r"""A fixed permutation of the dimensions (volume preserving, ``log|det| = 0``)."""

    def __init__(self, perm: Tensor):
        super().__init__()
        self.register_buffer("perm", perm.long())
        self.register_buffer("inverse_perm", torch.argsort(perm.long()))

    @classmethod
    def flip(cls, dim: int) -> Permutation:
        return cls(torch.arange(dim - 1, -1, -1))

    @classmethod
    def random(cls, dim: int, generator: torch.Generator) -> Permutation:
        return cls(torch.randperm(dim, generator=generator))

    def permute(self, x: Tensor) -> Tensor:
        return torch.index_select(x, 1, self.perm)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.permute(x), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        return z[:, self.inverse_perm]


def build_stack(
    flow_class: type[BlockFlow], dim: int, config: FlowConfig, seed: int = 0
) -> nn.ModuleList:
    r"""``config.flows`` flows of type ``flow_class`` with a permutation between consecutive
    ones (``seed`` seeds random permutations).

    As in the authors' ``create_model``, every flow but the last carries ``config.residual``;
    the last has none unless ``config.final_residual``. Shared by
    :class:`bnaf.flows.model.BNAF` and the amortised posterior of Section 5.4.
    """
    if config.permutation not in ("flip", "random"):
        raise ValueError(f"unknown permutation {config.permutation!r}; expected flip or random")
    generator = torch.Generator().manual_seed(seed)
    transforms: list[nn.Module] = []
    for f in range(config.flows):
        last = f == config.flows - 1
        res = config.residual if (not last or config.final_residual) else "none"
        layers, factor = config.layers, config.hidden_factor
        transforms.append(flow_class(dim, layers, factor, res, config.activation, config.init))
        if not last:
            transforms.append(
                Permutation.flip(dim)
                if config.permutation == "flip"
                else Permutation.random(dim, generator)
            )
    return nn.ModuleList(transforms)
