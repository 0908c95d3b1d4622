#!/usr/bin/env bash
# Lint, format and type checks, configured in pyproject.toml: `ruff check`, `ruff format --check` (the one
# style, applied to the whole tree in one commit) and `mypy` (src/mnistlab). All three run; the exit code is
# non-zero if any finds anything (CI runs this after the tests: .ci/run). `ruff format` fixes the format.
# The tools come from .venv where it exists (`bash scripts/setup.sh test` installs them), else from PATH.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then . .venv/bin/activate; fi
paths=(src tests benchmarks scripts examples)
status=0
echo "ruff check ${paths[*]}"
ruff check "${paths[@]}" || status=1
echo "ruff format --check ${paths[*]}"
ruff format --check "${paths[@]}" || status=1
echo "mypy"
mypy || status=1
exit "$status"
