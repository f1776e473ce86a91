r"""Device choice, seeding and a description of the environment for results files."""

from __future__ import annotations

import os
import platform
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bnaf.core.errors import BnafError

__all__ = ["resolve_device", "seed_everything", "environment_info", "git_commit"]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks ``cuda`` when available; asking for ``cuda`` without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BnafError(f"device {name!r} requested but CUDA is not available here")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def git_commit(root: str | Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root or Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_info(device: torch.device | str | None = None) -> dict[str, Any]:
    """Library versions, hardware and threads: what a results file needs to be reproducible."""
    import bnaf

    device = torch.device(device) if device is not None else None
    info: dict[str, Any] = {
        "bnaf": bnaf.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device) if device is not None else None,
        "git_commit": git_commit(),
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
