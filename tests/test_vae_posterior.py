"""The VAE's ``q(z|x)`` (Section 5.4, Eq. 12) against closed forms.

``q(z_0|x) = N(mu, diag(var))`` is sampled by reparameterisation, ``z_0 = mu + sqrt(var) eps``,
and its log-density is ``-1/2 sum(eps^2 + log var + log 2 pi)``; with a flow,
``log q(z_K|x) = log q(z_0|x) - log|det dz_K/dz_0|``. The single-sample KL term of ``terms``
averages to ``KL(N(mu, var) || N(0, I)) = 1/2 sum(var + mu^2 - 1 - log var)``.
"""

from __future__ import annotations

import math

import pytest
import torch

from bnaf.flows.amortised import AmortisedBNAF
from bnaf.vae.model import VAE

pytestmark = pytest.mark.usefixtures("one_thread")

D = 4


def _gaussian(n: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, D, generator=g)
    var = torch.rand(n, D, generator=g) * 3.0 + 0.2  # away from 1: sqrt(var) != var
    return mu, var


def _vae(flow: AmortisedBNAF | None = None) -> VAE:
    return VAE((1, 28, 20), "bernoulli", latent=D, flow=flow)


def test_reparameterised_sample_and_its_density() -> None:
    mu, var = _gaussian()
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(1))
    z, log_q = _vae().posterior(mu, var, None, eps)
    torch.testing.assert_close(z, mu + var.sqrt() * eps)
    want = torch.distributions.Normal(mu, var.sqrt()).log_prob(z).sum(-1)
    torch.testing.assert_close(log_q, want)


def test_sample_moments_match_mean_and_variance() -> None:
    mu, var = _gaussian(n=1)
    n = 200_000
    eps = torch.randn(n, D, generator=torch.Generator().manual_seed(2))
    z, _ = _vae().posterior(mu.expand(n, D), var.expand(n, D), None, eps)
    se_mean = (var[0] / n).sqrt()
    assert ((z.mean(0) - mu[0]).abs() < 5 * se_mean).all()
    # the sample variance's standard error is about var * sqrt(2 / n)
    assert ((z.var(0) - var[0]).abs() < 5 * var[0] * math.sqrt(2 / n)).all()


def test_kl_term_averages_to_the_closed_form(monkeypatch) -> None:
    mu, var = _gaussian(n=1, seed=3)
    n = 100_000
    model = _vae()
    # isolate the latent part: a fixed q(z|x) for every row, a constant likelihood
    monkeypatch.setattr(model, "encode", lambda x: (mu.expand(n, D), var.expand(n, D), None))
    monkeypatch.setattr(model, "decode", lambda z: z)
    monkeypatch.setattr(model, "log_px", lambda x, logits: torch.zeros(n))
    torch.manual_seed(4)
    log_px, kl = model.terms(torch.zeros(n, 1, 28, 20))
    assert torch.equal(log_px, torch.zeros(n))
    closed = 0.5 * float((var + mu.square() - 1 - var.log()).sum())
    assert float(kl.mean()) == pytest.approx(closed, abs=5 * float(kl.std()) / math.sqrt(n))


def test_flow_posterior_subtracts_the_log_determinant() -> None:
    flow = AmortisedBNAF(D, flows=2, layers=1, hidden_factor=2, seed=0)
    model = _vae(flow)
    mu, var = _gaussian()
    theta = 0.1 * torch.randn(3, flow.n_amortised, generator=torch.Generator().manual_seed(5))
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(6))
    zk, log_q = model.posterior(mu, var, theta, eps)
    z0 = mu + var.sqrt() * eps
    want_zk, log_det = flow(z0, theta)
    torch.testing.assert_close(zk, want_zk)
    base = torch.distributions.Normal(mu, var.sqrt()).log_prob(z0).sum(-1)
    torch.testing.assert_close(log_q, base - log_det)
    # and log_det is that of the map z0 -> zK of each datapoint (autograd Jacobian)
    for i in range(3):
        one = theta[i : i + 1]
        jac = torch.autograd.functional.jacobian(lambda z, t=one: flow(z[None], t)[0][0], z0[i])
        torch.testing.assert_close(log_det[i], torch.linalg.slogdet(jac)[1])


@pytest.mark.parametrize("likelihood, low", [("bernoulli", 0.0), ("categorical", 0.01)])
def test_encoder_variance_is_positive_and_clipped_for_frey(likelihood: str, low: float) -> None:
    model = VAE((1, 28, 20), likelihood, latent=D)
    with torch.no_grad():  # push the variance head far down and far up
        model.q_var.weight.zero_()
        model.q_var.bias.copy_(torch.tensor([-30.0, -1.0, 3.0, 30.0]))
    x = torch.rand(2, 1, 28, 20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, var, theta = model.encode(x)
    assert theta is None and (var > 0).all()
    softplus = torch.nn.functional.softplus(torch.tensor([-30.0, -1.0, 3.0, 30.0]))
    want = softplus.clamp(0.01, 7.0) if likelihood == "categorical" else softplus
    torch.testing.assert_close(var[0], want)
    assert float(var.min()) >= low
