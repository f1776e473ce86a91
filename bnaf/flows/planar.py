r"""Planar flows (Rezende and Mohamed, 2015): the baseline of Figure 3.

``f(z) = z + u_hat tanh(w^T z + b)`` with ``u_hat = u + (m(w^T u) - w^T u) w / ||w||^2`` and
``m(a) = -1 + softplus(a)``, which keeps ``w^T u_hat >= -1`` so every layer is invertible
(Rezende and Mohamed, 2015, Appendix A.1). ``log|det df/dz| = log|1 + u_hat^T psi(z)|`` with
``psi(z) = tanh'(w^T z + b) w`` (Eq. 11-12 there).

Samples run ``z_0 ~ N(0, I) -> z_K``; :meth:`PlanarFlow.log_prob` inverts each layer exactly
(``w^T z`` solves a scalar monotone equation, found by bisection) so the density can be drawn
on a grid.

Training runs ``K = 32`` layers on batches of 200 two-dimensional points for 500k steps
(Section 5.2), so the cost of a step is the number of tiny kernels, not arithmetic.
:meth:`PlanarFlow.forward` therefore runs :class:`PlanarStack`, one autograd node with a
hand-written backward: three fused kernels per layer each way (two ``addmm`` and a ``tanh``)
and every per-layer quantity that does not feed the next layer (log-determinants, parameter
gradients) computed for all ``K`` layers at once. :meth:`PlanarFlow.forward_reference` is the
plain layer-by-layer autograd version it is tested against. :func:`planar_pack` runs several
flows (the four energies of Figure 3) through the same kernels at once.

References:
    | Variational Inference with Normalizing Flows (Rezende and Mohamed, 2015)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnaf.core.io import load_module, save_module
from bnaf.core.stats import standard_normal_log_prob

__all__ = ["PlanarFlow", "PlanarStack", "load_planar", "planar_pack", "save_planar", "u_hat"]

#: added inside the log of each layer's ``|1 + u_hat^T psi|`` (which can reach 0 when
#: ``w^T u_hat = -1``), as in the reference forward
EPS = 1e-12


class PlanarStack(torch.autograd.Function):
    r"""``K`` planar layers ``z <- z + u_k tanh(w_k^T z + b_k)`` and the summed
    ``log(|1 + (1 - h_k^2) w_k^T u_k| + EPS)``, with a hand-written backward, for ``M`` flows at
    once (a pack of runs trained side by side, :mod:`bnaf.toy.pack`; ``M = 1`` for one flow).

    Inputs ``z`` (M, batch, d), ``w`` and ``u`` (M, K, d) (``u`` is ``u_hat``), ``b`` (M, K).
    Writing ``a_k = w_k^T z_k + b_k``, ``h_k = tanh a_k``, ``s_k = 1 - h_k^2``, ``c_k = w_k^T
    u_k`` and ``D_k = 1 + s_k c_k``, the backward pass runs the chain rule through ``z_{k+1} =
    z_k + h_k u_k`` from the last layer to the first:

    ``dL/dh_k = g_{k+1}^T u_k - 2 h_k c_k g_L / D_k``, ``dL/da_k = s_k dL/dh_k`` and
    ``g_k = g_{k+1} + (dL/da_k) w_k``, with ``g_L`` the gradient of the summed log-determinant
    (``1 / D_k`` stands for ``sign(D_k) / (|D_k| + EPS)``). Parameter gradients are sums over
    the batch, formed for all layers at once from the stored ``z_k``, ``h_k`` and ``g_{k+1}``.
    The members sit side by side in one ``(batch, M d)`` matrix and each layer's vectors in a
    block-diagonal ``(M d, M)`` one, so a layer is two small ``addmm`` and a ``tanh`` each way
    whatever ``M`` is, and a pack costs about what one flow costs.
    """

    @staticmethod
    def forward(ctx, z: Tensor, w: Tensor, u: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        m, batch, dim = z.shape
        w_cols, u_cols = _block_columns(w), _block_columns(u)  # (K, M d, M)
        x = z.transpose(0, 1).reshape(batch, m * dim)  # the pack side by side: (batch, M d)
        xs, hs = [], []
        # contiguous per-layer operands: a transposed one would be copied by every product
        for b_k, w_k, u_k in zip(b.T.contiguous(), w_cols, u_cols.mT.contiguous()):
            xs.append(x)
            h = torch.addmm(b_k, x, w_k).tanh_()  # (batch, M)
            hs.append(h)
            x = torch.addmm(x, h, u_k)
        h = torch.stack(hs)  # (K, batch, M)
        c = (w * u).sum(-1).T  # (K, M)
        s = 1.0 - h.square()
        d = torch.addcmul(torch.ones_like(s), s, c[:, None])
        log_det = torch.log(d.abs() + EPS).sum(0).T  # (M, batch)
        ctx.save_for_backward(torch.stack(xs), h, s, d, c, w, u, w_cols, u_cols)
        return x.reshape(batch, m, dim).transpose(0, 1).contiguous(), log_det.contiguous()

    @staticmethod
    def backward(ctx, g_z: Tensor | None, g_log_det: Tensor | None):
        xs, h, s, d, c, w, u, w_cols, u_cols = ctx.saved_tensors
        k_layers, batch, m = h.shape
        dim = w.shape[-1]
        if g_z is None:
            g_z = xs.new_zeros(m, batch, dim)
        if g_log_det is None:
            g_log_det = h.new_zeros(m, batch)
        inv_d = torch.sign(d) / (d.abs() + EPS)  # d log(|D| + EPS) / dD
        dlog_ds = g_log_det.T * inv_d  # (K, batch, M): dL/ds_k = g_L / D_k * c_k
        from_log = -2.0 * h * dlog_ds * c[:, None]  # log-determinant's part of dL/dh_k
        gs, gas = [], []
        g = g_z.transpose(0, 1).reshape(batch, m * dim)
        layers = zip(from_log, s, w_cols.mT.contiguous(), u_cols)
        for from_log_k, s_k, w_k, u_k in reversed(list(layers)):
            gs.append(g)  # dL/dz_{k+1}
            ga = torch.addmm(from_log_k, g, u_k).mul_(s_k)
            gas.append(ga)
            g = torch.addmm(g, ga, w_k)
        g_next = torch.stack(gs[::-1]).view(k_layers, batch, m, dim)  # dL/dz_{k+1}
        ga = torch.stack(gas[::-1])  # (K, batch, M): dL/da_k
        g_c = (dlog_ds * s).sum(1).T[..., None]  # (M, K, 1)
        zs = xs.view(k_layers, batch, m, dim)
        # sums over the batch as products and sums (einsum would permute and copy first)
        g_w = (ga[..., None] * zs).sum(1).transpose(0, 1) + g_c * u
        g_u = (h[..., None] * g_next).sum(1).transpose(0, 1) + g_c * w
        g_z = g.view(batch, m, dim).transpose(0, 1)
        return g_z, g_w, g_u, ga.sum(1).T


def _block_columns(v: Tensor) -> Tensor:
    r"""``(M, K, d) -> (K, M d, M)``: per layer, member ``m``'s vector in rows ``m d .. m d +
    d - 1`` of column ``m`` (a block diagonal), so one ``(batch, M d) x (M d, M)`` product
    applies each member's layer to its own coordinates only."""
    m, k, dim = v.shape
    eye = torch.eye(m, dtype=v.dtype, device=v.device)
    return (v.transpose(0, 1)[..., None] * eye[:, None, :]).reshape(k, m * dim, m)


