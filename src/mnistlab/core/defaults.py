"""Names and defaults written once, importable without torch (the CLI's help needs them)."""

from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda", "mps")
BUILTIN_MODELS = ("mlp", "cnn")  # the registry's names; tests check they agree
PIPELINES = ("reference", "resident")  # the notebook's per-sample PIL pipeline, and mnistlab's
DEFAULT_BATCH_SIZE = 64  # the notebook's
EVAL_BATCH_SIZE = 1000
RUNS_DIR = "runs"  # where runs, benches and labs go unless a path is given
