"""The importance-sampled NLL (Table 2) on models whose marginal likelihood is known."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from bnaf.flows.amortised import AmortisedBNAF
from bnaf.vae.evaluate import importance_nll, negative_elbo
from bnaf.vae.model import VAE

_LOG_2PI = math.log(2.0 * math.pi)


class LinearGaussian(nn.Module):
    r"""``z ~ N(0, I_k)``, ``x|z ~ N(W z + c, s^2 I_n)``, so ``p(x) = N(c, W W^T + s^2 I)``.

    ``q(z|x) = N(A (x - c), S)`` with ``A, S`` the exact posterior's (``exact=True``) or a
    mismatched diagonal Gaussian; the evaluation interface is the VAE's.
    """

    def __init__(self, n: int = 5, k: int = 2, s: float = 0.5, exact: bool = True):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(n, k, generator=g, dtype=torch.float64)
        self.c = torch.randn(n, generator=g, dtype=torch.float64)
        self.s2 = s**2
        prec = torch.eye(k, dtype=torch.float64) + self.w.T @ self.w / self.s2
        cov = torch.linalg.inv(prec)
        self.a = cov @ self.w.T / self.s2
        self.cov = cov if exact else torch.diag(torch.diagonal(cov) * 2.0)
        self.chol = torch.linalg.cholesky(self.cov)

    def exact_log_px(self, x: Tensor) -> Tensor:
        cov = self.w @ self.w.T + self.s2 * torch.eye(self.w.shape[0], dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.c, cov).log_prob(x)

    def encode(self, x: Tensor):
        return (x - self.c) @ self.a.T, None, None

    def posterior(self, mu: Tensor, var, theta, eps: Tensor):
        z = mu + eps @ self.chol.T
        return z, torch.distributions.MultivariateNormal(mu, self.cov).log_prob(z)

    def decode(self, z: Tensor) -> Tensor:
        return z @ self.w.T + self.c

    def log_px(self, x: Tensor, mean: Tensor) -> Tensor:
        return -0.5 * (((x - mean) ** 2) / self.s2 + math.log(self.s2) + _LOG_2PI).sum(-1)


def data(n: int = 6) -> Tensor:
    return torch.randn(n, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.mark.parametrize("samples, chunk", [(1, 10), (7, 3), (25, 1000)])
def test_exact_posterior_gives_exact_likelihood(samples, chunk):
    # With q equal to the true posterior every importance weight equals p(x).
    model, x = LinearGaussian(exact=True), data()
    torch.testing.assert_close(
        importance_nll(model, x, samples, chunk), -model.exact_log_px(x), rtol=1e-10, atol=1e-10
    )


def test_upper_bound_tightens_with_samples():
    torch.manual_seed(2)
    model, x = LinearGaussian(exact=False), data(3)
    exact = -model.exact_log_px(x)
    repeats = 400  # independent estimates: each row of x repeated
    stats = []
    for s in (1, 10, 100):
        est = importance_nll(model, x.repeat(repeats, 1), s, 5000).view(repeats, -1)
        stats.append((est.mean(0), est.std(0) / math.sqrt(repeats)))
    (m1, e1), (m10, e10), (m100, e100) = stats
    # E[-log p_S] >= -log p(x) (Jensen) and decreases with S, towards the exact value
    assert torch.all(m1 > m10 + 3 * (e1 + e10)) and torch.all(m10 > m100)
    assert torch.all(m100 > exact - 4 * e100)
    assert torch.all(m1 - exact > 10 * (m100 - exact).clamp(min=1e-4))
    torch.testing.assert_close(importance_nll(model, x, 20000, 5000), exact, rtol=0, atol=0.02)


def test_vae_nll_below_elbo():
    torch.manual_seed(3)
    model = VAE(
        (1, 28, 28), "bernoulli", latent=4, flow=AmortisedBNAF(4, flows=2, hidden_factor=2)
    )
    x = torch.bernoulli(torch.full((3, 1, 28, 28), 0.3))
    elbo = torch.stack([negative_elbo(model, x) for _ in range(10)]).mean(0)
    nll = importance_nll(model, x, samples=32, chunk=16)
    assert nll.shape == (3,) and torch.all(nll < elbo)
