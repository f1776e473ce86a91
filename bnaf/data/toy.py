r"""Seeded samplers of the 2-D toy densities of Section 5.1 (Figure 2).

The datasets are those of Grathwohl et al. (2019, FFJORD, ``toy_data.py``), which the paper
uses: ``8gaussians``, ``2spirals`` and ``checkerboard`` (Figure 2) and the rest of that family
(``moons``, ``circles``, ``rings``, ``pinwheel``, ``swissroll``). Each sampler draws i.i.d.
points from a ``numpy.random.Generator`` (same seed, same samples). Where FFJORD makes a batch
with fixed class proportions (half a batch per spiral, ``linspace`` angles on the rings) we draw
the class of every point at random, so that test log-likelihoods are means over i.i.d. samples.

Two densities are known in closed form: the mixture of ``8gaussians`` and the uniform density of
``checkerboard`` on 8 squares of area 4, so the best achievable test log-likelihood is their
negative entropy (:func:`best_log_likelihood`).

References:
    | FFJORD (Grathwohl et al., 2019), https://github.com/rtqichen/ffjord lib/toy_data.py
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from bnaf.core.errors import BnafError

__all__ = ["DATASETS", "best_log_likelihood", "log_density", "sample2d"]

Sampler = Callable[[int, np.random.Generator], np.ndarray]

# 8gaussians: centres on the circle of radius 4, std 0.5, everything divided by 1.414 (FFJORD).
_G8_SCALE = 1.414
_G8_CENTRES = 4.0 * np.array(
    [(math.cos(k * math.pi / 4), math.sin(k * math.pi / 4)) for k in range(8)]
)
_G8_STD = 0.5


def _eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(8, size=n)
    return (rng.standard_normal((n, 2)) * _G8_STD + _G8_CENTRES[idx]) / _G8_SCALE


def _two_spirals(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.sqrt(rng.random(n)) * 540.0 * (2 * np.pi) / 360.0
    x = np.stack([-np.cos(t) * t, np.sin(t) * t], 1) + rng.random((n, 2)) * 0.5
    sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)[:, None]  # which of the two spirals
    return sign * x / 3.0 + rng.standard_normal((n, 2)) * 0.1


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - rng.integers(0, 2, size=n) * 2 + np.floor(x1) % 2
    return np.stack([x1, x2], 1) * 2


def _moons(n: int, rng: np.random.Generator) -> np.ndarray:
    # sklearn.make_moons(noise=0.1), then * 2 + (-1, -0.2) as FFJORD.
    t = rng.random(n) * np.pi
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(t), 1.0 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    pts = np.stack([x, y], 1) + rng.standard_normal((n, 2)) * 0.1
    return pts * 2 + np.array([-1.0, -0.2])


def _circles(n: int, rng: np.random.Generator) -> np.ndarray:
    # sklearn.make_circles(factor=0.5, noise=0.08), then * 3 as FFJORD.
    t = rng.random(n) * 2 * np.pi
    r = np.where(rng.random(n) < 0.5, 1.0, 0.5)
    pts = np.stack([np.cos(t), np.sin(t)], 1) * r[:, None]
    return (pts + rng.standard_normal((n, 2)) * 0.08) * 3


def _rings(n: int, rng: np.random.Generator) -> np.ndarray:
    # Four concentric circles of radii 3 * (1, 0.75, 0.5, 0.25), noise 0.08 (FFJORD).
    t = rng.random(n) * 2 * np.pi
    r = 3.0 * np.array([1.0, 0.75, 0.5, 0.25])[rng.integers(4, size=n)]
    pts = np.stack([np.cos(t), np.sin(t)], 1) * r[:, None]
    return pts + rng.standard_normal((n, 2)) * 0.08


def _pinwheel(n: int, rng: np.random.Generator) -> np.ndarray:
    radial_std, tangential_std, classes, rate = 0.3, 0.1, 5, 0.25
    rads = np.linspace(0, 2 * np.pi, classes, endpoint=False)
    feats = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std])
    feats[:, 0] += 1.0
    angles = rads[rng.integers(classes, size=n)] + rate * np.exp(feats[:, 0])
    c, s = np.cos(angles), np.sin(angles)
    # Row vector times [[c, -s], [s, c]] (FFJORD's einsum "ti,tij->tj").
    return 2 * np.stack([feats[:, 0] * c + feats[:, 1] * s, -feats[:, 0] * s + feats[:, 1] * c], 1)


def _swissroll(n: int, rng: np.random.Generator) -> np.ndarray:
    # sklearn.make_swiss_roll(noise=1.0), coordinates (x, z), / 5 as FFJORD.
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    pts = np.stack([t * np.cos(t), t * np.sin(t)], 1)
    return (pts + rng.standard_normal((n, 2))) / 5


#: dataset name -> sampler ``(n, rng) -> (n, 2)`` float64 array.
DATASETS: dict[str, Sampler] = {
    "8gaussians": _eight_gaussians,
    "2spirals": _two_spirals,
    "checkerboard": _checkerboard,
    "moons": _moons,
    "circles": _circles,
    "rings": _rings,
    "pinwheel": _pinwheel,
    "swissroll": _swissroll,
}


def _check(name: str, table: dict) -> None:
    if name not in table:
        raise BnafError(f"unknown toy dataset {name!r}; expected one of {', '.join(table)}")


def sample2d(name: str, n: int, rng: np.random.Generator | int) -> np.ndarray:
    r"""``n`` i.i.d. points of dataset ``name`` as a ``(n, 2)`` float64 array.

    Arguments:
        name: a key of :data:`DATASETS`.
        n: number of points.
        rng: a generator, or an integer seed for a fresh one.
    """
    _check(name, DATASETS)
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    return DATASETS[name](int(n), rng)


def _log_eight_gaussians(x: np.ndarray) -> np.ndarray:
    # x = (c + 0.5 e) / 1.414: a mixture of N(c / 1.414, (0.5 / 1.414)^2 I), weights 1/8.
    std = _G8_STD / _G8_SCALE
    diff = x[:, None, :] - _G8_CENTRES[None] / _G8_SCALE  # (n, 8, 2)
    log_comp = -0.5 * (diff**2).sum(-1) / std**2 - math.log(2 * math.pi * std**2)
    m = log_comp.max(1, keepdims=True)
    return (m + np.log(np.exp(log_comp - m).sum(1, keepdims=True)))[:, 0] - math.log(8)


def _log_checkerboard(x: np.ndarray) -> np.ndarray:
    # Uniform on the 8 squares of side 2 in [-4, 4]^2 whose column and row parities agree
    # in the pattern drawn by the sampler: area 32.
    i, j = np.floor(x[:, 0] / 2), np.floor(x[:, 1] / 2)
    inside = (np.abs(x) < 4).all(1) & ((i + j) % 2 == 0)
    return np.where(inside, -math.log(32.0), -np.inf)


_LOG_DENSITIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "8gaussians": _log_eight_gaussians,
    "checkerboard": _log_checkerboard,
}


def log_density(name: str, x: np.ndarray) -> np.ndarray:
    r"""The true ``log p(x)`` of ``name`` where known in closed form (8gaussians, checkerboard)."""
    if name not in _LOG_DENSITIES:
        raise BnafError(f"no closed-form density for toy dataset {name!r}")
    return _LOG_DENSITIES[name](np.asarray(x, dtype=np.float64))


def best_log_likelihood(name: str, step: float = 0.01) -> dict[str, object] | None:
    r"""The best achievable expected log-likelihood ``E_p[log p(x)] = -H(p)``, or ``None``.

    ``checkerboard``: ``log(1/32)`` exactly (uniform on area 32). ``8gaussians``: midpoint-rule
    quadrature of ``p log p`` on ``[-5, 5]^2`` with spacing ``step`` (the mixture has no
    closed-form entropy; components lie 6 standard deviations apart and the box holds all but
    ``< 1e-20`` of the mass, so the error is the quadrature's, far below 1e-6 nats).
    """
    if name == "checkerboard":
        return {"value": -math.log(32.0), "se": 0.0, "method": "closed form: log(1/area), area 32"}
    if name == "8gaussians":
        edges = np.arange(-5.0, 5.0, step) + step / 2
        total = 0.0
        for x1 in np.array_split(edges, 20):  # chunks keep memory small
            g = np.stack(np.meshgrid(x1, edges, indexing="ij"), -1).reshape(-1, 2)
            lp = _log_eight_gaussians(g)
            total += float((np.exp(lp) * lp).sum()) * step**2
        return {"value": total, "se": 0.0, "method": f"midpoint quadrature, step {step}"}
    return None
