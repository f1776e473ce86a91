r"""Flows: B-NAF (its layers, log-Jacobian, inverse and sampling), the amortised B-NAF of
Section 5.4, and the baselines the paper compares with (NAF-DDSF, Glow, planar flows).

Layers, bottom up: ``logjac`` -> ``layers`` -> ``inverse`` -> ``sampling`` | ``implicit``
(the inverse's gradients) | ``amortised_inverse`` -> ``model`` | ``amortised`` ->
``transform`` (the ``torch.distributions`` face) | ``conditional``; ``config`` (the one
:class:`FlowConfig`) and ``count`` beside them. The inverse and the sampler are functions over
a stack, so nothing imports upwards.
"""

from bnaf.flows.amortised import AmortisedBNAF
from bnaf.flows.conditional import ConditionalBNAF
from bnaf.flows.config import FlowConfig
from bnaf.flows.count import count_parameters
from bnaf.flows.layers import (
    ACTIVATIONS,
    BlockFlow,
    LeakyReLU,
    MaskedBlockLinear,
    Permutation,
    Tanh,
    build_stack,
)
from bnaf.flows.model import BNAF, load_flow, load_flow_meta, save_flow
from bnaf.flows.transform import BNAFDistribution, BNAFTransform

__all__ = [
    "ACTIVATIONS",
    "AmortisedBNAF",
    "BNAF",
    "BNAFDistribution",
    "BNAFTransform",
    "BlockFlow",
    "ConditionalBNAF",
    "FlowConfig",
    "LeakyReLU",
    "MaskedBlockLinear",
    "Permutation",
    "Tanh",
    "build_stack",
    "count_parameters",
    "load_flow",
    "load_flow_meta",
    "save_flow",
]
