r"""``python -m bnaf data prepare``: turn a dataset's verified raw files into ``data/prepared/<name>.h5``.

``python -m bnaf data prepare NAME --raw-dir DIR --out PATH.h5 [--status STATUS.json]`` reads the
files laid out as in the source (``DIR/power/data.npy``, ``DIR/gas/ethylene_CO.pickle``, ...),
runs the registered recipe and writes the splits with their provenance: source, checksum of
the archive (from the status file), SHA-256 of every raw file read, and the recipe version.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bnaf.data.fetch import file_digest
from bnaf.data.status import read_status
from bnaf.data.registry import get
from bnaf.data.store import Chunked, write_prepared
from bnaf.data.params import load_data_params
from bnaf.core.errors import BnafError

__all__ = ["add_arguments", "run", "prepare"]


def prepare(name: str, raw_dir: Path, out: Path, status: dict | None = None) -> dict:
    """Prepare dataset ``name`` from ``raw_dir`` into ``out``; returns the split shapes."""
    spec = get(name)
    if status is not None and not status.get("available", False):
        raise BnafError(
            f"dataset '{name}' is not available: {status.get('reason', '?')}. "
            f"{status.get('how_to_supply', '')}".strip()
        )
    members = [m for f in spec.files for m in (f.members or (f.name,))]
    for m in members:
        if not (raw_dir / m).is_file():
            raise BnafError(f"raw file not found: {raw_dir / m} (run the 'download' stage first)")
    prepared = spec.prepare(raw_dir)
    attrs = {
        "dataset": name,
        "source": spec.source,
        "urls": [u for f in spec.files for u in f.urls],
        "recipe_version": spec.recipe_version,
        "raw_sha256": {m: file_digest(raw_dir / m, "sha256") for m in members},
        "archive_checksum": (status or {}).get("verified_checksums")
        or {f.name: f.checksum for f in spec.files},
        "checksum_source": (status or {}).get("checksum_source")
        or {f.name: "unverified (no status file given)" for f in spec.files},
    }
    write_prepared(out, prepared, attrs)
    return {
        k: (list(v.shape), str(v.dtype if isinstance(v, Chunked) else v.dtype))
        for k, v in prepared.splits.items()
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="registered dataset name")
    parser.add_argument("--params", help="params/<budget>/data.yaml (default raw_dir)")
    parser.add_argument("--raw-dir", help="folder holding the raw files (default: params)")
    parser.add_argument("--out", required=True, help="prepared HDF5 file to write")
    parser.add_argument("--status", help="the download stage's status JSON (must be available)")


def run(args: argparse.Namespace) -> int:
    params = load_data_params(args.params)
    raw_dir = Path(args.raw_dir or params.raw_dir)
    status = None
    if args.status:
        if not Path(args.status).is_file():
            raise BnafError(f"status file not found: {args.status} (run 'download' first)")
        status = read_status(args.status, args.name)
    shapes = prepare(args.name, raw_dir, Path(args.out), status)
    for split, (shape, dtype) in shapes.items():
        print(f"{args.name}: {split} {tuple(shape)} {dtype}")
    print(f"wrote {args.out}")
    return 0
