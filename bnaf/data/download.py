r"""Fetch dataset files once, verified by checksum, from a cache, a local mirror or the network.

A dataset is a :class:`DatasetSpec` naming one or more :class:`RemoteFile`\ s. Each remote file
has a name (its path under ``raw_dir``, e.g. ``maf/data.tar.gz``), its URLs and its checksum
(``"md5:<hex>"`` or ``"sha256:<hex>"``). When the file is an archive, ``members`` lists the paths
inside it that the dataset needs; they are extracted to ``raw_dir/<member>``.

Sources are tried in this order, each verified before use:

1. ``raw_dir/<name>`` with its marker ``raw_dir/<name>.verified`` (the checksum it passed):
   a verified copy is never downloaded again;
2. ``raw_dir/<name>`` without a marker (a file the user put there by hand);
3. each mirror folder, as ``<mirror>/<name>``, ``<mirror>/<basename>`` or a ``mirror_names``
   alternative; for an archive, also its members already extracted (``<mirror>/<member>``), when
   every member has a checksum (``member_checksums`` or an override);
4. each URL, downloaded to ``<name>.part`` (resumed with an HTTP Range request when the server
   allows it, retried), renamed into place only after the checksum matched.

A file that fails its checksum, or an archive that cannot be read to its end, is renamed
``<name>.corrupt`` and never used. When no source has the file, :class:`DataUnavailable` says
which file, which URLs and where to put it; :func:`write_status` turns that into the JSON status
file of the pipeline's ``download`` checkpoint.

Checksum overrides (``overrides={"maf/data.tar.gz": "md5:..."}``) exist for tests that supply
their own small archives; whichever checksum was used is reported as ``checksum_source``
(``"official"`` or ``"override"``) in the result and the status file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bnaf.errors import BnafError
from bnaf.io import atomic_path, atomic_write_json

__all__ = [
    "RemoteFile",
    "DatasetSpec",
    "Fetched",
    "DataUnavailable",
    "ChecksumError",
    "fetch",
    "file_digest",
    "write_status",
]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    r"""One file of a dataset as published.

    Arguments:
        name: path under ``raw_dir`` where the verified copy lives (``"maf/data.tar.gz"``).
        urls: where it is published, tried in order.
        checksum: ``"md5:<hex>"`` or ``"sha256:<hex>"`` of the published file.
        members: for an archive, the member paths the dataset needs, relative to the archive's
            top folder (``"power/data.npy"``; ``data/power/data.npy`` and ``./...`` also match).
        member_checksums: optional checksums of extracted members, so a mirror may hold the
            extracted files instead of the archive.
        mirror_names: further paths under a mirror folder where the file may be found.
    """

    name: str
    urls: tuple[str, ...]
    checksum: str
    members: tuple[str, ...] = ()
    member_checksums: Mapping[str, str] = field(default_factory=dict)
    mirror_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    r"""A registered dataset: its files, how to prepare it and where it comes from.

    Arguments:
        name: registry key, also the CLI argument and the ``{name}`` Snakemake wildcard.
        files: the remote files to fetch.
        prepare: ``prepare(raw_dir) -> Prepared`` (see :mod:`bnaf.data.store`), pure given the
            files laid out under ``raw_dir`` as in the source.
        family: experiment family (``"uci"``, ``"images"``).
        source: one line naming the publication / record the files come from.
        recipe_version: bumped whenever ``prepare`` changes its output.
    """

    name: str
    files: tuple[RemoteFile, ...]
    prepare: Callable[[Path], Any]
    family: str
    source: str
    recipe_version: str = "1"


@dataclass(frozen=True)
class Fetched:
    """What :func:`fetch` produced: the local paths and how each was obtained."""

    dataset: str
    paths: dict[str, Path]  # member or file name -> local path
    sources: dict[str, str]  # file name -> "cache" | "raw_dir" | "mirror:<path>" | "url:<url>"
    checksums: dict[str, str]  # file name -> checksum verified
    checksum_source: dict[str, str]  # file name -> "official" | "override"


class DataUnavailable(BnafError):
    """No source has the file: the pipeline marks the dataset "not run" with this reason."""

    def __init__(self, message: str, how_to_supply: str) -> None:
        super().__init__(f"{message}. {how_to_supply}")
        self.reason = message
        self.how_to_supply = how_to_supply


class ChecksumError(BnafError):
    """A file (or archive) failed verification; it was moved aside as ``*.corrupt``."""


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of ``path`` read in chunks (files can be several GB)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _split(checksum: str) -> tuple[str, str]:
    algo, _, value = checksum.partition(":")
    if algo not in ("md5", "sha1", "sha256") or not value:
        raise BnafError(f"bad checksum {checksum!r}: expected 'md5:<hex>' or 'sha256:<hex>'")
    return algo, value.lower()


def _matches(path: Path, checksum: str) -> tuple[bool, str]:
    algo, value = _split(checksum)
    got = file_digest(path, algo)
    return got == value, f"{algo}:{got}"


def _move_aside(path: Path) -> Path:
    bad = path.with_name(path.name.removesuffix(".part") + ".corrupt")
    path.replace(bad)
    return bad


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise jobs fetching the same file (five UCI datasets share one archive)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _marked(path: Path, checksum: str) -> bool:
    m = _marker(path)
    if not (path.is_file() and m.is_file()):
        return False
    try:
        info = json.loads(m.read_text())
    except ValueError:
        return False
    return info.get("checksum") == checksum and info.get("size") == path.stat().st_size


def _mark(path: Path, checksum: str, source: str) -> None:
    info = {"checksum": checksum, "size": path.stat().st_size, "source": source}
    atomic_write_json(_marker(path), info)


def _http_to(url: str, part: Path, timeout: float) -> None:
    """Download ``url`` into ``part``, resuming from its current size when the server allows."""
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "bnaf-reproduction/1"}
    if start:
        headers["Range"] = f"bytes={start}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # our partial file is already whole (or bad): restart
            part.unlink()
            return _http_to(url, part, timeout)
        raise
    with resp, open(part, "ab" if start and resp.status == 206 else "wb") as out:
        shutil.copyfileobj(resp, out, _CHUNK)
        # read(amt) returns b"" at a premature end instead of raising: compare with the header
        expected, got = (
            resp.headers.get("Content-Length"),
            out.tell() - (start if resp.status == 206 else 0),
        )
        if expected is not None and got < int(expected):
            raise http.client.IncompleteRead(b"", int(expected) - got)


def _download(url: str, dest: Path, retries: int, timeout: float, log: list[str]) -> bool:
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, retries + 2):
        try:
            _http_to(url, part, timeout)
            return True
        except urllib.error.HTTPError as exc:  # 404 and friends: retrying will not help
            log.append(f"{url}: HTTP {exc.code} {exc.reason}")
            return False
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            error = f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}"
            if attempt <= retries:
                time.sleep(min(2.0 ** (attempt - 1), 30.0) * 0.5)
    log.append(f"{url}: {error} ({attempt} attempt{'s' if attempt > 1 else ''})")
    return False


def _copy_verified(src: Path, dest: Path, checksum: str) -> tuple[bool, str]:
    """Copy ``src`` to ``dest`` atomically, hashing on the way; keep it only if it matches."""
    algo, value = _split(checksum)
    h = hashlib.new(algo)
    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(part, "wb") as fout:
        for block in iter(lambda: fin.read(_CHUNK), b""):
            h.update(block)
            fout.write(block)
    if h.hexdigest() != value:
        _move_aside(part)
        return False, f"{algo}:{h.hexdigest()}"
    part.replace(dest)
    return True, checksum


def _member_key(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def _find_member(names: Sequence[str], member: str) -> str | None:
    for n in names:
        key = _member_key(n)
        if key == member:
            return n
        head, _, rest = key.partition("/")
        if rest == member and head:  # one top-level folder such as "data/"
            return n
    return None


def _extract(archive: Path, spec: RemoteFile, raw_dir: Path, checksum: str) -> dict[str, Path]:
    """Extract ``spec.members`` from a tar archive, reading it to its end to catch truncation."""
    wanted = {m: raw_dir / m for m in spec.members}
    todo = {m: p for m, p in wanted.items() if not _marked(p, f"{spec.name}@{checksum}")}
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
                        if info.isfile() and _find_member([info.name], m):
                            tmps[m] = stack.enter_context(atomic_path(todo[m]))
                            with tar.extractfile(info) as fin, open(tmps[m], "wb") as fout:
                                shutil.copyfileobj(fin, fout, _CHUNK)
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            for t in tmps.values():
                t.unlink(missing_ok=True)
            bad = _move_aside(archive)
            _marker(archive).unlink(missing_ok=True)
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
        _mark(todo[m], f"{spec.name}@{checksum}", f"extracted from {archive.name}")
    return wanted


def _from_extracted_mirror(
    spec: RemoteFile, raw_dir: Path, mirrors: Sequence[Path], overrides: Mapping[str, str]
) -> dict[str, Path] | None:
    """The archive's members already extracted in a mirror, each with a known checksum."""
    sums = {m: overrides.get(m, spec.member_checksums.get(m)) for m in spec.members}
    if not spec.members or any(v is None for v in sums.values()):
        return None
    for mirror in mirrors:
        for top in ("", "data/"):
            srcs = {m: mirror / f"{top}{m}" for m in spec.members}
            if not all(p.is_file() for p in srcs.values()):
                continue
            out = {}
            for m, src in srcs.items():
                dest = raw_dir / m
                if not _marked(dest, sums[m]):
                    ok, got = _copy_verified(src, dest, sums[m])
                    if not ok:
                        raise ChecksumError(
                            f"{src}: checksum {got} != expected {sums[m]}; not used "
                            f"(the copy was moved aside to {dest.name}.corrupt)"
                        )
                    _mark(dest, sums[m], f"mirror:{src}")
                out[m] = dest
            return out
    return None


