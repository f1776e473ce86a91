"""The bnaf modules a stage imports, directly or not, as repository paths (the same closure the
checkpoint fingerprints use: :func:`bnaf.core.checkpoint.code_closure`)."""

from __future__ import annotations

from pathlib import Path

from bnaf.core.checkpoint import code_closure

ROOT = Path(__file__).resolve().parents[1]


def closure(*modules: str) -> list[str]:
    return [str(p.resolve().relative_to(ROOT)) for p in code_closure(*modules)]
