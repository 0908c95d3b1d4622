#!/usr/bin/env bash
# Sets up .venv, then runs the main job on real MNIST: `mnistlab lab --quick`, which fetches and
# verifies the data, reproduces the notebook's plan and writes report.html and report.md.
# Extra arguments go to `mnistlab lab` (drop --quick with: bash scripts/lab.sh --full).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
if [ "${1:-}" = "--full" ]; then shift; exec mnistlab lab "$@"; fi
exec mnistlab lab --quick "$@"
