r"""Device choice, numerics, seeding and a description of the environment for results files.

Numerics (:func:`configure_numerics`, called by every training stage at its start): everything
compared with the paper runs in IEEE float32, so TF32 is off for matrix products and cuDNN
convolutions (on Ampere and later GPUs cuDNN would otherwise run the VAE's convolutions with a
10-bit mantissa); cuDNN picks deterministic algorithms and does not benchmark, and on a GPU
PyTorch's deterministic algorithms are switched on (with a warning, not an error, for an operation
that has none). :func:`environment_info` records all of it, with the device model, in every
``metrics.json``.
"""

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

__all__ = [
    "configure_numerics",
    "environment_info",
    "numerics_key",
    "git_commit",
    "numerics_info",
    "resolve_device",
    "seed_everything",
]

#: cuBLAS needs a fixed workspace to be deterministic; read when cuBLAS starts, so set before.
CUBLAS_WORKSPACE = ":4096:8"


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks ``cuda`` when available; asking for ``cuda`` without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BnafError(f"device {name!r} requested but CUDA is not available here")
    return device


def numerics_key(device: torch.device | str) -> dict[str, Any]:
    r"""What of the device and its numerics can change a run's numbers: the device model (on
    CUDA) and both TF32 flags. Part of every checkpoint's fingerprint, so a retry on another
    GPU model or with other numerics starts afresh instead of resuming silently."""
    device = torch.device(device)
    key: dict[str, Any] = {
        "type": device.type,
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
    }
    if device.type == "cuda" and torch.cuda.is_available():
        key["model"] = torch.cuda.get_device_name(device)
    return key


def configure_numerics(device: torch.device | str) -> None:
    r"""TF32 off (matmul and cuDNN), deterministic cuDNN without benchmarking; on a GPU also
    PyTorch's deterministic algorithms (warn-only). Call before the first CUDA operation."""
    device = torch.device(device)
    # The legacy flags: the newer per-backend ``fp32_precision`` strings follow them, while
    # mixing the two APIs makes the legacy getters raise.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        # Warn-only: an operation without a deterministic kernel warns instead of failing a
        # days-long run; empty tensors are not NaN-filled (that costs a pass per allocation).
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]


def _read(getter: Any) -> Any:
    try:
        return getter()
    except (AttributeError, RuntimeError):
        return None


def numerics_info() -> dict[str, Any]:
    r"""The settings that change float32 results on a GPU: both TF32 flags, the float32
    matmul precision and the determinism switches."""
    backends = torch.backends
    return {
        "matmul_allow_tf32": _read(lambda: backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": _read(lambda: backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_deterministic": bool(backends.cudnn.deterministic),
        "cudnn_benchmark": bool(backends.cudnn.benchmark),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }


def gpu_info(device: torch.device) -> dict[str, Any]:
    r"""Model, memory, compute capability and UUID of a CUDA device, and how ids were mapped."""
    props = torch.cuda.get_device_properties(device)
    uuid = getattr(props, "uuid", None)
    return {
        "name": props.name,
        "memory_gb": round(props.total_memory / 2**30, 1),
        "capability": f"{props.major}.{props.minor}",
        "uuid": None if uuid is None else str(uuid),
        "cuda": torch.version.cuda,
        "cudnn": _read(torch.backends.cudnn.version),
        "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "device_order": os.environ.get("CUDA_DEVICE_ORDER"),
    }


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
        "numerics": numerics_info(),
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_info"] = gpu_info(device)
    return info
