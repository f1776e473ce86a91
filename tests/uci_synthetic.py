"""Tiny synthetic prepared files (the format of data/prepared/<name>.h5) for the UCI tests."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

__all__ = ["write_prepared"]


def write_prepared(
    path: Path, dim: int = 3, sizes: tuple[int, int, int] = (600, 200, 200), seed: int = 0
) -> Path:
    """float32 ``train``/``validation``/``test`` from one non-Gaussian distribution."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, n in zip(("train", "validation", "test"), sizes):
            z = rng.normal(size=(n, dim))
            x = np.tanh(z @ mixing) * 2.0 + 0.2 * z**2
            f.create_dataset(name, data=x.astype(np.float32))
    return path
