#!/usr/bin/env bash
# Creates .venv and installs mnistlab into it with every extra, mnistlab[all] (sweeps, PostgreSQL, TensorBoard,
# the notebook), and the test tools too when given "test" (mnistlab[all,test]).
# torch: an already-installed torch is kept; otherwise $MNISTLAB_TORCH (default torch==2.13.0).
# For a CUDA build, install it into .venv first (see the README) and this keeps it.
# A second run with the same pyproject.toml and extras installs nothing (.venv/.mnistlab-setup records what
# was installed; the install is editable, so changes under src/ need no reinstall).
set -euo pipefail
cd "$(dirname "$0")/.."
extra="[all]"
[ "${1:-}" = "test" ] && extra="[all,test]"
stamp=.venv/.mnistlab-setup
hash=$(sha256sum pyproject.toml | cut -d' ' -f1)
want="$hash $extra"
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
installed() {
  python -c "import mnistlab, torch; print(f'mnistlab {mnistlab.__version__} with torch {torch.__version__} in .venv')"
}
have=$(cat "$stamp" 2>/dev/null || true)
if { [ "$have" = "$want" ] || [ "$have" = "$hash [all,test]" ]; } && installed 2>/dev/null; then
  exit 0  # installed already, from this pyproject.toml with these extras (or more: the test tools too)
fi
rm -f "$stamp"
quiet_pip() {  # pip's own exit status, without the noise of this machine's extra index locations
  python -m pip "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
}
quiet_pip install --quiet --upgrade pip || true  # a newer pip is welcome, not required
if ! python -c "import torch" 2>/dev/null; then
  quiet_pip install --quiet "${MNISTLAB_TORCH:-torch==2.13.0}"
fi
quiet_pip install --quiet -e ".${extra}"
installed
echo "$want" > "$stamp"
