r"""Parameter counting in the paper's convention and in full (Table 1, bottom rows;
Section 5.3), for B-NAF and for the NAF-DDSF it is compared with."""

from __future__ import annotations

from typing import Literal

from torch import nn

from bnaf.flows.layers import MaskedBlockLinear
from bnaf.flows.model import BNAF
from bnaf.flows.naf import naf_for_dataset

__all__ = ["Convention", "bnaf_counts", "count_parameters", "naf_counts"]

Convention = Literal["paper", "full"]


def count_parameters(model: nn.Module, convention: Convention = "paper") -> int:
    r"""Number of trainable entries of ``model``.

    Arguments:
        model: any module; B-NAF layers are recognised by type.
        convention: ``"paper"`` leaves out the structurally zero blocks above the block
            diagonal of every :class:`~bnaf.flows.layers.MaskedBlockLinear` (how the paper's ratios
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


def bnaf_counts(dim: int, layers: int, hidden_factor: int, flows: int = 5) -> dict[str, int]:
    r"""Parameters of the B-NAF of Section 5.3 (gated residuals, none on the last flow),
    in both conventions."""
    model = BNAF(dim, flows=flows, layers=layers, hidden_factor=hidden_factor)
    return {c: count_parameters(model, c) for c in ("paper", "full")}


def naf_counts(dataset: str) -> dict[str, int]:
    r"""Parameters of the NAF-DDSF for ``dataset`` with 5 and 10 flows, every stored entry
    counted (built on the ``meta`` device: shapes only, nothing allocated)."""
    return {
        str(f): count_parameters(naf_for_dataset(dataset, f, device="meta"), "full")
        for f in (5, 10)
    }
