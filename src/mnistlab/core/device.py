"""Devices in one place: names, resolving `auto`, describing the choice, synchronising clocks,
deterministic mode, the float32 precision in use, and device failures told apart from bugs."""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mnistlab.core.defaults import DEVICES
from mnistlab.core.errors import ConfigError


def has_mps() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def available_devices() -> list[str]:
    """The device types present here: cpu, then cuda and mps when there."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (["mps"] if has_mps() else [])


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU; an explicit device must exist."""
    if name not in DEVICES:
        raise ConfigError(f"unknown device {name!r}; choose one of: {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps() else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda: this torch build sees no CUDA GPU "
            f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch"
        )
    if name == "mps" and not has_mps():
        raise ConfigError("--device mps: MPS is not available on this machine; use --device cpu")
    return torch.device(name)


def describe_choice(name: str, device: torch.device) -> str:
    """One line saying which device runs, and why when `auto` chose it."""
    if name == "auto":
        why = {"cuda": "CUDA is available", "mps": "MPS is available", "cpu": "no CUDA or MPS device"}[device.type]
        return f"device: {device.type} (auto: {why})"
    return f"device: {device.type}"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """The hardware's name: the GPU's, or the CPU's with torch's thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        n = torch.get_num_threads()
        return f"{cpu_name()} ({n} thread{'s' * (n != 1)})"
    return device.type


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a clock read afterwards means something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# torch accepts only these in deterministic mode and checks the variable at every cuBLAS call;
# cuBLAS sizes its workspace at the first call, so the variable must be set before any CUDA work.
CUBLAS_DETERMINISTIC_CONFIGS = (":4096:8", ":16:8")


def count_cuda_syncs(fn: Callable[[], Any]) -> int:
    """How many times `fn()` makes the host wait for the GPU (torch's sync debug mode, in warn mode);
    the syncs a step or an evaluation must not add are what the GPU tests and scripts/gpu_check.sh count."""
    import warnings

    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def enable_deterministic() -> None:
    """Deterministic kernels only. Sets CUBLAS_WORKSPACE_CONFIG (when unset) first: without it the
    first cuBLAS call on CUDA raises. cudnn.benchmark is turned off, as it may pick a different
    (deterministic) algorithm on each run."""
    current = os.environ.get("CUBLAS_WORKSPACE_CONFIG", "")
    if not current:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_DETERMINISTIC_CONFIGS[0]
    elif current not in CUBLAS_DETERMINISTIC_CONFIGS:
        raise ConfigError(
            f"--deterministic needs CUBLAS_WORKSPACE_CONFIG unset or one of "
            f"{', '.join(CUBLAS_DETERMINISTIC_CONFIGS)}; it is {current!r}"
        )
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def float32_matmul_precision() -> str:
    """torch.get_float32_matmul_precision(), or, where torch refuses it because the legacy and the
    new fp32_precision APIs (torch >= 2.9) were mixed, the new API's per-backend settings."""
    try:
        return torch.get_float32_matmul_precision()
    except RuntimeError:
        b = torch.backends
        return (
            f"cuda {getattr(b.cuda.matmul, 'fp32_precision', '?')}, "
            f"cpu {getattr(getattr(b.mkldnn, 'matmul', None), 'fp32_precision', '?')}"
        )


def _tf32_flag(legacy: Callable[[], Any], *nodes: Any) -> bool:
    """Whether TF32 is allowed: the legacy `allow_tf32` flag, or, where torch refuses to read it
    because the new `fp32_precision` API (torch >= 2.9) was used too, the first node that is set."""
    try:
        return bool(legacy())
    except RuntimeError:
        for node in nodes:
            value = getattr(node, "fp32_precision", "none")
            if value != "none":
                return value == "tf32"
        return False


def cuda_matmul_tf32() -> bool:
    """cuBLAS may run float32 matmuls in TF32 (set_float32_matmul_precision "high" or "medium")."""
    b = torch.backends
    return _tf32_flag(lambda: b.cuda.matmul.allow_tf32, b.cuda.matmul, b)


def cudnn_conv_tf32() -> bool:
    """cuDNN may run float32 convolutions in TF32 (on by default in torch)."""
    b = torch.backends
    return _tf32_flag(lambda: b.cudnn.allow_tf32, getattr(b.cudnn, "conv", None), b.cudnn, b)


def _has_tf32(device: torch.device) -> bool:
    return torch.cuda.get_device_capability(device) >= (8, 0)  # Ampere and later


def _cpu_label(node: str) -> str:
    """oneDNN runs float32 matmuls/convolutions in bfloat16 when asked ("medium", or fp32_precision
    "bf16") and the CPU supports it; otherwise in plain FP32."""
    mkldnn = getattr(torch.backends, "mkldnn", None)
    mode = getattr(getattr(mkldnn, node, None), "fp32_precision", None)
    if mode is None and node == "matmul":  # torch before the fp32_precision API
        mode = "bf16" if float32_matmul_precision() == "medium" else "ieee"
    if mode != "bf16" or mkldnn is None or not mkldnn.is_available():
        return "FP32"
    try:
        return "BF16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "FP32"
    except (AttributeError, RuntimeError):
        return "FP32"


def matmul_precision_label(device: torch.device) -> str:
    """The arithmetic that float32 matmuls on `device` use with torch's current settings:
    "FP32", "TF32" or "BF16". A peak measured with float32 matmuls is a peak of this precision."""
    if device.type == "cuda":
        return "TF32" if cuda_matmul_tf32() and _has_tf32(device) else "FP32"
    if device.type == "cpu":
        return _cpu_label("matmul")
    return "FP32"


def conv_precision_label(device: torch.device) -> str:
    """As `matmul_precision_label`, for float32 convolutions (cuDNN on CUDA: TF32 by default)."""
    if device.type == "cuda":
        return "TF32" if cudnn_conv_tf32() and _has_tf32(device) else "FP32"
    if device.type == "cpu":
        return _cpu_label("conv")
    return "FP32"


# Text that only the device runtimes put in their errors (a shape or dtype bug mentions "cuda" too).
_DEVICE_ERROR_MARKERS = (
    "CUDA error",
    "CUDA driver",
    "CUBLAS_STATUS_",
    "CUDNN_STATUS_",
    "cuDNN error",
    "no kernel image",
    "device-side assert",
    "MPS backend",
    "NVML",
)


# how the CPU allocator says it (c10's alloc_cpu), besides Python's own MemoryError
_CPU_OOM_MARKERS = ("DefaultCPUAllocator", "can't allocate memory", "not enough memory")


def is_out_of_memory(e: BaseException) -> bool:
    text = str(e)
    return isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)) or (
        isinstance(e, RuntimeError) and ("out of memory" in text.lower() or any(m in text for m in _CPU_OOM_MARKERS))
    )


