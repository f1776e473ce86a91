"""B-NAF inverse, range and sampling (bnaf/inverse.py): round trips, range detection, samples.

Error bounds checked here (float64, default tolerance ``xtol = 1e-12``):
  * backward error ``|f(f^-1(z)) - z|_inf <= 1e-12 (1 + |z|_inf)``;
  * forward error ``|f^-1(f(x)) - x|_inf <= 1e-10 (1 + |z|_inf) / sigma_min(J_f(x))``: the
    first-order bound of the backward error through the inverse's condition, with a margin
    (measured: at most ~1 float64 epsilon in these units over the whole grid).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from bnaf.core.errors import BnafError
from bnaf.flows import BNAF, BlockFlow
from bnaf.flows.inverse import invert, invert_flow, is_onto
from bnaf.flows.sampling import in_range, sample

pytestmark = pytest.mark.usefixtures("one_thread")


DIMS = [1, 2, 6, 21]
# (flows, layers, hidden_factor, final_residual)
DEPTHS = [(1, 1, 3, False), (3, 2, 4, False), (2, 2, 4, True)]
CASES = list(itertools.product(DIMS, ["none", "normal", "gated"], ["tanh", "leakyrelu"], DEPTHS))


def _model(d: int, residual: str, activation: str, depth: tuple) -> BNAF:
    flows, layers, k, final = depth
    torch.manual_seed(d)
    return BNAF(
        d,
        flows=flows,
        layers=layers,
        hidden_factor=k,
        residual=residual,
        activation=activation,
        final_residual=final,
        seed=d,
    ).double()


def _sigma_min(model: BNAF, x: torch.Tensor) -> torch.Tensor:
    """Smallest singular value of the autograd Jacobian of ``f`` at each row of ``x``."""
    # Rows are independent, so d(sum_n z_n)/dx stacks every row's Jacobian: (d, n, d).
    jac = torch.autograd.functional.jacobian(lambda v: model(v)[0].sum(0), x)
    return torch.linalg.svdvals(jac.permute(1, 0, 2))[:, -1]


@pytest.mark.parametrize("d,residual,activation,depth", CASES)
def test_round_trips(d: int, residual: str, activation: str, depth: tuple) -> None:
    model = _model(d, residual, activation, depth)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, d, dtype=torch.float64, generator=g)
    with torch.no_grad():
        z, _ = model(x)
    res = invert(model, z)
    assert res.inside.all() and res.converged.all()
    bound = 1e-10 * (1 + z.abs().amax(1)) / _sigma_min(model, x)
    assert ((res.x - x).abs().amax(1) <= bound).all()
    # Backward error on points of the range reached from wider inputs.
    with torch.no_grad():
        z2, _ = model(3 * torch.randn(16, d, dtype=torch.float64, generator=g))
        x2 = model.inverse(z2)
        z_back, _ = model(x2)
    assert ((z_back - z2).abs() <= 1e-12 * (1 + z2.abs().amax(1, keepdim=True))).all()


@pytest.mark.parametrize("d", [2, 6])
def test_onto_models_invert_all_of_rd(d: int) -> None:
    torch.manual_seed(d)
    for residual, activation, final in [("gated", "tanh", True), ("none", "leakyrelu", False)]:
        model = BNAF(
            d,
            flows=2,
            layers=1,
            hidden_factor=4,
            residual=residual,
            activation=activation,
            final_residual=final,
        ).double()
        assert all(is_onto(t) for t in model.transforms if isinstance(t, BlockFlow))
        z = 2 * torch.randn(200, d, dtype=torch.float64)
        x, inside = model.inverse(z, outside="mask")
        assert inside.all()
        with torch.no_grad():
            # xtol 1e-12 holds on x; the Jacobian (LeakyReLU slopes up to 100) amplifies it in z
            assert torch.allclose(model(x)[0], z, atol=1e-8, rtol=1e-8)


def _conditional_limits(flow: BlockFlow, x_prefix: torch.Tensor, i: int, big: float = 1e4):
    """``f_i(x_<i, -big)`` and ``f_i(x_<i, +big)`` through the flow's own forward pass."""
    n, d = x_prefix.shape[0], flow.dim
    out = []
    for s in (-big, big):
        x = torch.zeros(n, d, dtype=x_prefix.dtype)
        x[:, :i] = x_prefix[:, :i]
        x[:, i] = s
        with torch.no_grad():
            out.append(flow(x)[0][:, i])
    return out


