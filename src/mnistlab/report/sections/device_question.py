"""What Q6 and Q9 share: one model on the CPU against a GPU, from the runs where there are runs on both,
else from a labelled prediction (measure/prediction.py); the bench's cells as evidence, and where the
bench also ran on a GPU, the prediction beside the measurement."""

from __future__ import annotations

from mnistlab.measure.bench import cell_sentence
from mnistlab.measure.gpus import DISPATCH_COST_S, Gpu
from mnistlab.measure.prediction import Expected, Prediction
from mnistlab.measure.published import CHECK_COSTS_S, published_check
from mnistlab.report.document import Document, Link
from mnistlab.report.inputs import MODEL_NAMES, Inputs
from mnistlab.report.runs import device_comparisons
from mnistlab.report.sections.how_to_read import HOW

# what each binding floor means for the speed-up a learner should expect
MEANING = {
    "launch": "The GPU's arithmetic is not what limits it: the speed-up is set by how fast its operations can "
    "be issued, which a faster GPU barely changes (fewer, larger operations would: a larger batch, "
    "fused kernels, CUDA graphs).",
    "bandwidth": "Memory traffic sets it: more bandwidth would help, more arithmetic would not.",
    "compute": "Arithmetic sets it: the GPU's peak is what the step can use.",
}


def missing_runs(inputs: Inputs, model: str) -> str | None:
    """Why the runs cannot answer: no GPU run, or no CPU run to compare with."""
    if not inputs.gpu_runs(model):
        return inputs.no_gpu_run(model)
    if inputs.cpu_run(model) is None:
        return f"no CPU run of the {MODEL_NAMES.get(model, model)} in these directories to compare with"
    return None


def missing(inputs: Inputs, model: str) -> str | None:
    """Why the question is not answered: the runs cannot answer, and the bench counted no step to predict from."""
    reason = missing_runs(inputs, model)
    return None if reason is None or model in inputs.expected else reason


def predicted(inputs: Inputs, model: str) -> bool:
    """Answered by a prediction, not by a measurement."""
    return missing_runs(inputs, model) is not None and model in inputs.expected


def comparison(inputs: Inputs, model: str) -> str:
    """The answer from the runs (call only where `missing_runs` is None)."""
    return "Answer: " + " ".join(device_comparisons(inputs.runs, model))


def bench_lines(inputs: Inputs, model: str) -> list[str]:
    """The bench's speed-ups and cell sentences about one model: each reads the cell's one judgement."""
    if not inputs.bench:
        return []
    return [f"{u.what}: {u.ratio.marked()}." for u in inputs.bench.speedups() if u.model == model] + [
        cell_sentence(c) for c in inputs.bench.cells if c.model == model
    ]


def not_answered(reason: str, what: str) -> str:
    """The one sentence of a question whose runs are absent, before the evidence it still has."""
    return f"Not answered here: {reason}. {what}, measured by the bench:"


def dispatch_words(e: Expected) -> str:
    """How the answer moves with the one assumption that is not a datasheet's: the cost of an operation."""
    lo, hi = min(CHECK_COSTS_S), max(CHECK_COSTS_S)
    at = [
        Prediction.of(e.prediction.cost, e.prediction.gpu, e.prediction.dtype, c).speedup(e.here.step)[0]
        for c in (hi, lo)
    ]
    return (
        f"at {lo * 1e6:g}\u2013{hi * 1e6:g} us per operation instead of {DISPATCH_COST_S * 1e6:g}, at most "
        f"{at[0]:,.1f}\u2013{at[1]:,.1f}x"
    )


def prediction_sentence(e: Expected, meaning: bool = True) -> str:
    p = e.prediction
    return (
        f"On the {p.gpu.name}, the {MODEL_NAMES.get(e.model, e.model)}'s training step would take {p.words()}; "
        f"{e.speedup_words()}; {dispatch_words(e)}."
        + (f" {MEANING[p.binds]}" if meaning else f" {p.binds.capitalize()}-bound, as the MLP's (Q6).")
    )


def assumptions(gpu: Gpu) -> list[str]:
    """The prediction's assumptions, one short item each, and the model's check against a published run."""
    note = f"; {gpu.note}" if gpu.note else ""
    run, preds = published_check()
    at = {p.dispatch_cost_s: p for p in preds}[DISPATCH_COST_S]
    lo, hi = min(p.bound_s for p in preds), max(p.bound_s for p in preds)
    held = (
        f"it holds, the published time {run.seconds / at.bound_s:.1f}x the bound"
        if all(p.holds(run.seconds) for p in preds)
        else "it does NOT hold: the published time is below it, so the model is wrong"
    )
    return [
        f"the {gpu.name}'s figures are its vendor's dense peaks ({gpu.source}{note});",
        'float32 matmuls run at the FP32 rate (PyTorch\'s default matmul precision, "highest"); only '
        "convolutions may use TF32 (cuDNN's default);",
        f"every operation costs at least {DISPATCH_COST_S * 1e6:g} us to issue: assumed, not measured (the answer "
        f"at {min(CHECK_COSTS_S) * 1e6:g}\u2013{max(CHECK_COSTS_S) * 1e6:g} us is given beside it);",
        "the operations, bytes and FLOPs are those counted for the step here, each operation reading its inputs "
        "and writing its outputs once;",
        "each floor is a least time: the step takes at least the largest, so the speed-up is at most what is said;",
        f"checked against a published run: {run.name} (a small CNN, one epoch to 99%) took {run.seconds:.2f} s on "
        f"a {run.gpu}; this model's lower bound for it is {at.bound_s:.3f} s ({lo:.3f}\u2013{hi:.3f} s at "
        f"{min(CHECK_COSTS_S) * 1e6:g}\u2013{max(CHECK_COSTS_S) * 1e6:g} us per operation): {held}.",
    ]


