r"""Statistics shared by every family: the standard-normal base density, per-sample means with
standard errors, and the exact evaluation of a density model on a whole split (Section 5.3).

The reported figure is the per-sample mean of ``log p(x)`` over every sample of the split, in
nats, with its standard error ``std(ddof=1) / sqrt(n)``; never a mean of batch means (which
weights the samples of a short last batch more). Computed without autograd, summed in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "LOG_2PI",
    "LogLikelihood",
    "batch_means_mean",
    "log_likelihoods",
    "mean_se",
    "standard_normal_log_prob",
    "summarise",
]

LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    r"""``log N(z; 0, I)`` summed over the last dimension (the base density of Eq. 1)."""
    return -0.5 * (z.square().sum(-1) + z.shape[-1] * LOG_2PI)


def mean_se(values: np.ndarray) -> tuple[float, float]:
    r"""Per-sample mean and its standard error ``std(ddof=1) / sqrt(n)``."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


@dataclass(frozen=True)
class LogLikelihood:
    mean: float  # nats per sample
    stderr: float
    n: int
    finite: bool


@torch.no_grad()
def log_likelihoods(model: nn.Module, x: Tensor, batch_size: int = 10_000) -> Tensor:
    r"""``log p(x_n)`` for every row of ``x`` (Eq. 1), as a float64 CPU tensor."""
    was_training = model.training
    model.eval()
    try:
        parts = [model.log_prob(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts).double().cpu()


def summarise(values: Tensor) -> LogLikelihood:
    r"""Mean and standard error of per-sample log-likelihoods."""
    n = int(values.numel())
    finite = bool(torch.isfinite(values).all())
    mean = float(values.mean())
    stderr = float(values.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0
    return LogLikelihood(mean, stderr, n, finite)


def batch_means_mean(values: Tensor, batch_size: int) -> float:
    r"""The mean of per-batch means over consecutive batches of ``batch_size`` (how the
    authors' ``density_estimation.py`` reports validation and test loss); kept for
    comparison and as an optional selection signal."""
    means = [values[i : i + batch_size].mean() for i in range(0, len(values), batch_size)]
    return float(torch.stack(means).mean())
