"""The package version, written once in pyproject.toml and read from the installed metadata."""

from __future__ import annotations

import importlib.metadata


def package_version() -> str:
    try:
        return importlib.metadata.version("mnistlab")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown"
