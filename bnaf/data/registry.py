r"""The dataset registry: name -> :class:`~bnaf.data.fetch.DatasetSpec` (files + prepare).

Families register their datasets at import time with :func:`register`; this module fills
itself from :mod:`bnaf.data.uci` and, when it exists, :mod:`bnaf.data.images` the first time
the registry is read. Nothing else (no if/elif chain) knows the dataset names.

Adding a dataset (in the family's own module)::

    from bnaf.data.fetch import DatasetSpec, RemoteFile
    from bnaf.data.registry import register
    from bnaf.data.store import Prepared

    def _prepare_frey(raw_dir: Path) -> Prepared:
        ...
        return Prepared({"train": x_trn, "validation": x_val, "test": x_tst}, attrs={...})

    register(DatasetSpec(
        name="freyfaces", family="images", source="Roweis, frey_rawface.mat",
        files=(RemoteFile("freyfaces/frey_rawface.mat",
                          urls=("https://cs.nyu.edu/~roweis/data/frey_rawface.mat",),
                          checksum="md5:5aeb024d42b8a6091f30e5eb18c8a48d"),),
        prepare=_prepare_frey))

``RemoteFile.name`` is also the path looked up under a mirror folder (then its basename and
``mirror_names``), so ``freyfaces/frey_rawface.mat`` is found in ``../shared/data``.
"""

from __future__ import annotations

import importlib
from typing import Any
from pathlib import Path

from bnaf.data.fetch import DatasetSpec, Fetched
from bnaf.data.fetch import fetch as _fetch
from bnaf.core.errors import BnafError

__all__ = ["REGISTRY", "FAMILIES", "register", "get", "names", "fetch"]

#: dataset name -> spec; read it through :func:`get` / :func:`names` so families are loaded.
REGISTRY: dict[str, DatasetSpec] = {}

#: modules that register datasets when imported; a missing optional one is skipped.
FAMILIES: tuple[str, ...] = ("bnaf.data.uci", "bnaf.data.images")

_loaded = False


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to the registry (a second, different spec under one name is an error)."""
    old = REGISTRY.get(spec.name)
    if old is not None and old != spec:
        raise BnafError(f"dataset '{spec.name}' is registered twice ({old.family}, {spec.family})")
    REGISTRY[spec.name] = spec
    return spec


def _load_families() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in FAMILIES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # Only the family module itself may be absent; a missing dependency inside it
            # is a real error and must surface.
            if exc.name != module:
                raise


def names(family: str | None = None) -> list[str]:
    """Registered dataset names (optionally of one family), sorted."""
    _load_families()
    return sorted(n for n, s in REGISTRY.items() if family is None or s.family == family)


def get(name: str) -> DatasetSpec:
    """The spec registered as ``name``; an unknown name lists the known ones."""
    _load_families()
    if name not in REGISTRY:
        raise BnafError(f"unknown dataset '{name}'; known datasets: {', '.join(names())}")
    return REGISTRY[name]


def fetch(name: str, raw_dir: str | Path, **options: Any) -> Fetched:
    """Fetch and verify dataset ``name``; ``options`` as :func:`bnaf.data.fetch.fetch`'s."""
    return _fetch(get(name), raw_dir, **options)
