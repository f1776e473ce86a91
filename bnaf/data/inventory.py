r"""``python -m bnaf data inventory``: the supplied files each dataset's download depends on, for DVC.

``python -m bnaf data inventory [--params data.yaml] --out data/inventory.json`` writes, for
every dataset of the params, the files its next download depends on
(:func:`bnaf.data.recheck.inventory`): for a dataset not found yet, those of the places its
status looked in that hold a file now; for a found one, the files it was found with.

DVC cannot watch a mirror folder named in the params or in ``$BNAF_MIRROR`` (it may lie outside
the repository). So ``dvc.yaml`` runs this stage on every ``dvc repro`` (``always_changed``;
it only reads the status files) and its ``data`` stage depends on the file written: the data
stage re-runs when a file appears where a first offline run looked, and not otherwise (DVC
re-runs a stage when a dependency's content changed, not when the stage that wrote it ran).
Snakemake makes the same check itself, through the same function, at every run.
"""

from __future__ import annotations

import argparse

from bnaf.core.io import atomic_write_json
from bnaf.data.params import load_data_params
from bnaf.data.recheck import STATUS, inventory

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", help="params/<budget>/data.yaml (its datasets)")
    parser.add_argument("--out", required=True, help="the JSON to write (data/inventory.json)")
    parser.add_argument(
        "--status", default=STATUS, help=f"each dataset's status file (default {STATUS})"
    )


def run(args: argparse.Namespace) -> int:
    params = load_data_params(args.params)
    found = inventory(params.datasets, status=args.status)
    atomic_write_json(args.out, {"datasets": found})
    for name, paths in found.items():
        print(f"{name}: {', '.join(paths) if paths else '-'}")
    return 0
