"""Q9: the CNN on the CPU against the GPU, and how it differs from the MLP.

Every sentence about what limits a step is the bench cell's one judgement (Cell.bound) in
measure/bench.py's words, or the prediction's (measure/prediction.py): this section words no bound of its own."""

from __future__ import annotations

from mnistlab.core.words import percent
from mnistlab.measure.bench import bound_label, cell_sentence
from mnistlab.measure.decomposition import ARITHMETIC
from mnistlab.measure.prediction import Expected
from mnistlab.report.document import Document
from mnistlab.report.inputs import MODEL_NAMES, Inputs
from mnistlab.report.plots import cpu_roofs, plot_decomposition, plot_roofline
from mnistlab.report.sections.device_question import answer, bench_lines, missing, predicted, sentence
from mnistlab.report.sections.section import Section


def _contrast(inputs: Inputs) -> list[str]:
    """The MLP's CPU cell beside the CNN's, and what their two bounds imply together."""
    bench = inputs.bench
    m, c = (bench.cell("resident", "cpu", x) if bench else None for x in ("mlp", "cnn"))
    if not (m and c):
        return []
    out = [cell_sentence(m)]  # its key names the MLP
    if c.bound == ARITHMETIC and m.bound != ARITHMETIC:
        out.append(
            "The CNN's CPU step is bound by arithmetic and the MLP's is not: a device with more arithmetic "
            "throughput has more of the CNN's step to speed up."
        )
    return out


def roofline_caption(inputs: Inputs) -> str:
    """The roofline's caption: what it draws, and the judgement each measured point carries (Cell.bound)."""
    expected = list(inputs.expected.values())
    roofs = ", ".join(
        f"{level} for the {' and '.join(MODEL_NAMES.get(m, m) for m in models)}"
        for level, _, models in cpu_roofs(expected)
    )

    def judged(e: Expected) -> str:
        d = e.here.decomposition
        share = f" ({percent(d.fixed_share)} fixed)" if d is not None and e.here.judged_by == "decomposition" else ""
        return f"the {MODEL_NAMES.get(e.model, e.model)}'s step is {bound_label(e.here.bound)}{share}"

    said = ", ".join(judged(e) for e in expected)
    return (
        f"Roofline: each step measured on this CPU (filled; its roofs at the bandwidth of its working set: "
        f"{roofs}) and predicted on the {inputs.gpu.name} (open). Measured here: {said}; a fixed per-step "
        f"cost keeps a point below its roofs"
    )


def _predicted_contrast(inputs: Inputs) -> str | None:
    """How the two predictions differ: the same kind of floor, but a CNN step with far more work per operation."""
    m, c = inputs.expected.get("mlp"), inputs.expected.get("cnn")
    if not (m and c):
        return None
    flops = c.prediction.cost.flops / m.prediction.cost.flops
    ops = c.prediction.cost.ops / m.prediction.cost.ops
    return (
        f"Against the MLP, predicted: the CNN's step does {flops:,.0f}x the MLP's FLOPs in {ops:.1f}x its "
        f"operations; on the {inputs.gpu.name} the MLP's step is {m.prediction.binds}-bound and the CNN's "
        f"{c.prediction.binds}-bound, so the CNN could gain at most {c.prediction.speedup(c.here.step)[0]:,.1f}x "
        f"over this CPU and the MLP at most {m.prediction.speedup(m.here.step)[0]:,.1f}x: the more work each "
        f"operation carries, the more a GPU has to speed up."
    )


def write(doc: Document, inputs: Inputs) -> None:
    evidence = bench_lines(inputs, "cnn") + _contrast(inputs)
    if missing(inputs, "cnn") and not evidence:
        return
    doc.h2("Q9. CNN on the CPU vs the GPU, and how it differs from the MLP")
    answer(doc, inputs, "cnn", evidence, "What limits the CNN, and the MLP beside it")
    contrast = _predicted_contrast(inputs)
    if contrast:
        doc.p(contrast)
    name = inputs.bench_dir.name if inputs.bench_dir else "bench"
    if inputs.expected and inputs.bench:
        doc.image(
            plot_roofline(inputs.bench, inputs.gpu, inputs.figs / f"{name}-roofline.png"), roofline_caption(inputs)
        )
    cpu = [d for d in inputs.bench.decompositions if d.device == "cpu"] if inputs.bench else []
    if cpu:  # the measurement the bound reads, beside the roofline
        doc.image(
            plot_decomposition(cpu, inputs.figs / f"{name}-decomposition.png"),
            "What the bound reads: each step on this CPU against its batch (log\u2013log), with the fitted "
            "fixed + per-sample line (dashed: the fixed part)",
        )


SECTION = Section(
    write,
    "Q9",
    lambda inputs: missing(inputs, "cnn"),
    lambda inputs: predicted(inputs, "cnn"),
    order=120,
    sentence=lambda inputs: sentence(inputs, "cnn"),
    ask="CNN on CPU vs GPU; how does it differ from the MLP?",
)
