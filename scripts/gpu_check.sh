#!/usr/bin/env bash
# Runs on a lent GPU machine from the project's root, after scripts/gpu_prepare.sh on the build
# machine (device run: `bash scripts/gpu_check.sh`, carry [".gpu"], timeout_s 540). The GPU tests,
# then the GPU figures of issue 14 (determinism, warm-up, syncs, precision, resume across devices)
# and the bench. At most 8 files come back from $OUT, so runs go to a scratch folder and $OUT gets
# only gpu-check.log, gpu-pytest.log and bench.{txt,json,png}. Record the figures, with the GPU's
# name, in docs/benchmarks.md.
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/mnistlab-gpu.XXXXXX)
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 MNISTLAB_DATA=$PWD/.gpu/data
unset CUBLAS_WORKSPACE_CONFIG  # --deterministic has to set it itself, as for a user
PY=${PY:-python3}
LOG="$OUT/gpu-check.log"
log() { echo "== $*" | tee -a "$LOG"; }
run() { log "$*"; timeout 240 "$@" 2>&1 | tail -40 | tee -a "$LOG"; }
# install the checkout itself (no network there: no deps, no build isolation); PYTHONPATH is the fallback
$PY -m pip install -q --no-deps --no-build-isolation --no-index -e . >>"$LOG" 2>&1 || log "pip install -e . failed; using PYTHONPATH=src"
run nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv
run $PY -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')"
run $PY -m mnistlab env
run $PY -m mnistlab data fetch --no-web

log "pytest -m gpu (whole output in gpu-pytest.log)"
timeout 300 $PY -m pytest -q -rs -m gpu tests >"$OUT/gpu-pytest.log" 2>&1
tail -25 "$OUT/gpu-pytest.log" | tee -a "$LOG"

run $PY -m mnistlab train --no-progress --model mlp --epochs 3 --device cuda --run-dir "$WORK/mlp-cuda"
run $PY -m mnistlab train --no-progress --model cnn --epochs 2 --device cuda --run-dir "$WORK/cnn-cuda"
# 1. --deterministic with CUBLAS_WORKSPACE_CONFIG unset, twice on real MNIST
run $PY -m mnistlab train --no-progress --model cnn --epochs 1 --max-steps 200 --device cuda --deterministic --run-dir "$WORK/det-a"
run $PY -m mnistlab train --no-progress --model cnn --epochs 1 --max-steps 200 --device cuda --deterministic --run-dir "$WORK/det-b"
# 9. resume across devices (cuda -> cpu) and eval on the CPU with CUDA hidden
cp -r "$WORK/mlp-cuda" "$WORK/mlp-resumed"
run $PY -m mnistlab train --no-progress --resume "$WORK/mlp-resumed" --epochs 1 --device cpu
CUDA_VISIBLE_DEVICES= run $PY -m mnistlab eval "$WORK/cnn-cuda" --device cpu
log "issue 14 figures"
timeout 240 $PY - "$WORK" <<'PY' 2>&1 | tee -a "$LOG"
import json, sys
from pathlib import Path
import torch
from mnistlab.core.device import count_cuda_syncs, matmul_precision_label
from mnistlab.core.rundir import open_run
from mnistlab.data.datasets import data_root, get_dataset
from mnistlab.data.loader import make_splits
from mnistlab.training import levers, loop
from mnistlab.training.evaluation import evaluate
from mnistlab.training.models import create_model

work = Path(sys.argv[1])
keys = ("float32_matmul_precision", "cuda_matmul_allow_tf32", "cudnn_allow_tf32", "cudnn_benchmark",
        "cuda_version", "cudnn_version", "matmul_precision", "conv_precision", "warmup_seconds")
for name in ("mlp-cuda", "cnn-cuda"):
    run = open_run(work / name)
    env = run.env()
    print(f"{name}: " + ", ".join(f"{k}={env.get(k)}" for k in keys))
    secs = [round(r["train_seconds"], 3) for r in run.metrics() if r["session"] == 1]
    print(f"{name}: warm-up {env.get('warmup_seconds', 0):.3f} s; train seconds per epoch {secs}")
a, b = open_run(work / "det-a"), open_run(work / "det-b")
same = [(r["train_loss"], r["val_loss"]) for r in a.metrics()] == [(r["train_loss"], r["val_loss"]) for r in b.metrics()]
wa, wb = (torch.load(r.path / "last.pt", weights_only=True)["model"] for r in (a, b))
print(f"deterministic cnn, two runs of 200 steps: losses equal {same}, weights equal "
      f"{all(torch.equal(wa[k], wb[k]) for k in wa)}; CUBLAS_WORKSPACE_CONFIG was unset at start")
resumed = open_run(work / "mlp-resumed")
print(f"mlp cuda -> cpu resume: state {resumed.status()['state']}, device {resumed.env()['device']}, "
      f"val loss by epoch {[round(r['val_loss'], 4) for r in resumed.metrics()]}")
for setting in ("highest", "high"):
    torch.set_float32_matmul_precision(setting)
    print(f"matmul precision {setting!r}: label {matmul_precision_label(torch.device('cuda'))}")
torch.set_float32_matmul_precision("highest")

spec = get_dataset("mnist")
splits = make_splits(spec, data_root(None), batch_size=64, val_fraction=0.2, seed=0, device="cuda")
for m in ("mlp", "cnn"):
    torch.manual_seed(0)
    model = create_model(m).cuda()
    opt = loop.make_optimizer(model, 0.01, 0.5)
    levers.warm_up(levers.make_step(model, opt, levers.Levers(), torch.device('cuda'), batch_size=64),
                   splits.train.x[:64], splits.train.y[:64], evaluation=splits.val.x[:splits.val.batch_size])
    n = count_cuda_syncs(lambda: loop.train_epoch(model, opt, splits.train, epoch=1, global_step=0, log_every=100))
    e = count_cuda_syncs(lambda: evaluate(model, splits.val))
    print(f"{m}: {n} syncs in a training epoch of {len(splits.train)} steps ({-(-len(splits.train) // 100)} logged); "
          f"{e} in evaluating {len(splits.val)} batches")
PY
run $PY -m mnistlab bench --devices cpu cuda --steps 200 --repeats 3 --out "$WORK/bench"
cp "$WORK"/bench/bench.{txt,json,png} "$OUT"/ 2>/dev/null || log "no bench files"
log "done"
