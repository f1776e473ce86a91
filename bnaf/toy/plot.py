r"""Shared drawing for Figures 2-3: a grid of density panels, right way up.

Every panel is ``imshow(density.T, origin="lower", extent=...)``: the arrays are indexed
``[i, j]`` = at ``(x1 = c[i], x2 = c[j])``, so the transpose puts ``x2`` on the rows and
``origin="lower"`` puts large ``x2`` at the top (the authors' plots are drawn flipped).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bnaf.core.errors import BnafError

__all__ = ["crop", "draw_panels", "read_grids"]


def read_grids(paths: list[str]) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    r"""``(target, model) -> arrays`` of the ``grid.npz`` files written by ``bnaf toy``."""
    grids = {}
    for p in paths:
        if not Path(p).is_file():
            raise BnafError(f"grid file not found: {p}")
        with np.load(p) as z:
            arrays = {k: z[k] for k in z.files}
        grids[(str(arrays["target"]), str(arrays["model"]))] = arrays
    return grids


def crop(centres: np.ndarray, values: np.ndarray, limit: float) -> tuple[np.ndarray, float]:
    r"""The part of a ``[i, j]`` grid inside ``[-limit, limit]^2`` and its half-width."""
    keep = np.abs(centres) <= limit
    step = float(centres[1] - centres[0])
    half = float(np.abs(centres[keep]).max()) + step / 2
    return values[np.ix_(keep, keep)], half


def draw_panels(
    panels: list[list[tuple[np.ndarray, float]]],
    row_labels: list[str],
    col_labels: list[str],
    out: str | Path,
) -> None:
    r"""Draw ``panels[r][c] = (density [i, j], half-width)`` and save a PNG atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bnaf.core.io import atomic_path

    rows, cols = len(panels), len(col_labels)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            density, half = panels[r][c]
            ax.imshow(
                density.T,
                origin="lower",
                extent=(-half, half, -half, half),
                cmap="viridis",
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_labels[c], fontsize=10)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=10)
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
