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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bnaf.core.errors import BnafError
from bnaf.core.io import atomic_write_json
from bnaf.data.archive import extract
from bnaf.data.http import download
from bnaf.data.verify import (
    ChecksumError,
    copy_verified,
    file_digest,
    first_source,
    from_extracted_mirror,
    locked,
    mark,
    marked,
    matches,
    move_aside,
)

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
    origins: dict[str, str] = field(default_factory=dict)  # file name -> first source


class DataUnavailable(BnafError):
    r"""No source has the file: the pipeline marks the dataset "not run" with this reason.
    ``looked_for``: the local paths tried (the download re-runs when one appears);
    ``transient``: a URL was tried and failed (the next run tries again)."""

    def __init__(
        self,
        message: str,
        how_to_supply: str,
        looked_for: Sequence[Path] = (),
        transient: bool = False,
    ) -> None:
        super().__init__(f"{message}. {how_to_supply}")
        self.reason = message
        self.how_to_supply = how_to_supply
        self.looked_for = [str(p) for p in looked_for]
        self.transient = transient


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
    looked: list[Path] = [dest]
    tried_urls = False
    with locked(dest):
        source = None
        if marked(dest, checksum):
            source = "cache"
        elif dest.is_file():
            ok, got = matches(dest, checksum)
            if ok:
                source = "raw_dir"
            else:
                bad.append(f"{dest} has {got}, moved aside to {move_aside(dest).name}")
        if source is None:
            names = (spec.name, Path(spec.name).name, *spec.mirror_names)
            for mirror in mirrors:
                if source is not None:
                    break
                if not mirror.is_dir():
                    log.append(f"mirror {mirror}: no such folder")
                    looked += [mirror / Path(spec.name).name]
                    continue
                for src in dict.fromkeys(mirror / n for n in names):
                    looked.append(src)
                    if source is None and src.is_file():
                        ok, got = copy_verified(src, dest, checksum)
                        if ok:
                            source = f"mirror:{src}"
                        else:
                            bad.append(f"{src} has {got}")
                if source is None and spec.members:
                    extracted = from_extracted_mirror(
                        spec.members, spec.member_checksums, raw_dir, [mirror], overrides
                    )
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
                tried_urls = True
                if download(url, dest, retries, timeout, log):
                    part = dest.with_name(dest.name + ".part")
                    ok, got = matches(part, checksum)
                    if ok:
                        part.replace(dest)
                        source = f"url:{url}"
                        break
                    bad.append(f"{url} gave {got}, moved aside to {move_aside(part).name}")
        if source is None:
            expected = f"{spec.name} ({checksum})"
            if bad:
                raise ChecksumError(
                    f"dataset '{dataset}': no verified copy of {expected}: "
                    + "; ".join(bad)
                    + " — a damaged file is never used; delete it and fetch it again"
                )
            where = " or ".join(str(m / Path(spec.name).name) for m in mirrors)
            # One text per file, the same for every dataset it blocks (the report groups by it).
            raise DataUnavailable(
                f"dataset '{dataset}': no copy of {expected} could be had: "
                + ("; ".join(log) if log else "no mirror and no URL"),
                f"Download {urls[0] if urls else Path(spec.name).name} and put it at "
                f"{dest}"
                + (f" or {where}" if where else "")
                + "; the next run of the same command (snakemake or dvc repro) uses it",
                looked_for=list(dict.fromkeys(looked)),
                transient=tried_urls,
            )
        if source != "cache":
            mark(dest, checksum, source)
        # Extract under the lock too: a damaged archive is moved aside while others wait.
        paths = (
            extract(dest, spec.name, spec.members, raw_dir, checksum)
            if spec.members
            else {spec.name: dest}
        )
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
    first = {n: first_source(raw_dir / n) if s == "cache" else s for n, s in sources.items()}
    return Fetched(spec.name, paths, sources, sums, origin, first)


def write_status(
    path: str | Path,
    spec: DatasetSpec,
    fetched: Fetched | None = None,
    error: DataUnavailable | None = None,
    retry: str = "",
    watched: Sequence[str] = (),
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
        # What the pipeline re-checks (bnaf.data.recheck: watch, retry_token, inventory)
        "looked_for": [] if error is None else error.looked_for,
        "transient": False if error is None else error.transient,
        "retry": retry,
        "watched": list(watched),
    }
    if fetched is not None:
        status["paths"] = {k: str(v) for k, v in sorted(fetched.paths.items())}
        status["obtained_from"] = fetched.origins or fetched.sources
        status["verified_checksums"] = fetched.checksums
        status["checksum_source"] = fetched.checksum_source
    atomic_write_json(path, status)
    return status
