r"""Shared drawing for Figures 2-3: a grid of density panels, right way up.

Every panel is ``imshow(density.T, origin="lower", extent=...)``: the arrays are indexed
``[i, j]`` = at ``(x1 = c[i], x2 = c[j])``, so the transpose puts ``x2`` on the rows and
``origin="lower"`` puts large ``x2`` at the top (the authors' plots are drawn flipped).
"""

from __future__ import annotations

import zipfile
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
        try:  # never with pickles: an object array is refused, not run
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise BnafError(f"{p}: not a readable grid file ({type(exc).__name__})") from None
        grids[_check_grid(p, arrays)] = arrays
    return grids


def _check_grid(path: str, a: dict[str, np.ndarray]) -> tuple[str, str]:
    r"""The ``(target, model)`` of a grid file holding what the figures draw: ``centres``
    (n,) and ``log_density`` (n, n) (and ``log_target`` alike, when there), or one error line."""
    missing = [k for k in ("centres", "log_density", "target", "model") if k not in a]
    if missing:
        raise BnafError(f"{path}: a grid file without {', '.join(missing)}")
    n = a["centres"].shape[0] if a["centres"].ndim == 1 else -1
    for key in ("log_density", "log_target"):
        if key in a and (n < 2 or a[key].shape != (n, n)):
            shape = a[key].shape
            raise BnafError(f"{path}: {key} of shape {shape} for {a['centres'].shape} centres")
    return str(a["target"]), str(a["model"])


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
