r"""Extracting the members a dataset needs from a tar archive, safely and atomically."""

from __future__ import annotations

import contextlib
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path

from bnaf.data.verify import CHUNK, ChecksumError, mark, marked, marker, move_aside
from bnaf.core.errors import BnafError
from bnaf.core.io import atomic_path

__all__ = ["find_member", "extract"]


def _member_key(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def find_member(names: Sequence[str], member: str) -> str | None:
    for n in names:
        key = _member_key(n)
        if key == member:
            return n
        head, _, rest = key.partition("/")
        if rest == member and head:  # one top-level folder such as "data/"
            return n
    return None


def extract(
    archive: Path, name: str, members: Sequence[str], raw_dir: Path, checksum: str
) -> dict[str, Path]:
    """Extract ``members`` from a tar archive, reading it to its end to catch truncation.

    Each member goes to ``raw_dir/<member>`` with a marker naming the archive's ``name`` and
    ``checksum``; an unreadable archive is moved aside (:class:`ChecksumError`).
    """
    wanted = {m: raw_dir / m for m in members}
    todo = {m: p for m, p in wanted.items() if not marked(p, f"{name}@{checksum}")}
    if not todo:
        return wanted
    with contextlib.ExitStack() as stack:
        tmps = {}
        try:
            with tarfile.open(archive, "r:*") as tar:
                seen = []
                for info in tar:  # iterating to the end reads the whole compressed stream
                    seen.append(info.name)
                    for m in todo:
                        if info.isfile() and find_member([info.name], m):
                            tmps[m] = stack.enter_context(atomic_path(todo[m]))
                            with tar.extractfile(info) as fin, open(tmps[m], "wb") as fout:
                                shutil.copyfileobj(fin, fout, CHUNK)
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            for t in tmps.values():
                t.unlink(missing_ok=True)
            bad = move_aside(archive)
            marker(archive).unlink(missing_ok=True)
            raise ChecksumError(
                f"{archive}: cannot read the archive to its end ({type(exc).__name__}: {exc}); "
                f"it is truncated or damaged and was moved aside to {bad.name}"
            ) from exc
        missing = sorted(set(todo) - set(tmps))
        if missing:
            for t in tmps.values():
                t.unlink(missing_ok=True)
            shown = ", ".join(seen[:12]) + (" ..." if len(seen) > 12 else "")
            raise BnafError(
                f"{archive}: archive has no member {', '.join(missing)} "
                f"(looked for '<member>' and '<top folder>/<member>'; it holds: {shown})"
            )
    # every temporary has been renamed into place by atomic_path; now mark them
    for m in todo:
        mark(todo[m], f"{name}@{checksum}", f"extracted from {archive.name}")
    return wanted
