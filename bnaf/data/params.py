r"""The ``data:`` section of ``params/<budget>/data.yaml`` (downloads and preparation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bnaf.core.config import between, load

__all__ = ["DataParams", "DataResources", "load_data_params"]


@dataclass
class DataResources:
    mem_mb: int = between(1, default=4000)
    runtime: int = between(1, default=120)  # minutes


@dataclass
class DataParams:
    """The ``data:`` section of ``params/<budget>/data.yaml`` (defaults: no params file given)."""

    datasets: list[str] = field(default_factory=list)
    raw_dir: str = "data/raw"
    mirror: str | None = None
    retries: int = between(0, default=3)
    timeout_s: float = between(0, lo_open=True, default=60.0)
    checksums: dict[str, str] = field(default_factory=dict)
    urls: dict[str, list[str]] = field(default_factory=dict)
    resources: DataResources = field(default_factory=DataResources)


def load_data_params(path: str | Path | None) -> DataParams:
    return DataParams() if path is None else load(path, DataParams, section="data")
