"""Per-sample means (the reported figure, Section 5.3) against brute force on uneven batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from bnaf.core.stats import (
    batch_means_mean,
    log_likelihoods,
    mean_se,
    standard_normal_log_prob,
    summarise,
)
from bnaf.flows import BNAF


class Scaled(nn.Module):
    """``log p(x) = log N(x; 0, s^2 I)``: a density whose value is known in closed form."""

    def __init__(self, s: float):
        super().__init__()
        self.s = s

    def log_prob(self, x: Tensor) -> Tensor:
        d = x.shape[1]
        return (
            -0.5 * ((x / self.s) ** 2).sum(1)
            - d * math.log(self.s)
            - 0.5 * d * math.log(2 * math.pi)
        )


def test_standard_normal_log_prob_is_the_normal_density() -> None:
    z = torch.randn(11, 4, generator=torch.Generator().manual_seed(0))
    want = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(standard_normal_log_prob(z), want)


@pytest.mark.parametrize("n, batch", [(23, 7), (23, 23), (23, 100), (1, 4), (200, 199)])
def test_log_likelihoods_cover_every_row_once_in_order(n: int, batch: int) -> None:
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(n))
    model = BNAF(3, flows=2, layers=1, hidden_factor=2)
    model.train()
    got = log_likelihoods(model, x, batch_size=batch)
    assert got.dtype == torch.float64 and got.shape == (n,)
    with torch.no_grad():
        one_by_one = torch.stack([model.log_prob(x[i : i + 1])[0] for i in range(n)])
    torch.testing.assert_close(got, one_by_one.double(), rtol=1e-10, atol=1e-10)
    assert model.training  # the caller's mode is restored


def test_log_likelihoods_restore_eval_mode_too() -> None:
    model = Scaled(2.0).eval()
    log_likelihoods(model, torch.zeros(3, 2), batch_size=2)
    assert not model.training


def test_summarise_is_the_per_sample_mean_and_its_standard_error() -> None:
    values = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0, -3.0, 0.5])
    s = summarise(values)
    n = 7
    mean = sum(values.tolist()) / n
    var = sum((v - mean) ** 2 for v in values.tolist()) / (n - 1)
    assert s.n == n and s.finite
    assert s.mean == pytest.approx(mean, rel=1e-14)
    assert s.stderr == pytest.approx(math.sqrt(var / n), rel=1e-12)
    assert mean_se(values.numpy()) == pytest.approx((mean, math.sqrt(var / n)), rel=1e-12)


def test_summarise_flags_non_finite_values_and_single_samples() -> None:
    assert not summarise(torch.tensor([1.0, float("nan")])).finite
    assert not summarise(torch.tensor([1.0, -float("inf")])).finite
    one = summarise(torch.tensor([2.5]))
    assert one.mean == 2.5 and one.stderr == 0.0 and one.n == 1 and one.finite


def test_mean_of_batch_means_by_hand_differs_from_the_per_sample_mean() -> None:
    values = torch.arange(1.0, 8.0)  # 1..7 in batches of 3: means 2, 5, 7
    assert batch_means_mean(values, 3) == pytest.approx((2 + 5 + 7) / 3)
    assert summarise(values).mean == pytest.approx(4.0)
    assert batch_means_mean(values, 7) == pytest.approx(4.0)  # one batch: the same


def test_exact_mean_of_a_known_density() -> None:
    # 2001 points (one short last batch of 1 at batch 200): the per-sample mean of log N(x;0,4I)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2001, 2)))
    model = Scaled(2.0)
    values = log_likelihoods(model, x, batch_size=200)
    by_hand = np.mean(
        [-0.5 * (r**2).sum() / 4 - 2 * math.log(2.0) - math.log(2 * math.pi) for r in x.numpy()]
    )
    assert summarise(values).mean == pytest.approx(by_hand, rel=1e-12)


def test_standard_normal_log_prob_sums_the_last_dimension_of_any_shape() -> None:
    z = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(1))
    want = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(standard_normal_log_prob(z), want)


def test_two_samples_have_a_standard_error() -> None:
    # values 1 and 3: std(ddof=1) = sqrt(2), standard error sqrt(2) / sqrt(2) = 1
    assert summarise(torch.tensor([1.0, 3.0])).stderr == pytest.approx(1.0)


def test_mean_se_accumulates_in_float64() -> None:
    # in float32, 2^24 + 1 rounds back to 2^24: a float32 sum would lose the three ones
    values = np.array([2.0**24, 1.0, 1.0, 1.0], dtype=np.float32)
    mean, _ = mean_se(values)
    assert mean == (2.0**24 + 3.0) / 4
