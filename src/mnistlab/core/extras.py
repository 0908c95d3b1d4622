"""Optional dependencies (pip extras, pyproject.toml): import one, or stop with one line that names the
pip command, e.g. `mnistlab: error: mnistlab sweep needs optuna: pip install 'mnistlab[sweep]'` (exit 2)."""

from __future__ import annotations

import importlib
from types import ModuleType

from mnistlab.core.errors import ConfigError


def missing(package: str, needed_by: str, extra: str) -> ConfigError:
    """The one-line error for a missing extra."""
    return ConfigError(f"{needed_by} needs {package}: pip install 'mnistlab[{extra}]'")


def require(module: str, needed_by: str, extra: str, package: str | None = None) -> ModuleType:
    """`module`, imported; if it is not installed, the one-line error naming `pip install 'mnistlab[extra]'`.
    An installed package that fails to import for another reason (a missing dependency of its own) says so."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        error = missing(package or module.split(".")[0], needed_by, extra)
        if e.name and e.name.split(".")[0] != module.split(".")[0]:
            error = ConfigError(f"{error} (its import failed: {e})")
        raise error from None
