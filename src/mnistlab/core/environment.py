"""What machine and software a run used (notebook cell 2, and each run's env.json)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnistlab.core.device import cpu_name, has_mps
from mnistlab.core.version import package_version


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def load_snapshot() -> dict[str, Any]:
    """The 1/5/15-minute load averages and the logical CPU count, now: recorded at the start and
    end of a run or bench, so a timing taken on a busy machine can say so. Load averages are
    None where the OS has none (Windows)."""
    one: float | None
    five: float | None
    fifteen: float | None
    try:
        one, five, fifteen = os.getloadavg()
    except (OSError, AttributeError):
        one = five = fifteen = None
    return {
        "load_avg_1m": one,
        "load_avg_5m": five,
        "load_avg_15m": fifteen,
        "cpu_count": os.cpu_count(),
        "time": time.time(),
    }


def epoch_load() -> dict[str, Any]:
    """The load columns of an epoch's metrics.csv row (at its end): was the machine busy then?"""
    snap = load_snapshot()
    cols = {"load_1m": snap["load_avg_1m"], "cpu_count": snap["cpu_count"]}
    return {k: v for k, v in cols.items() if v is not None}  # no load average on this OS: no columns


def environment() -> dict[str, Any]:
    from mnistlab.core.threads import current

    cuda = torch.cuda.is_available()
    return {
        "mnistlab": package_version(),
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "mps_available": has_mps(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "threads": current().to_dict(),  # how many and why: chosen for the machine's load (core.threads)
    }


def format_environment(env: dict[str, Any]) -> str:
    lines = [
        f"torch {env['torch']} (CUDA build: {env['cuda_version'] or 'none'}), numpy {env['numpy']}, "
        f"python {env['python']}, mnistlab {env['mnistlab']}",
        f"CPU: {env['cpu']} ({env['cpu_count']} logical cores, torch uses {env['torch_threads']} "
        f"thread{'s' * (env['torch_threads'] != 1)}: "
        f"{env['threads']['reason']}; OpenMP wait policy "
        f"{env['threads']['wait_policy'] or 'its default (spin a while, then sleep)'})",
        f"CUDA available: {env['cuda_available']}"
        + (f" ({', '.join(env['cuda_devices'])})" if env["cuda_devices"] else ""),
        f"MPS available: {env['mps_available']}",
    ]
    return "\n".join(lines)


def precision_environment(device: torch.device | None = None) -> dict[str, Any]:
    """The float32 arithmetic settings a run computes with (env.json, bench.json): torch's matmul
    precision, TF32 in cuBLAS and cuDNN, cuDNN's autotuner, determinism, the CUDA and cuDNN versions,
    and for `device` the precision its float32 matmuls and convolutions actually run in."""
    from mnistlab.core.device import (
        conv_precision_label,
        cuda_matmul_tf32,
        cudnn_conv_tf32,
        float32_matmul_precision,
        matmul_precision_label,
    )

    cudnn = torch.backends.cudnn
    env: dict[str, Any] = {
        "float32_matmul_precision": float32_matmul_precision(),
        "cuda_matmul_allow_tf32": cuda_matmul_tf32(),
        "cudnn_allow_tf32": cudnn_conv_tf32(),
        "cudnn_benchmark": bool(cudnn.benchmark),
        "cudnn_deterministic": bool(cudnn.deterministic),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cuda_version": torch.version.cuda,
        "cudnn_version": cudnn.version() if cudnn.is_available() else None,
    }
    if device is not None:
        env["matmul_precision"] = matmul_precision_label(device)
        env["conv_precision"] = conv_precision_label(device)
    return env


def format_precision(env: dict[str, Any]) -> str:
    return (
        f"float32 matmul precision: {env['float32_matmul_precision']} (TF32 in cuBLAS: "
        f"{env['cuda_matmul_allow_tf32']}, in cuDNN: {env['cudnn_allow_tf32']}), cudnn.benchmark "
        f"{env['cudnn_benchmark']}, cuDNN {env['cudnn_version'] or 'none'}"
    )
