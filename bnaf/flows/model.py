r"""The B-NAF density model (De Cao, Titov and Aziz, 2019): a stack of block flows with a
standard-normal base, and its self-describing checkpoint.

The stack is a visible composition built in one place (:func:`bnaf.flows.layers.build_stack`):
``flows`` block flows, each a masked feed-forward network with strictly increasing
activations, with a permutation between consecutive flows. The inverse and the sampler are
functions over a stack (:mod:`bnaf.flows.inverse`, :mod:`bnaf.flows.sampling`); the methods
below only call them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from bnaf.core.io import load_module, save_module
from bnaf.core.stats import standard_normal_log_prob
from bnaf.flows.config import FlowConfig
from bnaf.flows.inverse import invert_checked
from bnaf.flows.layers import BlockFlow, Init, Permutation, Residual, build_stack
from bnaf.flows.sampling import Samples, sample

__all__ = ["BNAF", "load_flow", "load_flow_meta", "save_flow"]


class BNAF(nn.Module):
    r"""A stack of B-NAF flows with permutations between them and a standard-normal base.

    As in the authors' code, every flow but the last carries the residual connection; the
    last flow has none (``final_residual=False``), so the model ends in an affine map of
    bounded ``tanh`` units. Set ``final_residual=True`` to give the last flow the residual
    too, which makes the map onto ``R^d`` (see ``docs`` in the report).

    Arguments:
        dim: data dimension ``d``.
        flows: number of stacked B-NAF flows.
        layers: hidden layers ``L`` per flow.
        hidden_factor: ``k``; each hidden layer has ``H = k d`` units.
        residual: ``"none"``, ``"normal"`` or ``"gated"`` (Section 3.1).
        activation: ``"tanh"`` (default) or ``"leakyrelu"``.
        permutation: ``"flip"`` (the authors' code) or ``"random"`` (seeded by ``seed``).
        init: ``"authors"`` or ``"paper"``; see :class:`MaskedBlockLinear`.
        final_residual: give the last flow the residual connection as well.
        seed: seed of the random permutations.

    Example:
        >>> model = BNAF(dim=3, flows=2, layers=1, hidden_factor=4)
        >>> z, log_det = model(torch.randn(8, 3))
        >>> z.shape, log_det.shape
        (torch.Size([8, 3]), torch.Size([8]))
    """

    def __init__(
        self,
        dim: int,
        *,
        flows: int = 5,
        layers: int = 1,
        hidden_factor: int = 10,
        residual: Residual = "gated",
        activation: str = "tanh",
        permutation: Literal["flip", "random"] = "flip",
        init: Init = "authors",
        final_residual: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        flow = FlowConfig(
            flows,
            layers,
            hidden_factor,
            residual,
            activation,
            permutation,
            init,
            final_residual,  # type: ignore[arg-type]
        )
        #: constructor arguments, so a saved model describes itself (see :func:`save_flow`).
        self.config = dict(dim=dim, **flow.kwargs(), seed=seed)
        self.dim = dim
        self.transforms = build_stack(BlockFlow, dim, flow, seed)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""Map data ``x`` (batch, d) to ``z`` and ``log|det J(x)|`` (batch,) (Eq. 9)."""
        log_det = x.new_zeros(x.shape[0])
        for t in self.transforms:
            if isinstance(t, Permutation):  # log|det| = 0: skip the addition
                x = t.permute(x)
            else:
                x, ladj = t(x)
                log_det = log_det + ladj
        return x, log_det

    def log_prob(self, x: Tensor) -> Tensor:
        r"""``log p(x) = log N(f(x); 0, I) + log|det J_f(x)|`` (Eq. 1, 13d)."""
        z, log_det = self(x)
        return standard_normal_log_prob(z) + log_det

    def inverse(
        self, z: Tensor, outside: Literal["raise", "mask"] = "raise", xtol: float | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        r"""``x = f^{-1}(z)`` by a bracketed root search per dimension (``bnaf.flows.inverse``).

        Points outside the flow's range raise :class:`~bnaf.core.errors.BnafError`
        (``outside="raise"``) or come back as NaN rows with a mask of the points inside
        (``outside="mask"``: returns ``(x, inside)``).
        """
        return invert_checked(self, z, outside=outside, xtol=xtol)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Samples:
        r"""``n`` samples of the model's density normalised over its range: base draws are
        inverted and those outside the range rejected. Returns ``bnaf.flows.sampling.Samples``
        (``.x`` (n, d), ``.accepted``: the accepted fraction, which estimates the integral
        of the density, ``.drawn``)."""
        return sample(self, n, generator=generator)


def save_flow(model: BNAF, path: str | Path, **extra: object) -> None:
    r"""Save ``model`` atomically as ``{"config", "state_dict", **extra}`` (self-describing)."""
    save_module(model, path, **extra)


def load_flow(path: str | Path, map_location: str | torch.device = "cpu") -> BNAF:
    r"""Rebuild a :class:`BNAF` saved by :func:`save_flow` (see :func:`load_flow_meta`)."""
    return load_flow_meta(path, map_location)[0]


def load_flow_meta(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[BNAF, dict[str, object]]:
    r"""Rebuild a :class:`BNAF` saved by :func:`save_flow`, with the ``extra`` it was saved
    with (``dataset``, ``seed``, ``target``, ...); read safely (:func:`bnaf.core.io.load_module`).
    """
    model, meta = load_module(BNAF, path)
    return model.to(map_location), meta
