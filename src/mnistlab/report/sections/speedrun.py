"""`mnistlab speedrun` (speedrun.json): the recipe, the protocol, accuracy and time over the seeds."""

from __future__ import annotations

from mnistlab.measure.speedrun import TIMED, SpeedrunResult
from mnistlab.report.document import Document, plural
from mnistlab.report.inputs import Inputs
from mnistlab.report.sections.section import Section


def speedrun_section(doc: Document, result: SpeedrunResult) -> None:
    s, r = result.summary(), result.recipe
    doc.h2(f"Speedrun: time to {result.target:g}% test accuracy")
    doc.p(f"Recipe: {r.model}, Adam with a one-cycle schedule (max lr {r.max_lr}), batch {r.batch_size}, "
          f"{plural(r.epochs, 'epoch')} over {result.train_samples:,} training images; levers: {result.levers.describe()}; "
          f"on {result.device_name}. Timed: {TIMED}.")
    if not result.complete:  # speedrun.json is rewritten after each seed: a stop keeps the finished ones
        doc.p(f"Only {plural(len(result.seeds), 'seed')} of the {result.seeds_planned} asked for finished: the "
              f"speedrun was stopped (or is still running), and every figure below is over the finished seeds.")
    doc.table(["seeds", "accuracy mean ± std", f"reached {result.target:g}%", "time median", "time range",
               "data to device (once)", "warm-up per seed (median)", "stability"],
              [[s["seeds"], f"{s['accuracy_mean']:.2f}% ± {s['accuracy_std']:.2f}",
                f"{s['reached_target']}/{s['seeds']}", f"{s['time_median_s']:.2f} s",
                f"{s['time_min_s']:.2f}-{s['time_max_s']:.2f} s", f"{s['data_s']:.2f} s",
                f"{s['warmup_median_s']:.2f} s", "stable" if result.stability.stable else "unstable"]])
    if not result.stability.stable:
        doc.p(f"The time is {result.stability.reason}.")  # the reason starts 'unstable: '
    doc.table(["seed", "test accuracy", "time (train + test eval)", "train", "test eval", "warm-up (apart)"],
              [[x.seed, f"{x.accuracy:.2f}% ({x.correct}/{x.total})", f"{x.seconds:.2f} s",
                f"{x.train_s:.2f} s", f"{x.eval_s:.2f} s", f"{x.warmup_s:.2f} s"] for x in result.seeds])


def write(doc: Document, inputs: Inputs) -> None:
    for result in inputs.speedruns:
        speedrun_section(doc, result)


SECTION = Section(write)