def _fetch_file(
    dataset: str,
    spec: RemoteFile,
    raw_dir: Path,
    mirrors: Sequence[Path],
    overrides: Mapping[str, str],
    retries: int,
    timeout: float,
    urls: Sequence[str],
) -> tuple[dict[str, Path], str, str, str]:
    checksum = overrides.get(spec.name, spec.checksum)
    origin = "override" if checksum != spec.checksum else "official"
    dest = raw_dir / spec.name
    log: list[str] = []
    bad: list[str] = []
    with _locked(dest):
        source = None
        if _marked(dest, checksum):
            source = "cache"
        elif dest.is_file():
            ok, got = _matches(dest, checksum)
            if ok:
                source = "raw_dir"
            else:
                bad.append(f"{dest} has {got}, moved aside to {_move_aside(dest).name}")
        if source is None:
            names = (spec.name, Path(spec.name).name, *spec.mirror_names)
            for mirror in mirrors:
                if source is not None:
                    break
                if not mirror.is_dir():
                    log.append(f"mirror {mirror}: no such folder")
                    continue
                for src in dict.fromkeys(mirror / n for n in names):
                    if source is None and src.is_file():
                        ok, got = _copy_verified(src, dest, checksum)
                        if ok:
                            source = f"mirror:{src}"
                        else:
                            bad.append(f"{src} has {got}")
                if source is None and spec.members:
                    extracted = _from_extracted_mirror(spec, raw_dir, [mirror], overrides)
                    if extracted is not None:
                        sums = ", ".join(
                            f"{m}={overrides.get(m, spec.member_checksums.get(m))}"
                            for m in spec.members
                        )
                        origin = (
                            "override" if any(m in overrides for m in spec.members) else "official"
                        )
                        return extracted, f"mirror:{mirror} (extracted)", sums, origin
                if source is None:
                    log.append(f"not in mirror {mirror}")
        if source is None:
            for url in urls:
                if _download(url, dest, retries, timeout, log):
                    part = dest.with_name(dest.name + ".part")
                    ok, got = _matches(part, checksum)
                    if ok:
                        part.replace(dest)
                        source = f"url:{url}"
                        break
                    bad.append(f"{url} gave {got}, moved aside to {_move_aside(part).name}")
        if source is None:
            expected = f"{spec.name} ({checksum})"
            if bad:
                raise ChecksumError(
                    f"dataset '{dataset}': no verified copy of {expected}: "
                    + "; ".join(bad)
                    + " — a damaged file is never used; delete it and fetch it again"
                )
            where = " or ".join(str(m / Path(spec.name).name) for m in mirrors)
            raise DataUnavailable(
                f"dataset '{dataset}': no copy of {expected} could be had: "
                + ("; ".join(log) if log else "no mirror and no URL"),
                f"Download {urls[0] if urls else Path(spec.name).name} and put it at "
                f"{dest}"
                + (f" or {where}" if where else "")
                + " (or name a folder holding it with --mirror, $BNAF_MIRROR or the params' "
                "'mirror'), then run the download again",
            )
        if source != "cache":
            _mark(dest, checksum, source)
        # Extract under the lock too: a damaged archive is moved aside while others wait.
        paths = _extract(dest, spec, raw_dir, checksum) if spec.members else {spec.name: dest}
    return paths, source, checksum, origin


