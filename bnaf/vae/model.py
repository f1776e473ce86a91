r"""The VAE of van den Berg et al. (2018, Appendix A), with an optional amortised B-NAF posterior.

Gated convolutional encoder and decoder (``h(x) * sigmoid(g(x))``, no activation on ``h``),
encoder output of 256 units, latent size 64. The encoder gives ``q(z_0|x) = N(mu, diag(var))``
(``var`` through a softplus; for the 256-way categorical likelihood also clipped to
``[0.01, 7]``, as in the Sylvester code) and, when a flow is used, the per-datapoint flow
parameters from one linear head (Section 5.4). The decoder gives Bernoulli logits for binary
images or 256-way logits per pixel for Frey faces.

The ELBO (Eq. 12) with a flow ``z_K = f(z_0; x)`` is
``log p(x|z_K) + log p(z_K) - log q(z_0|x) + log|det df/dz_0|``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnaf.core.stats import LOG_2PI
from bnaf.flows.amortised import AmortisedBNAF

__all__ = ["GatedConv2d", "GatedConvTranspose2d", "VAE", "Likelihood"]

Likelihood = Literal["bernoulli", "categorical"]
ENCODER_OUT = 256  # q_z_nn_output_dim in the Sylvester code


class GatedConv2d(nn.Module):
    r"""``conv_h(x) * sigmoid(conv_g(x))`` (gated convolution, Appendix A of van den Berg)."""

    def __init__(self, c_in: int, c_out: int, kernel, stride: int, padding: int):
        super().__init__()
        self.h = nn.Conv2d(c_in, c_out, kernel, stride, padding)
        self.g = nn.Conv2d(c_in, c_out, kernel, stride, padding)

    def forward(self, x: Tensor) -> Tensor:
        return self.h(x) * torch.sigmoid(self.g(x))


class GatedConvTranspose2d(nn.Module):
    r"""Transposed gated convolution."""

    def __init__(self, c_in: int, c_out: int, kernel, stride: int, padding: int, out_pad: int = 0):
        super().__init__()
        self.h = nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding, out_pad)
        self.g = nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding, out_pad)

    def forward(self, x: Tensor) -> Tensor:
        return self.h(x) * torch.sigmoid(self.g(x))


class VAE(nn.Module):
    r"""Gated-convolution VAE; ``flow`` is ``None`` (plain VAE) or an :class:`AmortisedBNAF`.

    Arguments:
        shape: image shape ``(1, 28, 28)`` or ``(1, 28, 20)``.
        likelihood: ``"bernoulli"`` or ``"categorical"`` (256 classes per pixel).
        latent: latent size (64 in Section 5.4).
        flow: the posterior flow, or ``None``.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        likelihood: Likelihood,
        latent: int = 64,
        flow: AmortisedBNAF | None = None,
    ):
        super().__init__()
        if tuple(shape[1:]) == (28, 28):
            last = 7
        elif tuple(shape[1:]) == (28, 20):
            last = (7, 5)
        else:
            raise ValueError(f"unsupported image shape {shape}; expected 28x28 or 28x20")
        if likelihood not in ("bernoulli", "categorical"):
            raise ValueError(f"unknown likelihood {likelihood!r}")
        if flow is not None and flow.dim != latent:
            raise ValueError("the flow's dimension must equal the latent size")
        c = shape[0]
        self.shape, self.likelihood, self.latent = tuple(shape), likelihood, latent
        self.encoder = nn.Sequential(
            GatedConv2d(c, 32, 5, 1, 2),
            GatedConv2d(32, 32, 5, 2, 2),
            GatedConv2d(32, 64, 5, 1, 2),
            GatedConv2d(64, 64, 5, 2, 2),
            GatedConv2d(64, 64, 5, 1, 2),
            GatedConv2d(64, ENCODER_OUT, last, 1, 0),
        )
        self.q_mean = nn.Linear(ENCODER_OUT, latent)
        self.q_var = nn.Linear(ENCODER_OUT, latent)
        self.decoder = nn.Sequential(
            GatedConvTranspose2d(latent, 64, last, 1, 0),
            GatedConvTranspose2d(64, 64, 5, 1, 2),
            GatedConvTranspose2d(64, 32, 5, 2, 2, 1),
            GatedConvTranspose2d(32, 32, 5, 1, 2),
            GatedConvTranspose2d(32, 32, 5, 2, 2, 1),
            GatedConvTranspose2d(32, 32, 5, 1, 2),
        )
        if likelihood == "bernoulli":
            self.p_out = nn.Conv2d(32, c, 1, 1, 0)
        else:
            self.p_out = nn.Sequential(nn.Conv2d(32, 256, 5, 1, 2), nn.Conv2d(256, 256 * c, 1))
        self.flow = flow
        #: the amortisation head: per-datapoint flow parameters (Section 5.4)
        self.amortise = nn.Linear(ENCODER_OUT, flow.n_amortised) if flow is not None else None

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        r"""``(mu, var, theta)`` of ``q(z_0|x)`` and of the flow for images ``x`` (n, c, h, w)."""
        h = self.encoder(x).flatten(1)
        var = F.softplus(self.q_var(h))
        if self.likelihood == "categorical":
            var = var.clamp(0.01, 7.0)  # Hardtanh(0.01, 7) in the Sylvester code
        theta = self.amortise(h) if self.amortise is not None else None
        return self.q_mean(h), var, theta

    def posterior(
        self, mu: Tensor, var: Tensor, theta: Tensor | None, eps: Tensor
    ) -> tuple[Tensor, Tensor]:
        r"""``z_K`` and ``log q(z_K|x) = log N(z_0; mu, var) - log|det J|`` for noise ``eps``."""
        z0 = mu + var.sqrt() * eps
        log_q = -0.5 * (eps.square() + var.log() + LOG_2PI).sum(-1)
        if self.flow is None:
            return z0, log_q
        zk, log_det = self.flow(z0, theta)
        return zk, log_q - log_det

    def decode(self, z: Tensor) -> Tensor:
        r"""Logits: (n, c, h, w) for Bernoulli, (n, 256, c, h, w) for categorical."""
        out = self.p_out(self.decoder(z.view(z.shape[0], self.latent, 1, 1)))
        if self.likelihood == "categorical":
            out = out.view(z.shape[0], 256, self.shape[0], *self.shape[1:])
        return out

    def log_px(self, x: Tensor, logits: Tensor) -> Tensor:
        r"""``log p(x|z)`` per image, summed over pixels."""
        if self.likelihood == "bernoulli":
            ll = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        else:
            target = torch.round(x * 255.0).long()  # integer pixel levels 0..255
            ll = -F.cross_entropy(logits, target, reduction="none")
        return ll.flatten(1).sum(-1)

    def terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""One-sample ``(log p(x|z_K), log q(z_K|x) - log p(z_K))`` per image (Eq. 12)."""
        mu, var, theta = self.encode(x)
        zk, log_q = self.posterior(mu, var, theta, torch.randn_like(mu))
        log_pz = -0.5 * (zk.square() + LOG_2PI).sum(-1)
        return self.log_px(x, self.decode(zk)), log_q - log_pz
