"""Devices in one place: names, resolving `auto`, describing the choice, synchronising clocks."""

from __future__ import annotations

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
        raise ConfigError("--device cuda: this torch build sees no CUDA GPU "
                          f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch")
    if name == "mps" and not has_mps():
        raise ConfigError("--device mps: MPS is not available on this machine; use --device cpu")
    return torch.device(name)


def describe_choice(name: str, device: torch.device) -> str:
    """One line saying which device runs, and why when `auto` chose it."""
    if name == "auto":
        why = {"cuda": "CUDA is available", "mps": "MPS is available", "cpu": "no CUDA or MPS device"}[device.type]
        return f"device: {device.type} (auto: {why})"
    return f"device: {device.type}"


def device_name(device: torch.device) -> str:
    """The hardware's name: the GPU's, or the CPU's with torch's thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        from mnistlab.core.environment import cpu_name

        return f"{cpu_name()} ({torch.get_num_threads()} threads)"
    return device.type


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a clock read afterwards means something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
