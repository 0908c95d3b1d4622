"""`mnistlab speedrun` (speedrun.json): the recipe, the protocol, accuracy and time over the seeds."""

from __future__ import annotations

from mnistlab.core.words import percent, plural
from mnistlab.measure.speedrun import COLD, SpeedrunResult, p_value_text, p_words
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.sections.section import Section


def speedrun_section(doc: Document, result: SpeedrunResult) -> None:
    s, r = result.summary(), result.recipe
    doc.h2(f"Speedrun: time to {result.target:g}% test accuracy")
    test, floor = result.target_test, result.floor_s
    accuracy = (
        f"{s['accuracy_mean']:.2f}% (1 seed, no spread)"
        if s["seeds"] == 1
        else f"{s['accuracy_mean']:.2f}% ± {s['accuracy_std']:.2f}"
    )
    doc.table(
        [
            "seeds",
            "accuracy mean ± std",
            f"reached {result.target:g}%",
            f"p, mean above {result.target:g}%",
            "time median",
            "time range",
            "floor (FLOPs at the ceiling)",
            "cold start",
            "data to device (once)",
            "warm-up per seed (median)",
            "stability",
        ],
        [
            [
                s["seeds"],
                accuracy,
                f"{s['reached_target']}/{s['seeds']}",
                "-" if test.p is None else p_value_text(test.p),
                f"{s['time_median_s']:.2f} s",
                f"{s['time_min_s']:.2f}-{s['time_max_s']:.2f} s",
                "-" if floor is None else f"{floor:.2g} s",
                "-" if result.cold_s is None else f"{result.cold_s:.2f} s",
                f"{s['data_s']:.2f} s",
                f"{s['warmup_median_s']:.2f} s",
                "stable" if result.stability.stable else "unstable",
            ]
        ],
    )

    def share(x: float | None) -> str:
        return "-" if x is None else percent(x)

    def rate(x: float | None) -> str:
        return "-" if x is None else f"{x / 1e9:,.1f}"

    doc.table(
        [
            "seed",
            "test accuracy",
            "time (train + test eval)",
            "train",
            "test eval",
            "warm-up (apart)",
            "GFLOP/s",
            "of the ceiling",
        ],
        [
            [
                x.seed,
                f"{x.accuracy:.2f}% ({x.correct}/{x.total})",
                f"{x.seconds:.2f} s",
                f"{x.train_s:.2f} s",
                f"{x.eval_s:.2f} s",
                f"{x.warmup_s:.2f} s",
                rate(result.flops_per_s(x)),
                share(result.ceiling_fraction(x)),
            ]
            for x in result.seeds
        ],
    )
    smoothing = f", label smoothing {r.label_smoothing:g}" if r.label_smoothing else ""
    beta2 = f" (beta2 {r.adam_beta2:g})" if r.adam_beta2 != 0.999 else ""  # torch's default is not named
    batches = -(-result.train_samples // r.batch_size)
    trained = r.batches_per_epoch(batches)
    part = "" if trained >= batches else f", the first {trained} of each epoch's {batches} shuffled batches"
    shifts = (
        "-"
        if not r.test_shift
        else f"an image whose softmax peaks below {r.test_shift_below:g} is also "
        f"viewed shifted up and down by {plural(r.test_shift, 'pixel')}; the mean softmax counts"
    )
    doc.table(
        ["model", "optimizer", "batch", "epochs", "training images", "test-time views", "levers", "on"],
        [
            [
                r.model,
                f"Adam{beta2}, one-cycle schedule (max lr {r.max_lr}{smoothing})",
                r.batch_size,
                r.epochs,
                f"{result.train_samples:,}" + (f" ({result.dataset})" if result.dataset else "") + part,
                shifts,
                result.levers.describe(),
                result.device_name,
            ]
        ],
    )
    if not result.complete:  # speedrun.json is rewritten after each seed: a stop keeps the finished ones
        doc.p(
            f"Only {plural(len(result.seeds), 'seed')} of the {result.seeds_planned} asked for finished: the "
            f"speedrun was stopped (or is still running), and every figure here is over the finished seeds."
        )
    if result.reached < len(result.seeds):  # the recipe runs its epochs: a time is not one to the target
        doc.p(
            f"{result.reached} of {plural(len(result.seeds), 'seed')} reached {result.target:g}%: the times are "
            f"those of the recipe's {plural(r.epochs, 'epoch')}, not times to {result.target:g}%."
        )
    t = result.target_test  # the short form; test_words() also says what p is
    doc.p(
        _sentence(result.test_words()) + "."
        if t.p is None
        else f"Mean above {result.target:g}%? t = {t.t:.2f}, p {p_words(t.p)} (one-sided t-test over {t.n} seeds)."
    )
    doc.p(_floor_paragraph(result))
    doc.p(f"Cold start: {_cold(result)}.")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _floor_paragraph(result: SpeedrunResult) -> str:
    """The distance to the floor in words: FLOPs, the ceiling they are measured against, the floor time."""
    f, s = result.flops, result.summary()
    if f is None:
        return f"Arithmetic: FLOPs {result.why_not('flops')}, so no floor and no utilisation."
    rest = result.train_samples % result.recipe.batch_size
    words = (
        f"Arithmetic: {f.run / 1e9:,.2f} GFLOP per run ({f.train / 1e9:,.2f} in the training steps, "
        f"{f.step / 1e6:,.1f} MFLOP a step at batch {result.recipe.batch_size}"
        + (f", the short last batch of {rest} counted at its size" if rest else "")
        + f"; {f.eval / 1e9:,.2f} in the forward passes over the {result.test_samples:,} test images)."
    )
    if result.ceiling is None or result.floor_s is None:
        return f"{words} The ceiling was {result.why_not('ceiling')}, so no floor and no utilisation."
    return (
        f"{words} Against {result.ceiling.words()}: the median run did {s['flops_per_s_median'] / 1e9:,.1f} "
        f"GFLOP/s, {percent(s['ceiling_fraction_median'])} of it; at the ceiling a run would take "
        f"{result.floor_s:.2g} s (the floor), against the median {s['time_median_s']:.2f} s, "
        f"{s['time_median_s'] / result.floor_s:,.0f}x the floor."
    )


def _cold(result: SpeedrunResult) -> str:
    if result.cold_s is None:
        return result.why_not("cold")
    return (
        f"{result.cold_s:.2f} s from the {result.cold_from} to seed 0's result (it includes "
        f"{COLD.get(result.cold_from or '', 'what came before')}), against seed 0's warm "
        f"{result.seeds[0].seconds:.2f} s"
    )


def write(doc: Document, inputs: Inputs) -> None:
    for result in inputs.results_of(SpeedrunResult):
        speedrun_section(doc, result)


SECTION = Section(write, order=180, reads=SpeedrunResult)
