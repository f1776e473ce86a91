"""Toy samplers (FFJORD's 2-D data) and energies U1-U4 (Rezende and Mohamed, 2015, Table 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bnaf.core.errors import BnafError
from bnaf.data.toy import DATASETS, best_log_likelihood, log_density, sample2d
from bnaf.toy.energy import (
    ENERGIES,
    confined_energies,
    confined_energy,
    energy,
    energy_and_gradient,
    log_normaliser,
)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_sampler_is_deterministic_under_a_seed(name):
    a, b = sample2d(name, 500, 3), sample2d(name, 500, 3)
    assert a.shape == (500, 2) and a.dtype == np.float64 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, sample2d(name, 500, 4))
    # A generator passed in is advanced: two draws differ, and replay from the same seed.
    rng = np.random.default_rng(7)
    first, second = sample2d(name, 100, rng), sample2d(name, 100, rng)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, sample2d(name, 100, 7))


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_symmetric_datasets_have_the_expected_mean(name):
    x = sample2d(name, 200_000, 0)
    se = x.std(0) / math.sqrt(len(x))
    # moons are shifted by (-1, -0.2) after the (0.5, 0.25)-centred pair, times 2: mean (0, 0.3);
    # swissroll's mean follows from t ~ U(1.5 pi, 4.5 pi): E[t cos t] / 5, E[t sin t] / 5.
    t = np.linspace(1.5 * np.pi, 4.5 * np.pi, 2_000_001)
    expected = {
        "moons": np.array([0.0, 0.3]),
        "swissroll": np.array([np.mean(t * np.cos(t)), np.mean(t * np.sin(t))]) / 5,
    }.get(name, np.zeros(2))
    assert np.all(np.abs(x.mean(0) - expected) < 5 * se + 1e-3)


def test_eight_gaussians_components():
    x = sample2d("8gaussians", 80_000, 1)
    centres = 4 / 1.414 * np.array([(math.cos(k * math.pi / 4), math.sin(k * math.pi / 4))
                                    for k in range(8)])  # fmt: skip
    dist = np.linalg.norm(x[:, None] - centres[None], axis=-1)
    nearest = dist.argmin(1)
    counts = np.bincount(nearest, minlength=8) / len(x)
    assert np.all(np.abs(counts - 1 / 8) < 0.01)
    resid = x - centres[nearest]
    np.testing.assert_allclose(resid.std(0), 0.5 / 1.414, rtol=0.02)


def test_supports_of_the_other_datasets():
    r = np.linalg.norm(sample2d("circles", 50_000, 0), axis=1)
    assert (
        np.abs(np.median(r[r > 2.25]) - 3) < 0.05 and np.abs(np.median(r[r < 2.25]) - 1.5) < 0.05
    )
    r = np.linalg.norm(sample2d("rings", 50_000, 0), axis=1)
    for radius in (0.75, 1.5, 2.25, 3.0):
        assert np.any(np.abs(r - radius) < 0.05)
    x = sample2d("checkerboard", 50_000, 0)
    assert np.all(np.abs(x) <= 4) and np.isfinite(log_density("checkerboard", x)).all()
    cells = np.floor(x / 2).astype(int)
    _, counts = np.unique(cells, axis=0, return_counts=True)
    assert len(counts) == 8 and np.all(np.abs(counts / len(x) - 1 / 8) < 0.01)
    # The two spirals are point reflections of each other.
    s = sample2d("2spirals", 100_000, 0)
    np.testing.assert_allclose(np.abs(s).mean(0), np.abs(-s).mean(0))
    assert np.abs(s).max() < 4.5


def test_closed_form_densities_integrate_to_one():
    step = 0.02
    c = np.arange(-6, 6, step) + step / 2
    g = np.stack(np.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2)
    for name in ("8gaussians", "checkerboard"):
        assert np.exp(log_density(name, g)).sum() * step**2 == pytest.approx(1.0, abs=1e-3)


def test_best_log_likelihood():
    assert best_log_likelihood("checkerboard")["value"] == pytest.approx(-math.log(32))
    assert best_log_likelihood("moons") is None
    best = best_log_likelihood("8gaussians")["value"]
    # Monte Carlo: E_p[log p] over fresh samples agrees within 4 standard errors.
    lp = log_density("8gaussians", sample2d("8gaussians", 400_000, 5))
    assert abs(best - lp.mean()) < 4 * lp.std() / math.sqrt(len(lp))
    # Well-separated components: -H is just above -(log 8 + 1 + log(2 pi sigma^2)).
    sigma2 = (0.5 / 1.414) ** 2
    separated = -(math.log(8) + 1 + math.log(2 * math.pi * sigma2))
    assert separated < best < separated + 0.02


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(BnafError, match="unknown toy dataset"):
        sample2d("nope", 5, 0)


def _z(*pts):
    return torch.tensor(pts, dtype=torch.float64)


def test_energies_at_hand_computed_points():
    # U1: on the ring at the lobe centre (2, 0) both terms vanish (up to exp(-22.2));
    # at (0, 2): ring 0, lobes log(2 exp(-1/2 (2/0.6)^2)).
    u1 = energy("U1", _z([2.0, 0.0], [0.0, 2.0]))
    assert u1[0].item() == pytest.approx(-math.exp(-0.5 * (4 / 0.6) ** 2), abs=1e-12)
    assert u1[1].item() == pytest.approx(0.5 * (2 / 0.6) ** 2 - math.log(2), abs=1e-12)
    # U2: w1(1) = sin(pi/2) = 1, w1(0) = 0.
    u2 = energy("U2", _z([1.0, 1.0], [0.0, 0.4], [3.0, 0.0]))
    np.testing.assert_allclose(u2.numpy(), [0.0, 0.5, 0.5 * (1 / 0.4) ** 2], atol=1e-12)
    # U3 at z1 = 1: w1 = 1, w2 = 3, so the two branches sit at z2 = 1 and z2 = -2.
    u3 = energy("U3", _z([1.0, 1.0], [1.0, -2.0]))
    np.testing.assert_allclose(u3.numpy(), -np.log1p(np.exp(-0.5 * (3 / 0.35) ** 2)), atol=1e-12)
    # U4 at z1 = 1: w1 = 1, w3 = 3 sigmoid(0) = 1.5.
    u4 = energy("U4", _z([1.0, 1.0], [1.0, -0.5]))
    np.testing.assert_allclose(
        u4.numpy(),
        [-math.log1p(math.exp(-0.5 * (1.5 / 0.35) ** 2)),
         -math.log1p(math.exp(-0.5 * (1.5 / 0.4) ** 2))],
        atol=1e-12,
    )  # fmt: skip


@pytest.mark.parametrize("name", sorted(ENERGIES))
def test_energies_match_the_published_formulas(name):
    rng = np.random.default_rng(0)
    pts = rng.uniform(-4, 4, size=(50, 2))

    def published(z1, z2):
        w1 = math.sin(2 * math.pi * z1 / 4)
        w2 = 3 * math.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
        w3 = 3 / (1 + math.exp(-(z1 - 1) / 0.3))
        if name == "U1":
            r = math.hypot(z1, z2)
            return 0.5 * ((r - 2) / 0.4) ** 2 - math.log(
                math.exp(-0.5 * ((z1 - 2) / 0.6) ** 2) + math.exp(-0.5 * ((z1 + 2) / 0.6) ** 2)
            )
        if name == "U2":
            return 0.5 * ((z2 - w1) / 0.4) ** 2
        if name == "U3":
            return -math.log(math.exp(-0.5 * ((z2 - w1) / 0.35) ** 2)
                             + math.exp(-0.5 * ((z2 - w1 + w2) / 0.35) ** 2) + 1e-300)  # fmt: skip
        return -math.log(math.exp(-0.5 * ((z2 - w1) / 0.4) ** 2)
                         + math.exp(-0.5 * ((z2 - w1 + w3) / 0.35) ** 2) + 1e-300)  # fmt: skip

    want = np.array([published(a, b) for a, b in pts])
    got = energy(name, torch.from_numpy(pts)).numpy()
    ok = want < 500  # beyond, exp underflows in the scalar restatement
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-10, atol=1e-10)


def test_confinement_and_log_normaliser():
    z = _z([5.0, 0.0], [7.0, -8.0])
    extra = (confined_energy("U2", z, 6.0) - energy("U2", z)).numpy()
    np.testing.assert_allclose(extra, [0.0, 1.0 + 4.0])
    assert torch.equal(confined_energy("U2", z, None), energy("U2", z))
    # U2: a Gaussian of std 0.4 in z2 around w1(z1), flat in z1 up to the confinement, whose
    # z1-integral is 12 + 2 * int_0^inf exp(-t^2) dt = 12 + sqrt(pi).
    want = math.log(0.4 * math.sqrt(2 * math.pi)) + math.log(12 + math.sqrt(math.pi))
    assert log_normaliser("U2", 6.0) == pytest.approx(want, abs=1e-6)
    for name in ENERGIES:
        assert math.isfinite(log_normaliser(name, 6.0, step=0.05))
    # exp(-U1) is integrable on the plane; its mass lies far inside the bound.
    assert log_normaliser("U1", None) == pytest.approx(log_normaliser("U1", 6.0), abs=1e-9)
    with pytest.raises(BnafError, match="not integrable"):
        log_normaliser("U3", None)


@pytest.mark.parametrize("bound", [6.0, None])
def test_training_energies_equal_autograd_of_the_formulas(bound):
    # The training loss takes U and dU/dz in closed form (ConfinedEnergies); both must be
    # confined_energy's, at points on both bumps, far out beyond the bound, on the axes and
    # at the origin (where U1's ring has no direction)
    torch.manual_seed(3)
    names = sorted(ENERGIES) + ["U3", "U1"]  # a member may share its energy with another
    x = torch.randn(len(names), 300, 2, dtype=torch.float64) * 3
    x[:, :4] = torch.tensor([[0.0, 0.0], [9.0, -7.5], [0.0, 2.0], [-6.5, 0.0]], dtype=x.dtype)
    x.requires_grad_()
    weights = torch.randn(len(names), 300, dtype=x.dtype)
    fast = confined_energies(x, names, bound)
    slow = torch.stack([confined_energy(n, x[m], bound) for m, n in enumerate(names)])
    assert torch.equal(fast, slow)  # the very same loss values
    (g_fast,) = torch.autograd.grad((weights * fast).sum(), x)
    (g_slow,) = torch.autograd.grad((weights * slow).sum(), x)
    torch.testing.assert_close(g_fast, g_slow, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda y: confined_energies(y, names, bound),
                                    (x[:, 4:12].detach().clone().requires_grad_(),))  # fmt: skip
    with pytest.raises(BnafError, match="unknown energy"):
        energy_and_gradient("U5", x[0])
    with pytest.raises(BnafError, match="2 energy names for 6 members"):
        confined_energies(x, names[:2], bound)
