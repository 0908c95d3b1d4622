#!/usr/bin/env bash
# Lint and type checks, configured in pyproject.toml: `ruff check src tests`, then `mypy` (src/mnistlab).
# Both run; the exit code is non-zero if either finds anything. The tools come from .venv where it exists
# (`bash scripts/setup.sh test` installs them), else from PATH.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then . .venv/bin/activate; fi
status=0
echo "ruff check src tests"
ruff check src tests || status=1
echo "mypy"
mypy || status=1
exit "$status"
