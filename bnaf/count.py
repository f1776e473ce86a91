r"""Parameter counting (Table 1, bottom rows; Section 5.3)."""

from __future__ import annotations

import argparse
from typing import Literal

from torch import nn

from bnaf.flow import MaskedBlockLinear

__all__ = ["count_parameters", "add_arguments", "run"]

Convention = Literal["paper", "full"]


def count_parameters(model: nn.Module, convention: Convention = "paper") -> int:
    r"""Number of trainable entries of ``model``.

    Arguments:
        model: any module; B-NAF layers are recognised by type.
        convention: ``"paper"`` leaves out the structurally zero blocks above the block
            diagonal of every :class:`~bnaf.flow.MaskedBlockLinear` (how the paper's ratios
            were computed); ``"full"`` counts every stored entry.
    """
    if convention not in ("paper", "full"):
        raise ValueError(f"unknown convention {convention!r}; expected 'paper' or 'full'")
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if convention == "paper":
        total -= sum(
            m.structural_zeros for m in model.modules() if isinstance(m, MaskedBlockLinear)
        )
    return total


def add_arguments(parser: argparse.ArgumentParser) -> None:
    raise NotImplementedError


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError
