"""Names and defaults written once, importable without torch (the CLI's help needs them)."""

from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda", "mps")
BUILTIN_MODELS = ("mlp", "cnn")  # the registry's names; tests check they agree
PIPELINES = ("reference", "resident")  # the notebook's per-sample PIL pipeline, and mnistlab's
DEFAULT_BATCH_SIZE = 64  # the notebook's
EVAL_BATCH_SIZE = 1000
# a sweep trial's heartbeat and the silence after which its worker counts as dead: a heartbeat a minute,
# failed after 3 missed (a cluster's workers may stall for a while on a busy database)
HEARTBEAT_S, GRACE_S = 60, 180
RUNS_DIR = "runs"  # where runs, benches and labs go unless a path is given
# speed levers (training/levers.py): Lightning's precision names, torch.compile's modes
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
# bench's implementation axis: one lever at a time on top of eager fp32
# the largest size a user may ask for, per option: each bounds the time or memory a command can take,
# and a larger request is one line, not an hour or an out-of-memory (data show --count: 4000 took 70 s)
MAX_BATCH_SIZE = 65_536  # more than MNIST's whole training set in one step
MAX_SHOWN = 256
MAX_TIMED_STEPS = 100_000  # bench --steps, --warmup
MAX_REPEATS = 100
TRACE_STEPS, TRACE_WARMUP = 5, 2  # bench --trace, train --trace: steps recorded, after untraced ones
MAX_SEEDS = 1_000
MAX_TRIALS = 10_000
MAX_THREADS = 1024  # --threads, OMP_NUM_THREADS, bench --nproc: above any machine's cores (torch crashes at 100,000)
MAX_WAIT_S = 7 * 24 * 3600  # --heartbeat-interval, --grace-period: a week (a larger one overflows Optuna's timers)
IMPLEMENTATIONS = (
    "eager",
    "channels-last",
    "bf16-mixed",
    "bf16-mixed+channels-last",
    "16-mixed",
    "compiled",
    "cuda-graphs",
)
