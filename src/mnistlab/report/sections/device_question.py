"""What Q6 and Q9 share: one model on the CPU against a GPU, from the runs, with the bench's cells as evidence."""

from __future__ import annotations

from mnistlab.measure.bench import cell_sentence
from mnistlab.report.inputs import MODEL_NAMES, Inputs
from mnistlab.report.runs import device_comparisons


def missing(inputs: Inputs, model: str) -> str | None:
    if not inputs.gpu_runs(model):
        return inputs.no_gpu_run(model)
    if inputs.cpu_run(model) is None:
        return f"no CPU run of the {MODEL_NAMES.get(model, model)} in these directories to compare with"
    return None


def comparison(inputs: Inputs, model: str) -> str:
    """The answer from the runs (call only where `missing` is None)."""
    return "Answer: " + " ".join(device_comparisons(inputs.runs, model))


def bench_lines(inputs: Inputs, model: str) -> list[str]:
    """The bench's speed-ups and cell sentences about one model: each reads the cell's one judgement."""
    if not inputs.bench:
        return []
    return ([f"{u.what}: {u.ratio.marked()}." for u in inputs.bench.speedups() if u.model == model]
            + [cell_sentence(c) for c in inputs.bench.cells if c.model == model])


def not_answered(reason: str, what: str) -> str:
    """The one sentence of a question whose runs are absent, before the evidence it still has."""
    return f"Not answered here: {reason}. {what}, measured by the bench:"
