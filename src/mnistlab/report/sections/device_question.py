"""What Q6 and Q9 share: one model on the CPU against a GPU, from the runs where there are runs on both,
else from a labelled prediction (measure/prediction.py); the bench's cells as evidence, and where the
bench also ran on a GPU, the prediction beside the measurement."""

from __future__ import annotations

from mnistlab.measure.bench import cell_sentence
from mnistlab.measure.gpus import DISPATCH_COST_S, Gpu
from mnistlab.measure.prediction import Expected, Prediction
from mnistlab.measure.published import CHECK_COSTS_S, published_check
from mnistlab.report.document import Document
from mnistlab.report.inputs import MODEL_NAMES, Inputs
from mnistlab.report.runs import device_comparisons

# what each binding floor means for the speed-up a learner should expect
MEANING = {"launch": "The GPU's arithmetic is not what limits it: the speed-up is set by how fast its operations can "
                     "be issued, which a faster GPU barely changes (fewer, larger operations would: a larger batch, "
                     "fused kernels, CUDA graphs).",
           "bandwidth": "Memory traffic sets it: more bandwidth would help, more arithmetic would not.",
           "compute": "Arithmetic sets it: the GPU's peak is what the step can use."}


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
    return ([f"{u.what}: {u.ratio.marked()}." for u in inputs.bench.speedups() if u.model == model]
            + [cell_sentence(c) for c in inputs.bench.cells if c.model == model])


def not_answered(reason: str, what: str) -> str:
    """The one sentence of a question whose runs are absent, before the evidence it still has."""
    return f"Not answered here: {reason}. {what}, measured by the bench:"


def dispatch_words(e: Expected) -> str:
    """How the answer moves with the one assumption that is not a datasheet's: the cost of an operation."""
    lo, hi = min(CHECK_COSTS_S), max(CHECK_COSTS_S)
    at = [Prediction.of(e.prediction.cost, e.prediction.gpu, e.prediction.dtype, c).speedup(e.here.step)[0]
          for c in (hi, lo)]
    return (f"at {lo * 1e6:g}\u2013{hi * 1e6:g} us per operation instead of {DISPATCH_COST_S * 1e6:g}, at most "
            f"{at[0]:,.1f}\u2013{at[1]:,.1f}x")


def prediction_sentence(e: Expected) -> str:
    p = e.prediction
    return (f"On the {p.gpu.name}, the {MODEL_NAMES.get(e.model, e.model)}'s training step would take {p.words()}; "
            f"{e.speedup_words()}; {dispatch_words(e)}. {MEANING[p.binds]}")


def assumptions(gpu: Gpu) -> list[str]:
    """The prediction's assumptions, one short item each, and the model's check against a published run."""
    note = f"; {gpu.note}" if gpu.note else ""
    run, preds = published_check()
    at = {p.dispatch_cost_s: p for p in preds}[DISPATCH_COST_S]
    lo, hi = min(p.bound_s for p in preds), max(p.bound_s for p in preds)
    held = (f"it holds, the published time {run.seconds / at.bound_s:.1f}x the bound"
            if all(p.holds(run.seconds) for p in preds)
            else "it does NOT hold: the published time is below it, so the model is wrong")
    return [f"the {gpu.name}'s figures are its vendor's dense peaks ({gpu.source}{note});",
            "float32 matmuls run at the FP32 rate (PyTorch's default matmul precision, \"highest\"); only "
            "convolutions may use TF32 (cuDNN's default);",
            f"every operation costs at least {DISPATCH_COST_S * 1e6:g} us to issue: assumed, not measured (the answer "
            f"at {min(CHECK_COSTS_S) * 1e6:g}\u2013{max(CHECK_COSTS_S) * 1e6:g} us is given beside it);",
            "the operations, bytes and FLOPs are those counted for the step here, each operation reading its inputs "
            "and writing its outputs once;",
            "each floor is a least time: the step takes at least the largest, so the speed-up is at most what is said;",
            f"checked against a published run: {run.name} (a small CNN, one epoch to 99%) took {run.seconds:.2f} s on "
            f"a {run.gpu}; this model's lower bound for it is {at.bound_s:.3f} s ({lo:.3f}\u2013{hi:.3f} s at "
            f"{min(CHECK_COSTS_S) * 1e6:g}\u2013{max(CHECK_COSTS_S) * 1e6:g} us per operation): {held}."]


def check_rows(inputs: Inputs, models: list[str]) -> list[list[str]]:
    """Prediction beside measurement for each model the bench also ran on a GPU."""
    rows = []
    for e in (inputs.expected[m] for m in models if m in inputs.expected):
        if e.there is None or e.check is None or e.ratio is None:
            continue
        sp = e.there.step
        rows.append([e.there.key, inputs.bench.devices.get("cuda", "cuda"), e.check.gpu.name,
                     f"{e.check.bound_s * 1e3:.3f} ({e.check.binds}-bound)",
                     f"{sp.median * 1e3:.3f} ({sp.min * 1e3:.3f}\u2013{sp.max * 1e3:.3f})", f"{e.ratio:.2f}x"])
    return rows


def answer(doc: Document, inputs: Inputs, model: str, evidence: list[str], what: str) -> None:
    """The question's answer: from the runs, else by prediction, else why not; then the prediction's assumptions
    (listed once: the first question to predict lists them, the other points to it), its check against a GPU the
    bench measured, and the bench's evidence (each cell's one judgement, Cell.bound)."""
    reason, e = missing_runs(inputs, model), inputs.expected.get(model)
    if reason is None:
        doc.p(comparison(inputs, model))
        if e:
            doc.p("Beside the measurement, a prediction (not measured). " + prediction_sentence(e))
    elif e:
        doc.p(f"Answer, by prediction rather than measurement, since there is {reason}. " + prediction_sentence(e))
    else:
        doc.p(not_answered(reason, what))
        doc.bullets(evidence)
        return
    if e:
        first = next(iter(inputs.expected))
        if first == model:
            doc.p("Assumptions of the prediction:")
            doc.bullets(assumptions(inputs.gpu))
        else:
            doc.p(f"Assumptions of the prediction: as listed under the {MODEL_NAMES.get(first, first)}'s question.")
    rows = check_rows(inputs, [model])
    if rows:
        doc.p("The prediction checked against the bench's GPU cells: the measured step over its predicted lower "
              "bound (1 or more when the bound holds; far above 1, the step pays costs the floors leave out).")
        doc.table(["cell", "GPU measured", "predicted for", "predicted lower bound ms", "measured ms (min\u2013max)",
                   "measured / predicted"], rows)
    if evidence:
        doc.p(f"{what}, measured by the bench:")
        doc.bullets(evidence)