def fetch(
    spec: DatasetSpec,
    raw_dir: str | Path,
    mirror: str | Path | Sequence[str | Path] | None = None,
    overrides: Mapping[str, str] | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    urls: Mapping[str, Sequence[str]] | None = None,
) -> Fetched:
    r"""Make every file of ``spec`` present and verified under ``raw_dir``.

    Arguments:
        spec: the dataset (see :func:`bnaf.data.registry.get`).
        raw_dir: where verified copies and extracted members live.
        mirror: one folder or several, tried before the network.
        overrides: checksum per file name or member, replacing the official one (tests).
        retries: further attempts per URL after a network failure.
        timeout: seconds per network operation.
        urls: URLs per file name replacing the published ones (an institutional HTTP mirror;
            tests point them at a local server).

    Returns:
        :class:`Fetched` with ``paths[member or file name] -> local path``.

    Raises:
        DataUnavailable: no source has a file (the message says what to put where).
        ChecksumError: a file failed verification or an archive is truncated (moved aside).
    """
    raw_dir = Path(raw_dir)
    if mirror is None:
        mirrors: list[Path] = []
    elif isinstance(mirror, str | Path):
        mirrors = [Path(mirror)]
    else:
        mirrors = [Path(m) for m in mirror]
    overrides = dict(overrides or {})
    urls = dict(urls or {})
    paths, sources, sums, origin = {}, {}, {}, {}
    for f in spec.files:
        got, sources[f.name], sums[f.name], origin[f.name] = _fetch_file(
            spec.name, f, raw_dir, mirrors, overrides, retries, timeout, urls.get(f.name, f.urls)
        )
        paths.update(got)
    return Fetched(spec.name, paths, sources, sums, origin)


def write_status(
    path: str | Path,
    spec: DatasetSpec,
    fetched: Fetched | None = None,
    error: DataUnavailable | None = None,
) -> dict[str, Any]:
    """Write the ``download`` checkpoint's status JSON (available or not, and why)."""
    status: dict[str, Any] = {
        "dataset": spec.name,
        "available": fetched is not None,
        "reason": "" if error is None else error.reason,
        "how_to_supply": "" if error is None else error.how_to_supply,
        "source": spec.source,
        "files": [
            {"name": f.name, "urls": list(f.urls), "checksum": f.checksum} for f in spec.files
        ],
    }
    if fetched is not None:
        status["paths"] = {k: str(v) for k, v in sorted(fetched.paths.items())}
        status["obtained_from"] = fetched.sources
        status["verified_checksums"] = fetched.checksums
        status["checksum_source"] = fetched.checksum_source
    atomic_write_json(path, status)
    return status
