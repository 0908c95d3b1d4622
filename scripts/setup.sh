#!/usr/bin/env bash
# Creates .venv and installs mnistlab into it with every extra, mnistlab[all] (sweeps, PostgreSQL, TensorBoard,
# the notebook), and the test tools too when given "test" (mnistlab[all,test]).
# torch: an already-installed torch is kept; otherwise $MNISTLAB_TORCH (default torch==2.13.0).
# For a CUDA build, install it into .venv first (see the README) and this keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install --quiet "${MNISTLAB_TORCH:-torch==2.13.0}" 2>&1 | grep -v "^WARNING: Location" || true
fi
extra="[all]"
[ "${1:-}" = "test" ] && extra="[all,test]"
python -m pip install --quiet -e ".${extra}" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import mnistlab, torch; print(f'mnistlab {mnistlab.__version__} with torch {torch.__version__} in .venv')"