def device_error_message(
    e: BaseException, device: torch.device | None = None, batch_size: int | None = None
) -> str | None:
    """One line for a failure of the device (out of memory, no kernel for this GPU, a driver error),
    or None when `e` is something else: a bug, which keeps its traceback."""
    if not isinstance(e, (RuntimeError, MemoryError)):
        return None
    text = str(e).strip()
    first = text.splitlines()[0].strip() if text else type(e).__name__
    asked = re.search(r"tried to allocate (\d+) bytes", text)  # the CPU allocator's words
    if asked:
        first = f"tried to allocate {int(asked.group(1)) / 2**30:,.1f} GiB"
    cpu = isinstance(e, MemoryError) or any(m in text for m in _CPU_OOM_MARKERS)
    where = f" on {device.type}" if device is not None else (" on cpu" if cpu else "")
    if is_out_of_memory(e):
        first = ". ".join(first.split(". ")[:3]).rstrip(".")  # what was asked for and what is free
        if batch_size is not None and batch_size > 1:
            return (
                f"out of memory{where} at batch size {batch_size} ({first}); "
                f"try a smaller batch size, e.g. --batch-size {batch_size // 2}"
            )
        if cpu or (device is not None and device.type == "cpu"):
            return f"out of memory{where} ({first}); ask for less (a smaller batch), or free memory"
        return f"out of memory{where} ({first}); free the device's memory or use --device cpu"
    if "no kernel image" in text:
        return (
            f"{device.type if device is not None else 'the GPU'}: {first}: this torch build has no kernels "
            f"for this GPU; install a torch build for its compute capability, or use --device cpu"
        )
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if (accelerator_error is not None and isinstance(e, accelerator_error)) or any(
        m in text for m in _DEVICE_ERROR_MARKERS
    ):
        return f"device error{where}: {first}"
    return None
