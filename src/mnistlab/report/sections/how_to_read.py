"""How to read this: every caveat and assumption of the report, said once; the sections link here (HOW).

The words the report uses in a sense of its own are a glossary (a table a reader looks things up in); the
bench's legend and the GPU prediction's assumptions follow it."""

from __future__ import annotations

from mnistlab.core.timing import UNSTABLE_SPREAD
from mnistlab.measure.profiling import MACS_VS_FLOPS
from mnistlab.measure.speedrun import TIMED, SpeedrunResult
from mnistlab.report.document import Document, Link
from mnistlab.report.inputs import Inputs
from mnistlab.report.sections.section import Section

TITLE = "How to read this"
HOW = Link(TITLE.lower(), "how-to-read-this")  # what a section links to for its caveats


def glossary(inputs: Inputs) -> list[list[str]]:
    """The report's terms that apply to these inputs, each with what it means here."""
    out = [
        [
            "measured",
            "by mnistlab, on the machine named at the top; the notebook's figures are quoted from its "
            "printed output (a Colab CPU runtime and a T4 GPU)",
        ]
    ]
    if inputs.runs:
        out += [
            [
                "first epoch",
                "each train or resume session's first epoch, shown apart from the steady state "
                "(the other epochs: median, min\u2013max); called cold only where its warm-up was "
                "timed apart",
            ],
            ["busy", "the load average exceeded the logical cores when the epoch ended"],
        ]
    out += [
        [
            "unstable",
            f"repeats that spread over more than {UNSTABLE_SPREAD:.0%} of their median, a single repeat, "
            f"or a busy machine",
        ],
        ["Nx faster", "the median of paired repeats that ran side by side: a change in load hits both alike"],
    ]
    if inputs.quick:
        cap = ((inputs.lab or {}).get("plan") or {}).get("cnn_cpu_max_steps")
        out.append(
            [
                "quick",
                "fewer epochs"
                + (f", each CNN epoch on the CPU capped at {cap} steps" if cap else "")
                + ": lower accuracies than the full plan's",
            ]
        )
    if inputs.model_codes:
        out.append(
            [
                "MACs, FLOPs",
                f"{MACS_VS_FLOPS} FLOPs are counted by torch.utils.flop_counter (matmuls and "
                f"convolutions), the backward pass as it runs",
            ]
        )
    if inputs.results_of(SpeedrunResult):
        out.append(["speedrun time", TIMED])
    return out


def write(doc: Document, inputs: Inputs) -> None:
    from mnistlab.report.sections.bench import legend
    from mnistlab.report.sections.device_question import assumptions

    doc.h2(TITLE)
    doc.table(["term", "what it means here"], glossary(inputs), css="text")
    if inputs.bench is not None:
        doc.p(legend(inputs.bench))
    if inputs.expected:
        doc.p("Assumptions of the prediction (Q6, Q9):")
        doc.bullets(assumptions(inputs.gpu))


SECTION = Section(write, order=185)
