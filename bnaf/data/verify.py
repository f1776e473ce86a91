r"""Checksums, verified markers and moving damaged files aside (the dataset download's core).

A verified file ``F`` has a marker ``F.verified`` holding the checksum it passed and its size,
so it is never fetched or hashed again; a file that fails is renamed ``F.corrupt``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from bnaf.core.errors import BnafError
from bnaf.core.io import atomic_write_json

__all__ = [
    "CHUNK",
    "ChecksumError",
    "file_digest",
    "parse_checksum",
    "matches",
    "move_aside",
    "locked",
    "marker",
    "marked",
    "mark",
    "copy_verified",
    "first_source",
    "from_extracted_mirror",
]

CHUNK = 1 << 20


class ChecksumError(BnafError):
    """A file (or archive) failed verification; it was moved aside as ``*.corrupt``."""


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of ``path`` read in chunks (files can be several GB)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def parse_checksum(checksum: str) -> tuple[str, str]:
    algo, _, value = checksum.partition(":")
    if algo not in ("md5", "sha1", "sha256") or not value:
        raise BnafError(f"bad checksum {checksum!r}: expected 'md5:<hex>' or 'sha256:<hex>'")
    return algo, value.lower()


def matches(path: Path, checksum: str) -> tuple[bool, str]:
    algo, value = parse_checksum(checksum)
    got = file_digest(path, algo)
    return got == value, f"{algo}:{got}"


def move_aside(path: Path) -> Path:
    bad = path.with_name(path.name.removesuffix(".part") + ".corrupt")
    path.replace(bad)
    return bad


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise jobs fetching the same file (five UCI datasets share one archive)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def marked(path: Path, checksum: str) -> bool:
    m = marker(path)
    if not (path.is_file() and m.is_file()):
        return False
    try:
        info = json.loads(m.read_text())
    except ValueError:
        return False
    return info.get("checksum") == checksum and info.get("size") == path.stat().st_size


def mark(path: Path, checksum: str, source: str) -> None:
    info = {"checksum": checksum, "size": path.stat().st_size, "source": source}
    atomic_write_json(marker(path), info)


def copy_verified(src: Path, dest: Path, checksum: str) -> tuple[bool, str]:
    """Copy ``src`` to ``dest`` atomically, hashing on the way; keep it only if it matches."""
    algo, value = parse_checksum(checksum)
    h = hashlib.new(algo)
    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(part, "wb") as fout:
        for block in iter(lambda: fin.read(CHUNK), b""):
            h.update(block)
            fout.write(block)
    if h.hexdigest() != value:
        move_aside(part)
        return False, f"{algo}:{h.hexdigest()}"
    part.replace(dest)
    return True, checksum


def first_source(dest: Path) -> str:
    r"""Where a verified copy first came from (its marker says), so that a status written from
    the cache reads the same as the one written when the file arrived: the pipeline compares
    the status by content, and an unchanged one must not re-run the datasets' preparation."""
    try:
        info = json.loads(marker(dest).read_text())
    except (OSError, ValueError):
        return "cache"
    return str(info.get("source", "cache")) if isinstance(info, dict) else "cache"


def from_extracted_mirror(
    members: Sequence[str],
    member_checksums: Mapping[str, str],
    raw_dir: Path,
    mirrors: Sequence[Path],
    overrides: Mapping[str, str],
) -> dict[str, Path] | None:
    """An archive's members already extracted in a mirror, each with a known checksum."""
    sums = {m: overrides.get(m, member_checksums.get(m)) for m in members}
    if not members or any(v is None for v in sums.values()):
        return None
    for mirror in mirrors:
        for top in ("", "data/"):
            srcs = {m: mirror / f"{top}{m}" for m in members}
            if not all(p.is_file() for p in srcs.values()):
                continue
            out = {}
            for m, src in srcs.items():
                dest = raw_dir / m
                if not marked(dest, sums[m]):
                    ok, got = copy_verified(src, dest, sums[m])
                    if not ok:
                        raise ChecksumError(
                            f"{src}: checksum {got} != expected {sums[m]}; not used "
                            f"(the copy was moved aside to {dest.name}.corrupt)"
                        )
                    mark(dest, sums[m], f"mirror:{src}")
                out[m] = dest
            return out
    return None
