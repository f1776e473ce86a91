r"""Conditional B-NAF: the amortised flow of Section 5.4 with a small context network.

A conditional density ``p(x | c)`` is the B-NAF density whose per-point biases and positive
row and column scales, ``theta = (b, log v1, log v2)`` per layer, are predicted from the
context ``c``, with the masked weights shared by every context (Section 5.4, "Amortizing flow
parameters"). It is :class:`bnaf.flows.amortised.AmortisedBNAF`, the class of the VAE's
posterior, given a context network; in the VAE the encoder plays that part.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from bnaf.flows.amortised import AmortisedBNAF

__all__ = ["ConditionalBNAF"]


class ConditionalBNAF(AmortisedBNAF):
    r"""``p(x | context)``: B-NAF flows whose per-point ``theta`` come from an MLP of the
    context (``context_dim -> context_hidden -> ... -> n_amortised``, ``tanh`` between).

    The network's last layer starts at zero weights and at the ``theta`` of an ordinary
    B-NAF (biases drawn as :class:`~bnaf.flows.layers.MaskedBlockLinear` draws them, unit
    scales), so training starts from an unconditional B-NAF and learns how the context
    moves it. ``model(x, context) -> (z, log|det J|)``, :meth:`log_prob`,
    :meth:`~AmortisedBNAF.inverse` and :meth:`~AmortisedBNAF.sample` take the context
    where :class:`AmortisedBNAF` takes ``theta``.

    Arguments:
        dim: ``d``, the dimension of ``x``.
        context_dim: the dimension of the context.
        flows, layers, hidden_factor: the flow's shape (defaults as :class:`~bnaf.BNAF`).
        context_hidden: units of each hidden layer of the context network.
        context_layers: hidden layers of the context network (0: ``theta`` affine in it).
        options: the other keywords of :class:`~bnaf.BNAF` (``residual``, ``activation``,
            ``permutation``, ``init``, ``final_residual``, ``seed``).

    Example:
        >>> model = ConditionalBNAF(2, 1, flows=2, hidden_factor=4)
        >>> x, c = torch.randn(5, 2), torch.randn(5, 1)
        >>> model.log_prob(x, c).shape
        torch.Size([5])
        >>> model.sample(7, torch.tensor([0.5])).x.shape
        torch.Size([7, 2])
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        *,
        flows: int = 5,
        layers: int = 1,
        hidden_factor: int = 10,
        context_hidden: int = 64,
        context_layers: int = 1,
        **options: Any,
    ):
        if context_dim < 1 or context_hidden < 1 or context_layers < 0:
            raise ValueError("context_dim, context_hidden >= 1 and context_layers >= 0 needed")
        super().__init__(dim, flows=flows, layers=layers, hidden_factor=hidden_factor, **options)
        widths = [context_dim] + [context_hidden] * context_layers
        net: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            net += [nn.Linear(a, b), nn.Tanh()]
        head = nn.Linear(widths[-1], self.n_amortised)
        with torch.no_grad():
            head.weight.zero_()
            head.bias.copy_(self._theta_at_rest())
        self.context_net = nn.Sequential(*net, head)
        self.config.update(
            context_dim=context_dim, context_hidden=context_hidden, context_layers=context_layers
        )

    def _theta_at_rest(self) -> torch.Tensor:
        """Biases as an ordinary masked layer initialises them, ``log v1 = log v2 = 0``."""
        parts = []
        for t in self.transforms:
            for n, m in getattr(t, "sizes", []):
                bound = 1.0 / math.sqrt(n)  # MaskedBlockLinear: 1 / sqrt(d a), n = d a
                parts += [torch.empty(n).uniform_(-bound, bound), torch.zeros(n + m)]
        return torch.cat(parts)
