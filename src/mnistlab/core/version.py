"""The package version, written once in pyproject.toml and read from the installed metadata."""

from __future__ import annotations

import importlib.metadata
import platform


def package_version() -> str:
    try:
        return importlib.metadata.version("mnistlab")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def version_line() -> str:
    """What `mnistlab --version` prints, e.g. `mnistlab 0.1.0 (torch 2.13.0+cpu, Python 3.11.7)`: read from
    the installed packages' metadata, so that it answers at once, without importing torch."""
    try:
        torch = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch = "not installed"
    return f"mnistlab {package_version()} (torch {torch}, Python {platform.python_version()})"
