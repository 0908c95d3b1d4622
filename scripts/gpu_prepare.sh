#!/usr/bin/env bash
# Run in the project's root on the build machine: puts the verified MNIST .gz files into .gpu/data
# (git-ignored by .gitignore; about 12 MB), ready to be carried to a GPU machine, where
# `bash scripts/gpu_check.sh` runs the checks (see docs/benchmarks.md, "GPU").
set -euo pipefail
mkdir -p .gpu/data/MNIST/raw
cache=$HOME/.cache
[[ "${XDG_CACHE_HOME:-}" == /* ]] && cache=$XDG_CACHE_HOME
root=${MNISTLAB_DATA:-$cache/mnistlab}  # mnistlab's default data root (src/mnistlab/data/datasets.py)
[ -f "$root/MNIST/raw/train-images-idx3-ubyte" ] || { echo "fetch MNIST first: mnistlab data fetch"; exit 2; }
for f in "$root"/MNIST/raw/*-ubyte; do gzip -c "$f" > ".gpu/data/MNIST/raw/$(basename "$f").gz"; done
du -sh .gpu
