r"""``python -m bnaf data download``: fetch and verify one registered dataset into ``data/raw/``.

``python -m bnaf data download NAME [--params data.yaml] [--mirror DIR] [--raw-dir DIR]``
fails with one clear line (exit 2) when the data cannot be had. With ``--status PATH`` it
always writes the pipeline's status JSON and exits 0 when the data is merely unobtainable,
so the ``download`` checkpoint can mark the dataset "not run" with its reason; a damaged file
(checksum mismatch, truncated archive) is still an error.

Mirror folders are tried in this order: ``--mirror`` (repeatable), ``$BNAF_MIRROR``
(``os.pathsep``-separated), the params' ``mirror``.

A status is re-checked by the next run of the pipeline (:mod:`bnaf.data.recheck`, read by the
``data_download`` checkpoint and by DVC's ``inventory`` stage): a file missing everywhere is
looked for again as soon as one of the paths the status lists appears, and a network failure is
retried on the next ``snakemake`` run. A dataset that was found is not looked at again.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bnaf.data.fetch import DataUnavailable, write_status
from bnaf.data.params import DataParams, load_data_params
from bnaf.data.registry import fetch, get

__all__ = ["add_arguments", "mirrors", "run"]


def mirrors(cli: list[str] | None, params: DataParams) -> list[Path]:
    """Mirror folders in order of precedence: CLI, then $BNAF_MIRROR, then params."""
    out = [Path(m) for m in cli or []]
    out += [Path(m) for m in os.environ.get("BNAF_MIRROR", "").split(os.pathsep) if m]
    if params.mirror:
        out.append(Path(params.mirror))
    return list(dict.fromkeys(out))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="registered dataset name (e.g. power, gas, ...)")
    parser.add_argument("--params", help="params/<budget>/data.yaml (raw_dir, mirror, retries)")
    parser.add_argument("--raw-dir", help="where verified raw files live (default: params)")
    parser.add_argument(
        "--mirror", action="append", help="a folder holding the files offline (repeatable)"
    )
    parser.add_argument("--status", help="write the availability JSON here; exit 0 if absent")
    parser.add_argument(
        "--retry", default="", help="the pipeline's retry token, kept in the status (watch)"
    )
    parser.add_argument(
        "--watched", nargs="*", default=[], help="the pipeline's watched inputs, kept likewise"
    )


def run(args: argparse.Namespace) -> int:
    params = load_data_params(args.params)
    spec = get(args.name)
    raw_dir = Path(args.raw_dir or params.raw_dir)
    if args.status:
        Path(args.status).unlink(missing_ok=True)  # a failed run must not leave an old status
    try:
        fetched = fetch(
            spec.name,
            raw_dir,
            mirror=mirrors(args.mirror, params),
            overrides=params.checksums,
            retries=params.retries,
            timeout=params.timeout_s,
            urls=params.urls,
        )
    except DataUnavailable as exc:
        if not args.status:
            raise
        write_status(args.status, spec, error=exc, retry=args.retry, watched=args.watched)
        print(f"not available: {exc}", file=sys.stderr)
        return 0
    if args.status:
        write_status(args.status, spec, fetched, retry=args.retry, watched=args.watched)
    for member, path in sorted(fetched.paths.items()):
        print(f"{spec.name}: {member} -> {path}")
    for name, source in fetched.sources.items():
        how = fetched.checksum_source[name]
        print(f"{spec.name}: {name} from {source}, {fetched.checksums[name]} ({how})")
    return 0
