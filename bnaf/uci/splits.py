r"""The splits a density-estimation run reads (Section 5.3): a prepared HDF5 file, checked where
it is read, and the fixed training subset of a reduced budget."""

from __future__ import annotations

from pathlib import Path

import torch

from bnaf.core.errors import BnafError

__all__ = ["SPLITS", "load_splits", "subset"]

SPLITS = ("train", "validation", "test")


def load_splits(path: str | Path, dataset: str | None = None) -> dict[str, torch.Tensor]:
    r"""The float32 ``train``/``validation``/``test`` arrays of a prepared HDF5 file, checked:
    the file says it holds ``dataset`` (when given), the splits are non-empty 2-D arrays of one
    width, and every value is finite (a bad value is named by split and row)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise BnafError(f"prepared data file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            missing = [s for s in SPLITS if s not in f]
            if missing:
                raise BnafError(f"{path}: missing dataset(s) {', '.join(missing)}")
            holds = f.attrs.get("dataset")
            out = {s: torch.from_numpy(f[s][...]).float() for s in SPLITS}
    except (OSError, ValueError, TypeError) as exc:
        raise BnafError(f"{path}: not a readable prepared HDF5 file ({exc})") from None
    if dataset is not None and holds is not None and str(holds) != dataset:
        raise BnafError(f"{path}: holds dataset {str(holds)!r}, not {dataset!r}")
    dims = {x.shape[1] if x.ndim == 2 else None for x in out.values()}
    if len(dims) != 1 or None in dims or any(len(x) == 0 for x in out.values()):
        raise BnafError(f"{path}: splits must be non-empty 2-D arrays of one width")
    for split, x in out.items():
        bad = (~torch.isfinite(x)).any(1).nonzero()
        if len(bad):
            raise BnafError(f"{path}: split {split!r} has a non-finite value in row {int(bad[0])}")
    return out


def subset(x: torch.Tensor, size: int | float | None) -> torch.Tensor:
    r"""A fixed random subset (same for every seed and config): an ``int`` is a count (the
    whole split if larger), a ``float`` in (0, 1] a fraction, ``None`` the whole split."""
    if size is None:
        return x
    if isinstance(size, float) and not 0 < size <= 1 or isinstance(size, int) and size < 1:
        raise BnafError(f"train_subset must be a count >= 1 or a fraction in (0, 1], not {size!r}")
    # A count above the split's size means the whole split (a small dataset in a quick budget).
    count = min(size, len(x)) if isinstance(size, int) else max(1, int(round(size * len(x))))
    index = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:count]
    return x[index]
