"""B-NAF as a ``torch.distributions.Transform`` (bnaf/flows/transform.py): the transformed
distribution's log-density is the model's, the codomain constraint holds, the inverse is cached
and reparameterised, sampling rejects outside a bounded range, and the transform trains inside
pyro's ``TransformedDistribution`` (pyro is optional)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Independent, Normal, TransformedDistribution, constraints

from bnaf.core.errors import BnafError
from bnaf.flows import BNAF, BNAFDistribution, BNAFTransform

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(d: int = 2, **options) -> BNAF:
    torch.manual_seed(0)
    return BNAF(d, **{"flows": 2, "hidden_factor": 4, **options}).double()


def _base(d: int) -> Independent:
    return Independent(Normal(torch.zeros(d), torch.ones(d)), 1)


@pytest.mark.parametrize("options", [{}, {"final_residual": True, "layers": 2}])
def test_transformed_distribution_has_the_models_log_density(options: dict) -> None:
    model = _model(3, **options)
    p = TransformedDistribution(_base(3), [BNAFTransform(model).inv], validate_args=True)
    x = 2.0 * torch.randn(4, 5, 3)  # any batch shape
    expected = model.log_prob(x.reshape(-1, 3)).reshape(4, 5)
    torch.testing.assert_close(p.log_prob(x), expected)
    assert p.event_shape == (3,) and p.support.event_dim == 1


def test_log_abs_det_jacobian_is_that_of_the_autograd_jacobian() -> None:
    t = BNAFTransform(_model(), cache_size=0)
    x = torch.randn(3, 2)
    ladj = t.log_abs_det_jacobian(x, t(x))
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: t(v[None])[0], x[i])
        torch.testing.assert_close(ladj[i], torch.linalg.slogdet(jac)[1])


def test_codomain_is_a_box_holding_the_range_when_the_last_flow_is_bounded() -> None:
    bounded = BNAFTransform(_model())
    box = bounded.codomain
    assert isinstance(box, constraints.independent) and box.event_dim == 1
    # far points saturate every tanh: their images approach the box's faces, never leave it
    x = 1e3 * torch.randn(2000, 2, generator=torch.Generator().manual_seed(0))
    z = bounded(x)
    assert bool(box.check(z).all())
    lo, hi = box.base_constraint.lower_bound, box.base_constraint.upper_bound
    assert torch.all(lo < hi)
    # not a loose bound: some image comes within a fraction of the box's width of a face
    gap = torch.minimum(z - lo, hi - z).amin(0)
    assert torch.all(gap < 0.5 * (hi - lo))
    for options in ({"final_residual": True}, {"residual": "none", "activation": "leakyrelu"}):
        assert BNAFTransform(_model(**options)).codomain is constraints.real_vector


def test_inverse_round_trip_and_cache() -> None:
    model = _model(final_residual=True)
    t = BNAFTransform(model)
    x = torch.randn(6, 2)
    z = model(x)[0]
    torch.testing.assert_close(t.inv(z), x, rtol=0, atol=1e-10)
    # cache_size=1: the same input object gives back the same result object, both ways
    z2 = torch.randn(6, 2)
    assert t.inv(z2) is t.inv(z2)
    y = t(x)
    assert t.inv(y) is x
    uncached = t.with_cache(0)
    assert uncached.inv(z2) is not uncached.inv(z2)


def test_cache_is_dropped_after_an_optimiser_step() -> None:
    # Training on one data tensor: a cached z from before the step would be stale (and its
    # graph already freed by backward).
    model = _model()
    p = TransformedDistribution(_base(2), [BNAFTransform(model).inv])
    data = torch.randn(64, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(3):
        loss = -p.log_prob(data).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[2] < losses[1] < losses[0]
    with torch.no_grad():
        torch.testing.assert_close(p.log_prob(data), model.log_prob(data), rtol=0, atol=1e-12)


def test_rsample_is_reparameterised() -> None:
    model = _model(final_residual=True)
    p = TransformedDistribution(_base(2), [BNAFTransform(model).inv])
    x = p.rsample((5,))
    assert x.requires_grad
    # d x / d z is J_f(x)^{-1}: the gradient of sum x through the sample, by hand
    torch.manual_seed(1)
    z = torch.randn(5, 2, requires_grad=True)
    x = BNAFTransform(model).inv(z)
    x.sum().backward()
    jac = torch.stack(
        [torch.autograd.functional.jacobian(lambda v: model(v[None])[0][0], r) for r in x.detach()]
    )
    expected = torch.linalg.solve(jac.transpose(1, 2), torch.ones(5, 2, 1)).squeeze(-1)
    torch.testing.assert_close(z.grad, expected)
    assert all(p.grad is not None for p in model.parameters())


def test_plain_sampling_of_a_bounded_flow_raises_instead_of_returning_wrong_points() -> None:
    p = TransformedDistribution(_base(2), [BNAFTransform(_model()).inv])
    with pytest.raises(BnafError, match="outside the flow's range"):
        p.sample((200,))


def test_bnaf_distribution_samples_the_normalised_density_of_a_bounded_flow() -> None:
    # 1-D: compare the samples with the CDF of p / Z computed by quadrature of the density
    model = _model(1)
    dist = BNAFDistribution(model)
    samples = dist.sample((2000,))
    assert samples.shape == (2000, 1) and torch.isfinite(samples).all()
    grid = torch.linspace(-30.0, 30.0, 200_001)[:, None]
    with torch.no_grad():
        density = model.log_prob(grid).exp().numpy()
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * 3e-4)])
    mass = cdf[-1]
    assert mass < 0.999  # bounded: the density holds less than the base's whole mass
    result = stats.kstest(samples[:, 0].numpy(), lambda v: np.interp(v, grid[:, 0], cdf) / mass)
    assert result.pvalue > 1e-3
    torch.testing.assert_close(dist.log_prob(samples), model.log_prob(samples))


def test_bnaf_distribution_rsample_keeps_gradients() -> None:
    model = _model()
    x = BNAFDistribution(model).rsample((3, 4))
    assert x.shape == (3, 4, 2) and x.requires_grad
    x.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_pyro_transformed_distribution_fits_a_2d_gaussian() -> None:
    dist = pytest.importorskip("pyro.distributions")
    torch.manual_seed(0)
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
    target = torch.distributions.MultivariateNormal(torch.tensor([1.0, -1.0]), cov)
    model = BNAF(2, flows=2, hidden_factor=4, final_residual=True).double()
    base = dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1)
    p = dist.TransformedDistribution(base, [BNAFTransform(model).inv])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):  # plain maximum likelihood
        loss = -p.log_prob(target.sample((256,))).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = target.sample((5000,))
    with torch.no_grad():
        gap = (target.log_prob(test) - p.log_prob(test)).mean()
        draws = p.sample((4000,))
    assert 0 <= gap < 0.1  # a KL divergence, estimated: nats from the exact model
    # samples through the inverse: moments within ~5 standard errors plus the fit's own error
    se = 1.0 / math.sqrt(len(draws))
    torch.testing.assert_close(draws.mean(0), target.mean, atol=5 * se + 0.03, rtol=0)
    torch.testing.assert_close(torch.cov(draws.T), cov, atol=0.1, rtol=0)


def test_docstring_example() -> None:
    import doctest

    import bnaf.flows.transform

    assert doctest.testmod(bnaf.flows.transform).failed == 0
