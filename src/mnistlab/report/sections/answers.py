"""The answer sheet, first in the report: the machine in one line, what is unfinished, the run's stability
said once, and each of the notebook's questions with its one-sentence answer, how it was answered
(measured, predicted, or not, and why), and a link to its section."""

from __future__ import annotations

from mnistlab.core.timing import is_busy
from mnistlab.core.words import plural
from mnistlab.measure.epochs import epoch_timing
from mnistlab.report.document import Document, Link
from mnistlab.report.inputs import Inputs
from mnistlab.report.runs import config
from mnistlab.report.sections.section import Section

HEADERS = ["Q", "the notebook asks", "the answer, in one sentence", "how"]


def machine_line(inputs: Inputs) -> str | None:
    """'Machine: AMD EPYC, 2 logical cores, torch 2.13.0+cpu on 1 thread; no GPU.'"""
    env = inputs.env
    if not env:
        return None
    threads = env.get("torch_threads")
    gpus = ", ".join(env.get("cuda_devices") or []) or ("Apple MPS" if env.get("mps_available") else "no GPU")
    cores = f", {plural(env['cpu_count'], 'logical core')}" if env.get("cpu_count") else ""
    on = f" on {plural(threads, 'thread')}" if isinstance(threads, int) else ""
    return f"Machine: {env['cpu']}{cores}, torch {env['torch']}{on}; {gpus}."


def plan_line(inputs: Inputs) -> str | None:
    plan = (inputs.lab or {}).get("plan") or {}
    if not plan:
        return None
    cnn = (
        f"CNN {plan['cnn_epochs']} x {plan['cnn_cpu_max_steps']} steps"
        if plan.get("cnn_cpu_max_steps")
        else f"CNN {plural(plan['cnn_epochs'], 'epoch')}"
    )
    longer = f", a fresh CNN {plan['cnn_longer_epochs']} epochs" if plan.get("cnn_longer_epochs") else ""
    return (
        f"Plan: {'quick' if inputs.quick else 'full'} (MLP {plan['mlp_epochs']} + {plan['mlp_epochs']} epochs, "
        f"{cnn}{longer}, bench {plan['bench_repeats']} x {plan['bench_steps']} steps, speedrun "
        f"{plural(plan['speedrun_seeds'], 'seed')})."
    )


def stability_line(inputs: Inputs) -> str:
    """The run's stability, once for the whole report: was the machine busy, and what was unstable."""
    busy, epochs = 0, 0
    for r in inputs.runs:
        t = epoch_timing(r.metrics())
        busy, epochs = busy + len(t.busy_epochs), epochs + len(r.metrics())
    bench = inputs.bench
    cells = bench.cells if bench else []
    unstable = [c.key for c in cells if not c.stability.stable]
    loud = []
    snaps = [(w, x) for w, x in (bench.load if bench else {}).items() if x and x.get("load_avg_1m") is not None]
    if any(is_busy(x["load_avg_1m"], x.get("cpu_count")) for _, x in snaps):
        loads = " and ".join(f"{x['load_avg_1m']:.1f} at its {w}" for w, x in snaps)
        loud.append(f"the bench ran beside other work (load average {loads}, on {snaps[0][1].get('cpu_count')} cores)")
    if busy:
        loud.append(f"{busy} of {plural(epochs, 'epoch')} ended busy")
    if unstable:
        loud.append(f"{len(unstable)} of {plural(len(cells), 'bench cell')} unstable")
    if not loud:
        recorded = bool(snaps) or any("load_1m" in row for r in inputs.runs for row in r.metrics())
        if not recorded:
            return "Stability: not judged (no load average was recorded with these measurements)."
        measured = "the bench's cells and the training epochs" if bench and inputs.runs else "what was repeated"
        return f"Stability: the machine was quiet, and {measured} were stable."
    return (
        "Stability (said once, here): " + "; ".join(loud) + ". The times are this busy machine's; the ratios "
        "of side-by-side repeats are the robust part. Rerun on a quiet machine to compare times."
    )


def rows(inputs: Inputs) -> list[list[object]]:
    from mnistlab.report.sections import questions

    out: list[list[object]] = []
    for s in questions():
        q = s.question
        assert q is not None  # questions() are the sections that answer one
        reason = s.missing(inputs)
        if reason is not None:
            out.append([q, s.ask, f"Not answered: {reason}.", "not answered"])
            continue
        how = f"predicted for the {inputs.gpu.name}" if s.predicted(inputs) else "measured"
        out.append([Link(q, q.lower()), s.ask, s.sentence(inputs) or "see its section", how])
    return out


def write(doc: Document, inputs: Inputs) -> None:
    from mnistlab.report.lab_state import unfinished_line

    said = [line for line in (machine_line(inputs), plan_line(inputs)) if line]
    if said:
        doc.p(" ".join(said))
    unfinished = unfinished_line(inputs)
    if unfinished:
        doc.p(unfinished)
    elif inputs.unfinished:
        doc.p("Runs with no finished epoch yet (left out): " + ", ".join(r.name for r in inputs.unfinished) + ".")
    if inputs.runs or inputs.bench:
        doc.p(stability_line(inputs))
    trained_on = sorted({str(config(r).get("dataset")) for r in inputs.runs})
    if len(trained_on) > 1:  # a comparison across datasets compares the data as much as the models
        doc.p(
            f"These runs were trained on {len(trained_on)} different datasets ({', '.join(trained_on)}): where "
            f"this report compares them, their numbers differ by the data as well as by the model and device."
        )
    doc.table(HEADERS, rows(inputs), css="answers")


SECTION = Section(write, order=1)