def test_range_of_one_bounded_flow_matches_saturated_forward() -> None:
    # One flow without residual, d = 2: z_1 must lie between f_1(-inf) and f_1(+inf), and z_2
    # between the limits of f_2(x_1, .), which the flow's own forward gives at |x| = 1e4.
    torch.manual_seed(3)
    model = BNAF(
        2, flows=1, layers=2, hidden_factor=5, residual="none", activation="tanh"
    ).double()
    flow = model.transforms[0]
    lo1, hi1 = _conditional_limits(flow, torch.zeros(1, 2, dtype=torch.float64), 0)
    w1 = float(hi1 - lo1)
    z1 = torch.linspace(float(lo1) - 0.2 * w1, float(hi1) + 0.2 * w1, 41, dtype=torch.float64)
    z1 = torch.cat(
        [z1, lo1 + w1 * torch.tensor([-1e-6, 1e-6]), hi1 + w1 * torch.tensor([-1e-6, 1e-6])]
    )
    expected = (z1 > lo1) & (z1 < hi1)
    x1 = invert_flow(flow, torch.stack([z1, torch.zeros_like(z1)], 1))[0][:, 0]
    with torch.no_grad():  # a z_2 inside the conditional range: f_2(x_1, 0)
        z2 = flow(torch.stack([x1, torch.zeros_like(x1)], 1))[0][:, 1]
    z2 = torch.where(expected, z2, 0.0)
    assert torch.equal(invert(model, torch.stack([z1, z2], 1)).inside, expected)
    assert expected.sum() >= 10 and (~expected).sum() >= 10
    # z_2 across the conditional interval of x_1 = 0.3.
    x = torch.tensor([[0.3, 0.0]], dtype=torch.float64)
    with torch.no_grad():
        z1_fixed = flow(x)[0][0, 0]
    lo2, hi2 = _conditional_limits(flow, x, 1)
    w2 = float(hi2 - lo2)
    z2 = torch.linspace(float(lo2) - 0.2 * w2, float(hi2) + 0.2 * w2, 41, dtype=torch.float64)
    z2 = torch.cat(
        [z2, lo2 + w2 * torch.tensor([-1e-6, 1e-6]), hi2 + w2 * torch.tensor([-1e-6, 1e-6])]
    )
    expected = (z2 > lo2) & (z2 < hi2)
    res = invert(model, torch.stack([z1_fixed.expand_as(z2), z2], 1))
    assert torch.equal(res.inside, expected)
    assert torch.allclose(res.x[res.inside, 0], x[0, 0].expand(int(expected.sum())))


@pytest.mark.parametrize("d", [2, 6])
def test_outside_points_flagged_inside_points_not(d: int) -> None:
    torch.manual_seed(0)
    model = BNAF(
        d, flows=3, layers=1, hidden_factor=5, residual="gated", activation="tanh"
    ).double()  # last flow bounded
    with torch.no_grad():
        z_in, _ = model(2 * torch.randn(300, d, dtype=torch.float64))
    assert invert(model, z_in).inside.all()
    far = torch.full((5, d), 1e3, dtype=torch.float64)
    assert not invert(model, far).inside.any()
    z = torch.cat([z_in[:100], 3 * torch.randn(400, d, dtype=torch.float64)])
    res = invert(model, z)
    assert res.inside.sum() >= 100 and (~res.inside).sum() >= 100
    assert torch.equal(in_range(model, z), res.inside)
    assert torch.isnan(res.x[~res.inside]).all() and torch.isfinite(res.x[res.inside]).all()
    with torch.no_grad():
        back, _ = model(res.x[res.inside])
    assert torch.allclose(back, z[res.inside], atol=1e-10)
    # Outside points: the last flow's coordinate that leaves its conditional interval.
    last = model.transforms[-1]
    y = z[~res.inside]
    x_last, inside_last = invert_flow(last, y)[:2]
    assert not inside_last.any()
    gaps = []
    for i in range(d):
        lo, hi = _conditional_limits(last, x_last, i)
        gaps.append((y[:, i] <= lo) | (y[:, i] >= hi))
    first_gap = torch.stack(gaps, 1).any(1)
    assert first_gap.all()
    with pytest.raises(BnafError, match="outside the flow's range"):
        model.inverse(z)
    with pytest.raises(BnafError, match=r"shape \(n, "):
        model.inverse(z[:, :1] if d > 1 else z.repeat(1, 2))
    nan = z[:3].clone()
    nan[0, 0] = math.nan
    assert not invert(model, nan).inside[0]