def check_rows(inputs: Inputs, models: list[str]) -> list[list[str]]:
    """Prediction beside measurement for each model the bench also ran on a GPU."""
    rows: list[list[str]] = []
    bench = inputs.bench
    if bench is None:  # no bench: nothing predicted, nothing measured on a GPU
        return rows
    for e in (inputs.expected[m] for m in models if m in inputs.expected):
        if e.there is None or e.check is None or e.ratio is None:
            continue
        sp = e.there.step
        rows.append(
            [
                e.there.key,
                bench.devices.get("cuda", "cuda"),
                e.check.gpu.name,
                f"{e.check.bound_s * 1e3:.3f} ({e.check.binds}-bound)",
                f"{sp.median * 1e3:.3f} ({sp.min * 1e3:.3f}\u2013{sp.max * 1e3:.3f})",
                f"{e.ratio:.2f}x",
            ]
        )
    return rows


def answer(doc: Document, inputs: Inputs, model: str, evidence: list[str], what: str) -> None:
    """The question's answer: from the runs, else by prediction, else why not; then a link to the prediction's
    assumptions (listed once, in 'How to read this'), its check against a GPU the bench measured, and a link to
    the bench's evidence (each cell's one judgement, Cell.bound)."""
    reason, e = missing_runs(inputs, model), inputs.expected.get(model)
    mlp = inputs.expected.get("mlp")  # Q6 has said what the MLP's binding floor means: Q9 says it only if it differs
    meaning = not (model != "mlp" and e and mlp and mlp.prediction.binds == e.prediction.binds)
    if reason is None:
        doc.p(comparison(inputs, model))
        if e:
            doc.p("Beside the measurement, a prediction (not measured). " + prediction_sentence(e, meaning))
    elif e:
        doc.p(f"Predicted, not measured: there is {reason}. " + prediction_sentence(e, meaning))
    else:
        doc.p(not_answered(reason, what))
        doc.bullets(evidence)
        return
    doc.p("The prediction's assumptions: ", HOW, ".")  # said once there (issue 28), not in Q6 and again in Q9
    rows = check_rows(inputs, [model])
    if rows:
        doc.p(
            "The prediction checked against the bench's GPU cells: the measured step over its predicted lower "
            "bound (1 or more when the bound holds; far above 1, the step pays costs the floors leave out)."
        )
        doc.table(
            [
                "cell",
                "GPU measured",
                "predicted for",
                "predicted lower bound ms",
                "measured ms (min\u2013max)",
                "measured / predicted",
            ],
            rows,
        )
    if evidence:  # the bench's cells are its own section's (issue 28: said once)
        doc.p(f"{what}, measured: ", Link("Where the time goes", "where-the-time-goes"), ".")


def sentence(inputs: Inputs, model: str) -> str:
    """The answer sheet's one sentence (report/sections/answers.py): measured where there are runs on both
    devices, else the prediction's bound, and for the CNN the MLP's beside it."""
    import statistics

    from mnistlab.core.timing import Ratio
    from mnistlab.measure.epochs import epoch_timing

    name = MODEL_NAMES.get(model, model)
    cpu, gpus = inputs.cpu_run(model), inputs.gpu_runs(model)
    if cpu is not None and gpus:  # missing_runs is None: runs on both devices
        gpu = gpus[0]
        a, b = epoch_timing(cpu.metrics()).steady_step_s, epoch_timing(gpu.metrics()).steady_step_s
        if not (a and b):
            return f"No steady-state epoch of the {name} on both devices yet: no fair comparison."
        dev = str(gpu.env().get("device", "the GPU"))
        return (
            f"A {name} training step takes {statistics.median(b) * 1e3:.2f} ms on {dev} against "
            f"{statistics.median(a) * 1e3:.2f} ms on the CPU: {Ratio.paired(a, b).median:.1f}x faster."
        )
    e = inputs.expected[model]
    p, other = e.prediction, inputs.expected.get("mlp") if model == "cnn" else None

    def times(x: float) -> str:
        return f"{x:.1f}x" if x < 10 else f"{x:,.0f}x"

    fast = f"At most {times(p.speedup(e.here.step)[0])} faster on the {p.gpu.name} than here"
    if other is None:
        return f"{fast}: {p.binds}-bound, {SET_BY[p.binds]}."
    o = other.prediction
    binds = f"both {p.binds}-bound" if o.binds == p.binds else f"the CNN {p.binds}-bound, the MLP {o.binds}-bound"
    return (
        f"{fast}, the MLP at most {times(o.speedup(other.here.step)[0])}: the CNN's step does "
        f"{p.cost.flops / o.cost.flops:,.0f}x the MLP's FLOPs in {p.cost.ops / o.cost.ops:.1f}x its operations "
        f"({binds})."
    )


# what each binding floor means, in the answer sheet's few words
SET_BY = {
    "launch": "its time set by issuing its operations, not by arithmetic",
    "bandwidth": "its time set by memory traffic",
    "compute": "its time set by arithmetic",
}