def u_hat(w: Tensor, u: Tensor) -> Tensor:
    r"""``u_hat = u + (m(w^T u) - w^T u) w / ||w||^2`` over the last dimension (invertibility,
    Rezende and Mohamed, 2015, Appendix A.1)."""
    wu = (w * u).sum(-1, keepdim=True)
    m = -1.0 + F.softplus(wu)
    return u + (m - wu) * w / w.square().sum(-1, keepdim=True)


def planar_pack(
    flows: Sequence[PlanarFlow], z: Tensor, p: Mapping[str, Tensor] | None = None
) -> tuple[Tensor, Tensor]:
    r"""``(z_K, sum log|det|)`` of each of ``flows`` (same ``K`` and dimension) on its own
    ``z[m]``: ``z`` is (M, batch, d), the results (M, batch, d) and (M, batch). ``p`` holds
    their ``u``, ``w``, ``b`` stacked on a leading member dimension (a trained pack's
    tensors, :func:`bnaf.flows.pack.stack_parameters`); ``None`` stacks them here."""
    if p is None:
        p = {name: torch.stack([getattr(f, name) for f in flows]) for name in ("u", "w", "b")}
    return PlanarStack.apply(z, p["w"], u_hat(p["w"], p["u"]), p["b"])


class PlanarFlow(nn.Module):
    r"""``K`` planar layers on ``R^dim`` pushing forward a standard normal.

    Arguments:
        dim: dimension.
        flows: ``K``, the number of planar layers (Figure 3 of the paper: 32).
        init_std: standard deviation of the normal initialisation of ``u`` and ``w``.

    Example:
        >>> flow = PlanarFlow(2, flows=4)
        >>> x, log_q = flow.sample(5)
        >>> torch.allclose(flow.log_prob(x.double()), log_q.double(), atol=1e-4)
        True
    """

    def __init__(self, dim: int = 2, flows: int = 32, init_std: float = 0.1):
        super().__init__()
        self.config = dict(dim=dim, flows=flows, init_std=init_std)
        self.dim = dim
        self.u = nn.Parameter(torch.randn(flows, dim) * init_std)
        self.w = nn.Parameter(torch.randn(flows, dim) * init_std)
        self.b = nn.Parameter(torch.zeros(flows))

    def _u_hat(self) -> Tensor:
        return u_hat(self.w, self.u)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        r"""``z_K`` and ``sum_k log|det df_k/dz_{k-1}|`` (:class:`PlanarStack`)."""
        x, log_det = planar_pack([self], z[None])
        return x[0], log_det[0]

    def forward_reference(self, z: Tensor) -> tuple[Tensor, Tensor]:
        r""":meth:`forward` layer by layer with autograd: the reference of the fast path."""
        u_hat = self._u_hat()
        log_det = z.new_zeros(z.shape[0])
        for k in range(self.u.shape[0]):
            h = torch.tanh(z @ self.w[k] + self.b[k])
            psi_u = (1 - h.square()) * (self.w[k] @ u_hat[k])
            log_det = log_det + torch.log((1 + psi_u).abs() + 1e-12)
            z = z + h[:, None] * u_hat[k]
        return z, log_det

    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        r"""``n`` samples ``x`` and ``log q(x) = log N(z_0) - sum log|det|``."""
        z0 = torch.randn(n, self.dim, device=self.u.device, dtype=self.u.dtype)
        x, log_det = self(z0)
        return x, standard_normal_log_prob(z0) - log_det

    @torch.no_grad()
    def inverse(self, x: Tensor, iterations: int = 60) -> Tensor:
        r"""``z_0`` with ``f(z_0) = x``: layer by layer, ``a = w^T z`` solves
        ``w^T y = a + (w^T u_hat) tanh(a + b)``, increasing in ``a`` and within
        ``|w^T u_hat|`` of ``w^T y``."""
        u_hat = self._u_hat()
        z = x
        for k in reversed(range(self.u.shape[0])):
            wy, wu = z @ self.w[k], self.w[k] @ u_hat[k]
            lo, hi = wy - wu.abs() - 1e-6, wy + wu.abs() + 1e-6
            for _ in range(iterations):
                mid = 0.5 * (lo + hi)
                above = mid + wu * torch.tanh(mid + self.b[k]) > wy
                hi, lo = torch.where(above, mid, hi), torch.where(above, lo, mid)
            z = z - torch.tanh(0.5 * (lo + hi) + self.b[k])[:, None] * u_hat[k]
        return z

    @torch.no_grad()
    def log_prob(self, x: Tensor) -> Tensor:
        r"""``log q(x)`` by exact inversion (change of variables, Eq. 2 of the paper)."""
        z0 = self.inverse(x)
        _, log_det = self(z0)
        return standard_normal_log_prob(z0) - log_det


def save_planar(model: PlanarFlow, path: str | Path, **extra: object) -> None:
    save_module(model, path, **extra)


def load_planar(path: str | Path) -> PlanarFlow:
    return load_module(PlanarFlow, path)[0]
