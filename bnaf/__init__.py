r"""Block Neural Autoregressive Flow (De Cao, Titov and Aziz, UAI 2019): a reference
reproduction.

The names below are imported on first use, so ``import bnaf.uci.runs`` (the Snakemake rule
files) or ``python -m bnaf uci count`` do not import the flows they do not need.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BNAF",
    "AmortisedBNAF",
    "BNAFDistribution",
    "BNAFTransform",
    "BlockFlow",
    "ConditionalBNAF",
    "FlowConfig",
    "LeakyReLU",
    "MaskedBlockLinear",
    "Permutation",
    "Tanh",
    "count_parameters",
    "load_flow",
    "save_flow",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("bnaf.flows"), name)
    raise AttributeError(f"module 'bnaf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
