"""Conditional B-NAF (bnaf/flows/conditional.py): the amortised flow of Section 5.4 with a
context network. A linear-Gaussian conditional ``x | c ~ N(A c, S)`` has an exact
log-likelihood to compare the trained flow with, and exact moments for its samples."""

from __future__ import annotations

import math

import pytest
import torch

from bnaf.core.errors import BnafError
from bnaf.flows import AmortisedBNAF, ConditionalBNAF

pytestmark = pytest.mark.usefixtures("one_thread")

A = torch.tensor([[1.5], [-1.0]], dtype=torch.float64)
L = torch.tensor([[0.6, 0.0], [0.4, 0.5]], dtype=torch.float64)  # S = L L^T
S = L @ L.T


def _data(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    c = torch.randn(n, 1, generator=g)
    return c @ A.T + torch.randn(n, 2, generator=g) @ L.T, c


@pytest.fixture(scope="module")
def trained() -> ConditionalBNAF:
    before, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)  # small tensors: one thread avoids oversubscribing the cores
    try:
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        model = ConditionalBNAF(2, 1, flows=2, layers=1, hidden_factor=4, context_hidden=16)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 400)
        for _ in range(400):
            x, c = _data(256, g)
            loss = -model.log_prob(x, c).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        return model
    finally:
        torch.set_default_dtype(before)
        torch.set_num_threads(threads)


def test_trained_flow_is_within_005_nats_of_the_exact_conditional(trained) -> None:
    x, c = _data(20_000, torch.Generator().manual_seed(1))
    with torch.no_grad():
        model_ll = trained.log_prob(x, c)
    exact = torch.distributions.MultivariateNormal(c @ A.T, S).log_prob(x)
    gap = (exact - model_ll).mean()
    se = (exact - model_ll).std() / math.sqrt(len(x))
    assert abs(gap) + 3 * se < 0.05, (gap, se)


def test_samples_at_a_context_have_the_conditional_moments(trained) -> None:
    context = torch.tensor([[1.0], [-2.0]])
    with torch.no_grad():
        s = trained.sample(3000, context, generator=torch.Generator().manual_seed(2))
    assert s.x.shape == (3000, 2, 2) and torch.isfinite(s.x).all()
    for k in range(2):
        draws = s.x[:, k]
        se = S.diagonal().sqrt() / math.sqrt(len(draws))
        # within 5 standard errors, plus a margin for the fit itself
        assert torch.all((draws.mean(0) - A @ context[k]).abs() < 5 * se + 0.02)
        torch.testing.assert_close(torch.cov(draws.T), S, atol=0.05, rtol=0)


def test_log_det_is_exact_against_autograd_at_a_fixed_context() -> None:
    torch.manual_seed(1)
    model = ConditionalBNAF(3, 2, flows=3, layers=2, hidden_factor=3, context_hidden=8)
    with torch.no_grad():  # a context network that does depend on the context
        model.context_net[-1].weight.normal_(0.0, 0.2)
    x, c = torch.randn(4, 3), torch.randn(4, 2)
    _, log_det = model(x, c)
    for i in range(4):
        jac = torch.autograd.functional.jacobian(
            lambda v, i=i: model(v[None], c[i : i + 1])[0][0], x[i]
        )
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign > 0
        torch.testing.assert_close(log_det[i], logabs, rtol=1e-10, atol=1e-10)


def test_it_starts_as_an_unconditional_flow_and_the_context_then_matters() -> None:
    torch.manual_seed(2)
    model = ConditionalBNAF(2, 3, flows=2, hidden_factor=2, context_hidden=4)
    x = torch.randn(1, 2).expand(5, -1)
    c = torch.randn(5, 3)
    lp = model.log_prob(x, c)
    torch.testing.assert_close(lp, lp[:1].expand(5))  # zero head: theta ignores the context
    lp.sum().backward()
    assert model.context_net[-1].weight.grad.abs().sum() > 0


def test_inverse_round_trip_per_context_and_outside_points() -> None:
    torch.manual_seed(3)
    model = ConditionalBNAF(3, 2, flows=2, layers=2, hidden_factor=2, context_hidden=4)
    with torch.no_grad():
        model.context_net[-1].weight.normal_(0.0, 0.3)
    x, c = torch.randn(6, 3), torch.randn(6, 2)
    z = model(x, c)[0]
    torch.testing.assert_close(model.inverse(z, c), x, rtol=0, atol=1e-10)
    far = torch.full((1, 3), 100.0)  # the last flow is bounded: no preimage
    with pytest.raises(BnafError, match="outside the flow's range"):
        model.inverse(far, c[:1])
    xs, inside = model.inverse(torch.cat([z[:1], far]), c[:2], outside="mask")
    assert inside.tolist() == [True, False] and torch.isnan(xs[1]).all()


def test_the_vae_posterior_is_the_same_class_without_a_context_network() -> None:
    torch.manual_seed(4)
    cond = ConditionalBNAF(3, 2, flows=2, hidden_factor=2, context_hidden=4)
    assert isinstance(cond, AmortisedBNAF)
    flow = AmortisedBNAF(3, flows=2, hidden_factor=2, layers=1)
    flow.load_state_dict(
        {k: v for k, v in cond.state_dict().items() if not k.startswith("context_net")}
    )
    x, c = torch.randn(4, 3), torch.randn(4, 2)
    theta = cond.context_net(c)
    torch.testing.assert_close(cond(x, c), flow(x, theta), rtol=0, atol=0)
    torch.testing.assert_close(cond.log_prob(x, c), flow.log_prob(x, theta), rtol=0, atol=0)


def test_docstring_example() -> None:
    import doctest

    import bnaf.flows.conditional

    assert doctest.testmod(bnaf.flows.conditional).failed == 0