def test_float32_and_iteration_counts() -> None:
    torch.manual_seed(0)
    model = BNAF(6, flows=5, layers=2, hidden_factor=40, residual="gated", activation="tanh")
    x = torch.randn(256, 6)
    with torch.no_grad():
        z, _ = model(x)
    res = invert(model, z)
    assert res.inside.all() and res.converged.all()
    assert (res.x - x).abs().max() < 1e-3
    assert res.iterations.shape == (5, 6) and (res.iterations >= 1).all()
    assert res.max_iterations.max() <= 100


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    model = BNAF(6, flows=3, layers=2, hidden_factor=8).double()
    x = torch.randn(100, 6, dtype=torch.float64)
    with torch.no_grad():
        z, _ = model(x)
    x_gpu = model.cuda().inverse(z.cuda())
    assert torch.allclose(x_gpu.cpu(), x, atol=1e-9)


def _train_toy(target: str, steps: int, seed: int = 0) -> BNAF:
    from bnaf.data.toy import sample2d

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = BNAF(2, flows=1, layers=2, hidden_factor=16, residual="none", seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        x = torch.from_numpy(sample2d(target, 256, rng)).float()
        loss = -model.log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.double().eval()


@pytest.mark.float32  # a float32 model, as trained
def test_samples_follow_the_grid_density() -> None:
    model = _train_toy("moons", steps=300)
    g = torch.Generator().manual_seed(5)
    n = 20_000
    s = sample(model, n, generator=g)
    assert s.x.shape == (n, 2) and 0 < s.accepted <= 1 and s.drawn >= n
    # Bins of 0.5 on [-4, 4]^2, each integrated by the midpoint rule on a 10 x 10 sub-grid.
    edges = np.linspace(-4, 4, 17)
    sub = np.linspace(-4, 4, 161)
    centres = 0.5 * (sub[1:] + sub[:-1])
    pts = torch.from_numpy(np.stack(np.meshgrid(centres, centres, indexing="ij"), -1))
    with torch.no_grad():
        p = model.log_prob(pts.reshape(-1, 2)).exp().reshape(160, 160).numpy() * 0.05**2
    expected = p.reshape(16, 10, 16, 10).sum((1, 3))
    xs = s.x.numpy()
    box = (np.abs(xs) < 4).all(1)
    counts, _, _ = np.histogram2d(xs[box, 0], xs[box, 1], bins=(edges, edges))
    m = counts.sum()
    expected = expected / expected.sum() * m
    # Pool the bins expected to hold fewer than 5 samples (Cochran's rule for chi-square).
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    # Under "samples follow p / Z" chi2 ~ chi-square(k - 1); fail below a 1e-4 p-value.
    assert stats.chi2.sf(chi2, len(obs) - 1) > 1e-4, (chi2, len(obs))
    # Rotated samples (as from a wrong inverse) must be rejected: the moons are not symmetric.
    counts_m, _, _ = np.histogram2d(-xs[box, 1], xs[box, 0], bins=(edges, edges))
    obs_m = np.append(counts_m[~small], counts_m[small].sum())
    assert stats.chi2.sf(float(((obs_m - exp) ** 2 / exp).sum()), len(obs) - 1) < 1e-4


def test_sample_rejects_and_reports_when_range_is_tiny() -> None:
    torch.manual_seed(0)
    model = BNAF(2, flows=1, layers=1, hidden_factor=2, residual="none").double()
    with torch.no_grad():  # shrink the range to a tiny box around a far point
        model.transforms[0].linears[-1].log_scale.fill_(-12.0)
        model.transforms[0].linears[-1].bias.fill_(6.0)
    with pytest.raises(BnafError, match="base draws"):
        sample(model, 10, max_draws=1000)
