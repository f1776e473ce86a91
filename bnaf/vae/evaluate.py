r"""Per-datapoint -ELBO and importance-sampled negative log-likelihood (Section 5.4, Table 2).

The NLL follows Burda et al. (2016) / ``utils/log_likelihood.py`` of the Sylvester code:
``log p(x) ~= log (1/S) sum_s p(x, z_s) / q(z_s|x)`` with ``z_s ~ q(z|x)``, an estimate whose
expectation is a lower bound on ``log p(x)`` that tightens as ``S`` grows, so the reported NLL is
an upper bound in expectation. Samples are drawn in chunks and folded into a running
log-sum-exp, so memory does not grow with ``S``. The encoder is run once per datapoint (the
Sylvester code recomputes it for every copy of ``x``; the result is the same).

Any model with ``encode(x) -> (mu, var, theta)``, ``posterior(mu, var, theta, eps) ->
(z, log q(z|x))``, ``decode(z)`` and ``log_px(x, decoded)`` can be evaluated.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bnaf.core.stats import LOG_2PI

__all__ = ["negative_elbo", "importance_nll"]


@torch.no_grad()
def negative_elbo(
    model: nn.Module, data: Tensor, batch_size: int = 100, beta: float = 1.0
) -> Tensor:
    r"""Single-sample ``-ELBO`` (Eq. 12, KL weighted by ``beta``) of every row of ``data``."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, data.shape[0], batch_size):
        log_px, kl = model.terms(data[start : start + batch_size])
        out.append(-log_px + beta * kl)
    model.train(was_training)
    return torch.cat(out)


def _repeat(t: Tensor | None, s: int) -> Tensor | None:
    """Each datapoint's row repeated ``s`` times, matching ``eps.view(n * s, d)``."""
    return None if t is None else t.repeat_interleave(s, dim=0)


@torch.no_grad()
def importance_nll(
    model: nn.Module, data: Tensor, samples: int = 5000, chunk: int = 1000
) -> Tensor:
    r"""``-log p(x)`` of every row of ``data`` by importance sampling with ``samples`` draws.

    Arguments:
        model: see the module docstring.
        data: images ``(n, ...)``.
        samples: ``S``, importance samples per datapoint (5000; 2000 for Caltech).
        chunk: latent samples decoded at once (the Sylvester code's ``MB``).
    """
    if samples < 1 or chunk < 1:
        raise ValueError("samples and chunk must be >= 1")
    was_training = model.training
    model.eval()
    per_pass = min(samples, chunk)
    points = max(1, chunk // per_pass)
    out = []
    for start in range(0, data.shape[0], points):
        x = data[start : start + points]
        n = x.shape[0]
        mu, var, theta = model.encode(x)
        running = torch.full((n,), -math.inf, dtype=mu.dtype, device=mu.device)
        done = 0
        while done < samples:
            s = min(per_pass, samples - done)
            eps = torch.randn(n, s, mu.shape[-1], dtype=mu.dtype, device=mu.device)

            z, log_q = model.posterior(
                _repeat(mu, s), _repeat(var, s), _repeat(theta, s), eps.view(n * s, -1)
            )
            log_pz = -0.5 * (z.square() + LOG_2PI).sum(-1)
            log_w = model.log_px(_repeat(x, s), model.decode(z)) + log_pz - log_q
            both = torch.stack([running, torch.logsumexp(log_w.view(n, s), dim=1)])
            running = torch.logsumexp(both, dim=0)
            done += s
        out.append(-(running - math.log(samples)))
    model.train(was_training)
    return torch.cat(out)
