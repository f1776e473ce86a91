r"""B-NAF as a :class:`torch.distributions.Transform`, and the distribution it defines.

:class:`BNAFTransform` maps data to the base space, ``z = f(x)`` (the direction the model is
trained in, Eq. 1), so the density of a B-NAF is

    ``TransformedDistribution(Normal(0, I), [BNAFTransform(model).inv])``

whose ``log_prob`` is ``model.log_prob``. The inverse is the batched root search of
:mod:`bnaf.flows.inverse` with implicit-function gradients (:mod:`bnaf.flows.implicit`), so
``rsample`` is reparameterised. The transform works in pyro's ``TransformedDistribution`` too.

Range. A stack whose last flow has ``tanh`` and no residual (the authors' default) maps
``R^d`` into a bounded box, the codomain below, and only part of the base mass lies in its
range: a base draw outside it has no preimage. A plain ``TransformedDistribution`` then
cannot sample exactly; :class:`BNAFDistribution` rejects those draws, as
:func:`bnaf.flows.sampling.sample` does, and is the ``TransformedDistribution`` above in
every other respect. With ``final_residual=True`` or LeakyReLU the map is onto ``R^d`` and
both sample alike.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor
from torch.distributions import (
    Independent,
    Normal,
    Transform,
    TransformedDistribution,
    constraints,
)

from bnaf.core.errors import BnafError
from bnaf.flows.implicit import differentiable_invert
from bnaf.flows.inverse import is_onto
from bnaf.flows.layers import BlockFlow, Stack

__all__ = ["BNAFDistribution", "BNAFTransform", "range_box"]


def range_box(flow: BlockFlow) -> tuple[Tensor, Tensor]:
    r"""Bounds ``(lo, hi)``, each ``(d,)``, of the outputs of a flow without a residual and
    with a bounded activation: output ``i`` is ``b_i + sum_j W_ij u_j`` over the last layer's
    inputs ``u_j``, each between the activation's limits (``+-1`` for tanh)."""
    weight = flow.linears[-1].weights()[0].detach()
    bias = flow.linears[-1].bias.detach()
    limits, _ = flow.activations[-1](torch.tensor([-math.inf, math.inf], dtype=weight.dtype))
    low, high = limits.to(weight.device)
    lo = bias + torch.where(weight > 0, weight * low, weight * high).sum(-1)
    hi = bias + torch.where(weight > 0, weight * high, weight * low).sum(-1)
    return lo, hi


