r"""The one description of a B-NAF stack's structure, shared by every family's params.

Every family (toy, UCI, VAE) holds a ``flow:`` section that loads into :class:`FlowConfig`, and
every stack is built as ``BNAF(dim, **config.kwargs(), seed=seed)`` (or the amortised
``AmortisedBNAF`` with the same keywords), so no family can silently drop an option. A grid
(Section 5.3's ``L x H``, Section 5.4's ``K x H``) replaces some keys per run
(:func:`dataclasses.replace`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from bnaf.core.config import between

__all__ = ["DEFAULTS", "FlowConfig"]

#: the defaults of :class:`bnaf.flows.model.BNAF` (the authors' density-estimation model)
DEFAULTS: dict[str, Any] = dict(
    flows=5,
    layers=1,
    hidden_factor=10,
    residual="gated",
    activation="tanh",
    permutation="flip",
    init="authors",
    final_residual=False,
)


@dataclass(frozen=True)
class FlowConfig:
    r"""The keyword arguments of :class:`bnaf.flows.model.BNAF` after ``dim`` (``seed``, the
    seed of random permutations, is the run's own and given separately).

    Arguments:
        flows: stacked B-NAF flows.
        layers: hidden layers ``L`` per flow (``L = 1`` is ``d -> k d -> d``).
        hidden_factor: ``k``; each hidden layer has ``H = k d`` units.
        residual: ``"none"``, ``"normal"`` or ``"gated"`` (Section 3.1).
        activation: ``"tanh"`` or ``"leakyrelu"``.
        permutation: ``"flip"`` (the authors' code) or ``"random"``.
        init: ``"authors"`` (released code) or ``"paper"`` (Appendix C).
        final_residual: the last flow carries the residual too (the paper's text).
    """

    flows: int = between(1)
    layers: int = between(1)
    hidden_factor: int = between(1)
    residual: Literal["none", "normal", "gated"]
    activation: Literal["tanh", "leakyrelu"]
    permutation: Literal["flip", "random"]
    init: Literal["authors", "paper"]
    final_residual: bool

    @classmethod
    def of(cls, **options: Any) -> FlowConfig:
        r"""A config from keywords, each missing one at :data:`DEFAULTS` (``BNAF``'s defaults);
        an unknown keyword is a ``TypeError`` naming it."""
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown flow option(s) {sorted(unknown)}; expected {list(DEFAULTS)}")
        return cls(**{**DEFAULTS, **options})

    def kwargs(self) -> dict[str, Any]:
        """The fields as keyword arguments of ``BNAF(dim, **kwargs)``."""
        return asdict(self)
