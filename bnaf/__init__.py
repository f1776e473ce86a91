r"""Block Neural Autoregressive Flow (De Cao, Titov and Aziz, UAI 2019): a reference
reproduction."""

from bnaf.flows import (
    BNAF,
    BlockFlow,
    LeakyReLU,
    MaskedBlockLinear,
    Permutation,
    Tanh,
    count_parameters,
    load_flow,
    save_flow,
)

__all__ = [
    "BNAF",
    "BlockFlow",
    "LeakyReLU",
    "MaskedBlockLinear",
    "Permutation",
    "Tanh",
    "count_parameters",
    "load_flow",
    "save_flow",
]

__version__ = "0.1.0"