class BNAFTransform(Transform):
    r"""The B-NAF map ``x -> z = f(x)`` of a stack (:class:`~bnaf.BNAF`) as a bijective
    :class:`torch.distributions.Transform` on vectors (event dimension 1).

    ``log_abs_det_jacobian(x, z)`` is ``log|det J_f(x)|`` (Eq. 9), reused from the forward
    call that produced ``z``. The inverse solves ``f(x) = z`` by the root search, with
    implicit gradients with respect to ``z`` and the model's parameters; with
    ``cache_size=1`` (the default here) the last pair ``(x, z)`` is remembered in both
    directions, so ``log_prob`` of a fresh sample does not search again. The cache is
    dropped whenever a parameter of the model has changed in place (an optimiser step), so
    training on the same data tensor step after step never sees a stale ``z``.

    Arguments:
        model: the B-NAF stack (its parameters are trained through the transform).
        cache_size: 0 or 1, as for every ``Transform``.
        outside: what the inverse does with points outside the range: ``"raise"``
            (:class:`~bnaf.core.errors.BnafError`) or ``"nan"`` (NaN rows).
        xtol: tolerance of the root search (:func:`bnaf.flows.inverse.default_xtol`).

    Example:
        >>> from bnaf import BNAF
        >>> model = BNAF(2, flows=2, hidden_factor=4, final_residual=True)
        >>> base = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
        >>> p = TransformedDistribution(base, [BNAFTransform(model).inv])
        >>> x = p.rsample((3,))
        >>> torch.allclose(p.log_prob(x), model.log_prob(x))
        True
    """

    bijective = True
    domain = constraints.real_vector

    def __init__(
        self,
        model: Stack,
        cache_size: int = 1,
        outside: Literal["raise", "nan"] = "raise",
        xtol: float | None = None,
    ):
        if outside not in ("raise", "nan"):
            raise ValueError(f"unknown outside {outside!r}; expected 'raise' or 'nan'")
        super().__init__(cache_size=cache_size)
        self.model, self.outside, self.xtol = model, outside, xtol
        self._ladj: tuple[Tensor, Tensor] | None = None  # (x, log|det J|) of the last call
        self._versions: tuple[int, ...] = ()  # the parameters' versions the cache is for

    def _check_cache(self) -> None:
        """Forget the cached pair once a parameter was modified in place since it was made."""
        versions = tuple(p._version for p in self.model.parameters())
        if versions != self._versions:
            self._cached_x_y = None, None
            self._ladj = None
            self._versions = versions

    def __call__(self, x: Tensor) -> Tensor:
        self._check_cache()
        return super().__call__(x)

    def _inv_call(self, y: Tensor) -> Tensor:
        self._check_cache()
        return super()._inv_call(y)

    @property
    def codomain(self) -> constraints.Constraint:  # type: ignore[override]
        r"""A box when the last flow is bounded (:func:`range_box`), else ``real_vector``."""
        last = self.model.transforms[-1]
        if isinstance(last, BlockFlow) and not is_onto(last):
            return constraints.independent(constraints.interval(*range_box(last)), 1)
        return constraints.real_vector

    def with_cache(self, cache_size: int = 1) -> BNAFTransform:
        if self._cache_size == cache_size:
            return self
        return BNAFTransform(self.model, cache_size, self.outside, self.xtol)

    def _call(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])
        z, log_det = self.model(flat)
        self._ladj = (x, log_det.reshape(x.shape[:-1]))
        return z.reshape(x.shape)

    def _inverse(self, z: Tensor) -> Tensor:
        res = differentiable_invert(self.model, z.reshape(-1, z.shape[-1]), self.xtol)
        if self.outside == "raise":
            if not bool(res.inside.all()):
                raise BnafError(
                    f"{int((~res.inside).sum())} of {len(res.inside)} points lie outside the "
                    "flow's range (its last flow is bounded): sample with "
                    "bnaf.flows.transform.BNAFDistribution, which rejects them, or use "
                    "outside='nan'"
                )
            if not bool(res.converged.all()):
                n_bad = int((~res.converged).sum())
                raise BnafError(f"the root search did not converge for {n_bad} points")
        return res.x.reshape(z.shape)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        if self._ladj is not None and self._ladj[0] is x:
            return self._ladj[1]
        return self.model(x.reshape(-1, x.shape[-1]))[1].reshape(x.shape[:-1])


class BNAFDistribution(TransformedDistribution):
    r"""The density of a B-NAF stack, ``TransformedDistribution(N(0, I), [T.inv])`` with
    ``T = BNAFTransform(model)``, sampled exactly: base draws outside the range of a bounded
    stack are rejected (the samples follow ``p / Z``, ``Z`` the base mass of the range, as in
    :func:`bnaf.flows.sampling.sample`); ``log_prob`` is ``model.log_prob``.

    ``rsample`` differentiates the accepted draws through the implicit inverse. For an onto
    stack this is the reparameterisation gradient; for a bounded one it leaves out how the
    range itself moves with the parameters.
    """

    has_rsample = True

    def __init__(self, model: Stack, validate_args: bool | None = None, max_draws: int = 100):
        param = next(model.parameters())
        zeros = torch.zeros(model.dim, dtype=param.dtype, device=param.device)
        base = Independent(Normal(zeros, torch.ones_like(zeros)), 1)
        self.model, self.max_draws = model, max_draws
        super().__init__(base, [BNAFTransform(model, outside="nan").inv], validate_args)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        shape = torch.Size(sample_shape)
        n = math.prod(shape)
        kept: list[Tensor] = []
        have = drawn = 0
        onto = all(is_onto(t) for t in self.model.transforms if isinstance(t, BlockFlow))
        while have < n:
            if drawn >= self.max_draws * max(n, 1):
                raise BnafError(
                    f"only {have} of {n} samples after {drawn} base draws: the flow's range "
                    "holds too little base mass"
                )
            # sized by the acceptance rate so far (exactly 1 for an onto stack)
            rate = max(have / drawn, 0.01) if drawn else 1.0
            m = n - have if onto else math.ceil(1.1 * (n - have) / rate) + 16
            m = min(m, 10_000)
            with torch.no_grad():
                z = self.base_dist.sample((m,))
            res = differentiable_invert(self.model, z)
            kept.append(res.x[res.inside])
            have += int(res.inside.sum())
            drawn += m
        return torch.cat(kept)[:n].reshape(*shape, self.model.dim)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)
