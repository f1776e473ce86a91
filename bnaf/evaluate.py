r"""Exact evaluation of a density model on a whole split (Section 5.3, Table 1).

The reported figure is the per-sample mean of ``log p(x)`` over every sample of the split, in
nats, with its standard error ``std(ddof=1) / sqrt(n)``; never a mean of batch means (which
weights the samples of a short last batch more). Computed without autograd, summed in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["LogLikelihood", "log_likelihoods", "summarise", "batch_means_mean"]


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
