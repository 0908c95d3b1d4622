"""The lab report, rebuilt from run directories alone: report.md and a self-contained report.html.

Every number in it is read from the runs (metrics.csv, test.json, env.json, bench.json) or
computed from the model code (parameter and FLOP counts); every observation is a sentence
computed from those numbers. A run of your own model (a spec) is summarised and profiled from
the code it was trained with: for a file spec, the run's copy, once its SHA-256 is checked.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from mnistlab.core.defaults import DEFAULT_BATCH_SIZE
from mnistlab.core.schema import check_schema, read_result
from mnistlab.measure.bench import COMPUTE_BOUND_UTILISATION, PHASES, BenchResult, Cell, cell_sentence, observations
from mnistlab.measure.levers_bench import LeversResult
from mnistlab.measure.levers_bench import observations as levers_observations
from mnistlab.measure.scaling import ScalingResult, scaling_observations
from mnistlab.measure.speedrun import TIMED, SpeedrunResult
from mnistlab.measure.timing import UNSTABLE_SPREAD, Ratio
from mnistlab.report.document import Document, percent, plural
from mnistlab.core.environment import format_environment
from mnistlab.core.errors import CheckpointError, MnistlabError
from mnistlab.data.datasets import get_dataset
from mnistlab.measure.epochs import epoch_timing
from mnistlab.report.plots import plot_bench, plot_epoch_times, plot_label_histogram, plot_runs
from mnistlab.measure.profiling import MACS_VS_FLOPS, profile_model
from mnistlab.core.atomicfile import write_atomic
from mnistlab.core.rundir import CONFIG, ENV, TEST, RunDir, read_json_object
from mnistlab.data.datasets import plain_name
from mnistlab.training.config import check_run_config
from mnistlab.measure.summary import summarize
from mnistlab.data.datasets import DataShape
from mnistlab.training.models import DEFAULT_SHAPE, ModelCode, model_code, model_code_for_run

LAB_FILE = "lab.json"

# What the report reads from each file, checked before use (every file is untrusted): a type name,
# {key: schema} for an object (a key ending in '?' may be absent), [schema] for a list; a type name
# ending in '?' also allows null.
TEST_SCHEMA = {"loss": "number", "accuracy": "number", "correct": "int", "total": "int", "seconds": "number"}
ENV_SCHEMA = {"torch": "text", "cuda_version": "text?", "numpy": "text", "python": "text", "mnistlab": "text",
              "cpu": "text", "cpu_count": "int?", "torch_threads": "int", "cuda_available": "bool",
              "cuda_devices": ["text"], "mps_available": "bool", "device?": "text"}
RUN_ENV_SCHEMA = {k.rstrip("?") + "?": v for k, v in ENV_SCHEMA.items()}  # a run's env.json: typed, all optional
DATA_SCHEMA = {"dataset": "text", "train_samples": "int", "test_samples": "int", "image_shape": ["int"],
               "stored_dtype": "text", "model_input": {"shape": ["int"], "dtype": "text", "transform": "text"},
               "label_dtype": "text", "first_train_label": "any", "pixel_mean": "number", "pixel_std": "number"}
LAB_SCHEMA = {"runs": ["text"], "bench?": "text?", "speedrun?": "text?", "quick?": "bool", "env?": {**ENV_SCHEMA}, "data?": DATA_SCHEMA,
              "split?": "text", "seed?": "int", "models?": ["text"]}
def _config(run: RunDir) -> dict[str, Any]:
    return check_run_config(run / CONFIG)


def _test(run: RunDir) -> dict[str, Any] | None:
    test = run.test()
    if test is not None:
        check_schema(test, TEST_SCHEMA, str(run / TEST))
    return test


def _env(run: RunDir) -> dict[str, Any]:
    env = run.env()
    if env:
        check_schema(env, RUN_ENV_SCHEMA, str(run / ENV))
    return env


def _ratio(a: float, b: float) -> float:
    """a / b that a zero (a loss that reached exactly 0, an instant epoch) cannot crash."""
    return a / b if b else (math.inf if a else 1.0)
OVERFIT_RATIO = 1.5  # validation loss over training loss beyond which we call it overfitting
FIGURES = "figures"


def _fmt_s(x: float) -> str:
    return f"{x:.2f}"


def training_observations(run: RunDir) -> list[str]:
    """Question 4: train longer, or stop early? Read off the validation curve."""
    rows = run.metrics()
    if len(rows) < 2:
        return [f"{run.name}: only {plural(len(rows), 'epoch')}, too few to judge the trend."]
    best = min(rows, key=lambda r: r["val_loss"])
    last = rows[-1]
    n, b = int(last["epoch"]), int(best["epoch"])
    out = []
    if b == n:
        k = min(5, len(rows) - 1)
        before = rows[-1 - k]["val_loss"]
        drop = _ratio(before - last["val_loss"], before)
        out.append(f"{run.name}: validation loss was still falling at the last epoch ({last['val_loss']:.4f} at "
                   f"epoch {n}, down {percent(drop)} over the last {plural(k, 'epoch')}): training longer may still help, "
                   f"with diminishing returns.")
    else:
        out.append(f"{run.name}: validation loss was lowest at epoch {b} ({best['val_loss']:.4f}) and did not "
                   f"improve in the {plural(n - b, 'epoch')} after it (epoch {n}: {last['val_loss']:.4f}); training longer "
                   f"does not help, and early stopping (--early-stop {max(1, min(3, n - b))}) would keep epoch {b}.")
    gap, ratio = last["val_loss"] - last["train_loss"], _ratio(last["val_loss"], last["train_loss"])
    if gap <= 0:
        verdict = ("validation loss is below the training loss (which is averaged over an epoch of still-changing "
                   "weights): no sign of overfitting.")
    elif ratio > OVERFIT_RATIO:
        verdict = "the model fits the training data clearly better than unseen data: it has started to overfit."
    else:
        verdict = "the two are close: no sign of overfitting yet."
    times = f"{ratio:.2f}x" if math.isfinite(ratio) else "no ratio: the training loss is 0"
    out.append(f"{run.name}: at the end the validation loss is {last['val_loss']:.4f} against a training loss of "
               f"{last['train_loss']:.4f} ({times}); {verdict}")
    return out


def _capped(run: RunDir) -> int | None:
    """The step limit of a run whose epochs were capped below a full epoch (quick mode), else None."""
    cap = _config(run).get("max_steps")
    rows = run.metrics()
    return int(cap) if cap and rows and all(int(r["steps"]) <= int(cap) for r in rows) else None


def _epoch_word(run: RunDir) -> str:
    cap = _capped(run)
    return f"epoch ({cap} steps)" if cap else "epoch"


def _run_summary_row(run: RunDir) -> list[str]:
    cfg, rows, test = _config(run), run.metrics(), _test(run) or {}
    t = epoch_timing(rows)
    cap = _capped(run)
    n = f"{len(rows)} ({cap} steps each)" if cap else str(len(rows))
    if t.steady_s:
        steady = f"{t.steady_median:.2f} ({t.steady_min:.2f}\u2013{t.steady_max:.2f})"
        step = f"{statistics.median(t.steady_step_s) * 1e3:.2f}" if t.steady_step_s else "-"
        sps = f"{statistics.median(t.steady_samples_per_s):,.0f}"
    else:
        steady = step = sps = "- (no steady epoch)"
    return [run.name, cfg["model"], _env(run).get("device", cfg["device"]), n,
            ", ".join(_fmt_s(x) for x in t.cold_s) or "-", steady, step, sps,
            f"{test['accuracy']:.2%}" if test else "-", _fmt_s(test["seconds"]) if test else "-"]


RUN_HEADERS = ["run", "model", "device", "epochs", "first (cold) epoch s", "steady train s/epoch median (min\u2013max)",
               "steady ms/step", "steady samples/s", "test accuracy", "test s"]


def _dev(run: RunDir) -> str:
    return str(_env(run).get("device", "cpu")).split(":")[0]


def _step_ratio_words(cpu: list[float], dev: list[float], name: str) -> str:
    """Median per-step times, and the one Ratio (measure/timing.py) of the steady epochs paired in order."""
    mc, md = statistics.median(cpu), statistics.median(dev)
    return (f"a training step on {name} took {md * 1e3:.2f} ms against {mc * 1e3:.2f} ms on the CPU: {name} vs the "
            f"CPU {Ratio.paired(cpu, dev).marked()}")


def device_comparisons(runs: list[RunDir], model: str | None = None) -> list[str]:
    """Questions 6 and 9, from the training runs: which device was faster for each model, by how much.
    Per training step (equal work: quick mode caps the CPU CNN's epochs, not the GPU's), and from
    steady-state epochs only (the cold first epoch of each session is left out)."""
    out = []
    by_model: dict[str, dict[str, RunDir]] = {}
    for r in runs:
        by_model.setdefault(_config(r)["model"], {})[_dev(r)] = r
    for m, devs in by_model.items():
        cpu = devs.get("cpu")
        if cpu is None or (model is not None and m != model):
            continue
        for dev, run in devs.items():
            if dev == "cpu":
                continue
            a, b = epoch_timing(cpu.metrics()).steady_step_s, epoch_timing(run.metrics()).steady_step_s
            if not a or not b:
                out.append(f"{m}: no steady-state epoch on both devices (each run's first epoch is cold), "
                           f"so no fair comparison.")
                continue
            out.append(f"{m}: {_step_ratio_words(a, b, dev)} (steady-state epochs, each device's paired in order; "
                       f"per step so that runs with different step limits compare equal work).")
    return out


def _model_codes(runs: list[RunDir], lab_models: list[str]) -> dict[str, tuple[ModelCode, DataShape]]:
    """Each model spec of the runs (first run wins), with the code to build it and its data's shape."""
    codes: dict[str, tuple[ModelCode, DataShape]] = {}
    for r in runs:
        cfg = _config(r)
        if cfg["model"] not in codes:
            try:
                shape = get_dataset(cfg["dataset"]).shape
            except MnistlabError:  # a dataset row no longer defined: MNIST's shape
                shape = DEFAULT_SHAPE
            codes[cfg["model"]] = (model_code_for_run(r.path, cfg["model"]), shape)
    return codes or {m: (model_code(m), DEFAULT_SHAPE) for m in lab_models}


def _classify(paths: list[Path]) -> tuple[dict[str, Any] | None, Path, list[RunDir], list[Path]]:
    """Expand a lab directory or a list of run and bench directories."""
    if len(paths) == 1 and (paths[0] / LAB_FILE).is_file():
        root = paths[0]
        lab = read_json_object(root / LAB_FILE)
        check_schema(lab, LAB_SCHEMA, str(root / LAB_FILE))
        for name in [*lab["runs"], *([lab["bench"]] if lab.get("bench") else [])]:
            if not plain_name(name) or not (root / name).is_dir():
                raise CheckpointError(f"{root / LAB_FILE}: lists {name!r}, which is not a folder in {root}")
        if lab.get("data") and ("split" not in lab or "seed" not in lab):
            raise CheckpointError(f"{root / LAB_FILE}: has data but no split or seed")
        runs = [RunDir(root / name) for name in lab["runs"]]
        benches = [root / lab["bench"]] if lab.get("bench") else []
        return lab, root, runs, benches
    runs, benches = [], []
    for p in paths:
        if (p / BenchResult.FILE).is_file():
            benches.append(p)
        elif (p / "config.json").is_file():
            runs.append(RunDir(p))
        elif not any((p / f).is_file() for f in EXTRA_SECTIONS):  # scaling, levers, speedrun: own sections
            raise CheckpointError(f"{p}: neither a run directory, a bench or scaling directory nor a lab directory")
    return None, paths[0], runs, benches


def _scaling_section(doc: Document, result: ScalingResult) -> None:
    """mnistlab bench --nproc: one process against N, and the all-reduce's share of a step."""
    rows = [[c.model, c.device, c.processes, f"{c.step_median_s * 1e3:.2f}",
             f"{c.step.min * 1e3:.2f}\u2013{c.step.max * 1e3:.2f}", f"{c.samples_per_s:,.0f}",
             f"{c.communication_share:.0%}", "stable" if c.stability.stable else "unstable"] for c in result.cells]
    doc.h2("Data-parallel scaling (mnistlab bench --nproc)")
    doc.table(["model", "device", "processes", "ms/step (median)", "min\u2013max", "samples/s",
               "all-reduce share", "stability"], rows)
    doc.p("Each configuration ran in fresh processes at the same global batch; the all-reduce share is the "
          "step as DDP trains against the same step under no_sync() (compute alone).")
    doc.bullets(scaling_observations(result))


def _bench_cell_row(c: Cell) -> list[str]:
    star = "*" if c.extrapolated else ""
    return [c.key, f"{c.epoch_s_median:.2f}{star} ({c.epoch_s_min:.2f}\u2013{c.epoch_s_max:.2f})",
            f"{c.step_median_s * 1e3:.3f}", f"{c.samples_per_s:,.0f}",
            f"{c.warmup_s[0] * 1e3:.2f}" if c.warmup_s else "-",
            *(f"{c.share(p):.0%}" for p in PHASES),
            f"{c.achieved_flops_per_s / 1e9:.1f}", f"{c.utilisation:.1%}", c.bound,
            "stable" if c.stability.stable else "unstable"]


def _runs_of(runs: list[RunDir], model: str) -> list[RunDir]:
    return [r for r in runs if _config(r).get("model") == model]


def _cpu_run(runs: list[RunDir], model: str) -> RunDir | None:
    return next((r for r in _runs_of(runs, model) if _dev(r) == "cpu"), None)


def _gpu_runs(runs: list[RunDir], model: str) -> list[RunDir]:
    return [r for r in _runs_of(runs, model) if _dev(r) != "cpu"]


def _bench_lines(bench: BenchResult | None, model: str) -> list[str]:
    """The bench's speed-ups and cell sentences about one model, selected by their fields."""
    if not bench:
        return []
    return ([f"{u.what}: {u.ratio.marked()}." for u in bench.speedups() if u.model == model]
            + [cell_sentence(c) for c in bench.cells if c.model == model])


def _run_section(doc: Document, r: RunDir, figs: Path, upto: int | None = None) -> None:
    """A run's settings, loss plot, epoch table (cold epochs marked; capped epochs labelled) and test line."""
    rows = r.metrics()
    cfg = _config(r)
    sessions = sorted({int(x.get("session", 1)) for x in rows})
    doc.p(f"{r.name}: {cfg['model']} on {cfg['dataset']}, batch {cfg['batch_size']}, SGD lr {cfg['lr']} "
          f"momentum {cfg['momentum']}, seed {cfg['seed']}"
          + (f", at most {cfg['max_steps']} steps per epoch" if cfg.get("max_steps") else "")
          + (f"; trained in {len(sessions)} sessions (resumed; dotted line on the plots)" if len(sessions) > 1 else "")
          + ".")
    after = plural(len(rows), "epoch")
    f = plot_runs([r], figs / f"{r.name}-loss.png", title=f"{r.name}: loss after {after}")
    doc.image(f, f"{r.name}: train and validation loss after {after} (log scale)")
    t = epoch_timing(rows)
    cold = set(t.cold_epochs)
    doc.table([_epoch_word(r), "train loss", "val loss", "val accuracy", "train s", "val s", "samples/s"],
              [[int(x["epoch"]), f"{x['train_loss']:.4f}", f"{x['val_loss']:.4f}", f"{x['val_accuracy']:.2%}",
                _fmt_s(x["train_seconds"]) + (" (cold)" if int(x["epoch"]) in cold else ""),
                _fmt_s(x["val_seconds"]), f"{x['samples_per_s']:,.0f}"] for x in rows])
    test = _test(r)
    if test:
        doc.p(f"{r.name} test set: loss {test['loss']:.4f}, accuracy {test['accuracy']:.2%} "
              f"({test['correct']}/{test['total']}), evaluated in {test['seconds']:.2f} s.")


def build_report(paths: list[Path], out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write report.md and report.html, with their figures folder, into `out_dir`: by default a lab
    directory itself (the report's home), else the current directory (a reader writes into no run).
    Sections follow the notebook's questions (Q1 ... Q10, its own numbering), each answered in a
    sentence from the measured figures."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_dir():
            raise CheckpointError(f"{p}: no such directory")
    lab, root, runs, benches = _classify(paths)
    unfinished = [r for r in runs if not r.metrics()]  # started, no epoch recorded yet: nothing to show
    runs = [r for r in runs if r not in unfinished]
    out_dir = Path(out_dir or (root if lab else Path.cwd()))
    figs = out_dir / FIGURES
    figs.mkdir(parents=True, exist_ok=True)
    quick = bool(lab and lab.get("quick"))
    title = "mnistlab report" + (" (quick run)" if quick else "")
    doc = Document(title)
    if quick:
        doc.p("This was a quick run (mnistlab lab --quick): fewer epochs and a step limit for the CNN on the CPU "
              "(its epochs are labelled with their step count in the tables), so accuracies are below what the "
              "full plan reaches. Run mnistlab lab for the full plan.")
    if unfinished:
        doc.p("Runs with no finished epoch yet (left out): " + ", ".join(r.name for r in unfinished) + ".")
    doc.p("Each section answers one of the course notebook's questions (Q1 to Q10, the notebook's own numbering) "
          "from the figures measured in this run. Every time is for this machine; the first epoch of each "
          "training session is cold (set-up and first-call costs) and is reported apart from the steady state.")
    bench = read_result(BenchResult, benches[0]) if benches else None

    env = (lab or {}).get("env") or (_env(runs[0]) if runs else None)
    if env and all(k.endswith("?") or k in env for k in ENV_SCHEMA):  # a partial env.json has no section 1
        doc.h2("Environment (the notebook's torch version and CUDA check)")
        doc.pre(format_environment(env))

    d = (lab or {}).get("data")
    if d:
        doc.h2("Q1. The data: what is the sample, what is the label, their shapes and dtypes")
        doc.p(f"Answer: the first training element is a pair: the sample, an image of shape {d['image_shape']} "
              f"stored as {d['stored_dtype']} and given to the model as {d['model_input']['shape']} "
              f"{d['model_input']['dtype']} (a batch of {DEFAULT_BATCH_SIZE} is [{DEFAULT_BATCH_SIZE}, {', '.join(map(str, d['model_input']['shape']))}]), "
              f"and the label, an {d['label_dtype']} class index, here {d['first_train_label']}.")
        doc.table(["dataset", "train", "test", "image", "on disk", "model input", "labels", "first label"],
                  [[d["dataset"], f"{d['train_samples']:,}", f"{d['test_samples']:,}", str(d["image_shape"]),
                    d["stored_dtype"], f"{d['model_input']['shape']} {d['model_input']['dtype']}",
                    d["label_dtype"], d["first_train_label"]]])
        doc.p(f"Normalisation: {d['model_input']['transform']}; measured pixel mean {d['pixel_mean']:.6f}, "
              f"std {d['pixel_std']:.6f}. The training set is split {lab.get('split', '')} with seed "
              f"{lab.get('seed', '')}.")
        for name, caption in (("first-sample.png", f"The first training sample, label {d['first_train_label']}"),
                              ("samples.png", "The first training samples with their labels")):
            if (root / name).is_file():
                doc.image(root / name, caption)
        counts = d.get("train_label_counts"), d.get("test_label_counts")
        classes = d.get("classes") or [str(i) for i in range(len(counts[0] or []))]
        if counts[0] and counts[1] and len(counts[0]) == len(counts[1]) == len(classes):
            few, many = min(range(len(classes)), key=counts[0].__getitem__), max(range(len(classes)), key=counts[0].__getitem__)
            skew = counts[0][many] / max(1, counts[0][few])
            doc.p(f"Label histogram: the classes are {'close to balanced' if skew <= 1.25 else 'not balanced'}: the "
                  f"rarest training label is {classes[few]} ({counts[0][few]:,}) and the most common "
                  f"{classes[many]} ({counts[0][many]:,}), {skew:.2f}x as many.")
            doc.table(["label", "train", "test"], [[c, f"{a:,}", f"{b:,}"] for c, a, b in zip(classes, *counts)])
            doc.image(plot_label_histogram(classes, counts[0], counts[1], figs / "labels.png"),
                      "Label histogram of the training and test sets")

    codes = _model_codes(runs, (lab or {}).get("models", []))
    if codes:
        doc.h2("The models (the notebook's MyModule, MLP and CNN cells)")
        for m, (code, shape) in codes.items():
            sm = summarize(code, batch_size=64, shape=shape)
            doc.p(f"{m}: {sm.total:,} parameters ({sm.trainable:,} trainable); input {list(sm.input_shape)} gives "
                  f"output {list(sm.output_shape)}.")
            doc.pre(sm.tree)
            doc.table(["state_dict key", "shape", "parameters"], [[n, str(list(sh)), f"{c:,}"] for n, sh, c in sm.parameters])

    if runs:
        doc.h2("Training runs at a glance")
        doc.table(RUN_HEADERS, [_run_summary_row(r) for r in runs])
        doc.p("Steady state: every epoch but the first of each train/resume session; ms/step and samples/s are "
              "steady-state medians, so runs with different step limits compare equal work.")

    mlp = _cpu_run(runs, "mlp")
    if mlp:
        rows = mlp.metrics()
        sessions = sorted({int(x.get("session", 1)) for x in rows})
        first = [x for x in rows if int(x.get("session", 1)) == sessions[0]]
        n1 = int(first[-1]["epoch"])
        first_n = plural(n1, "epoch")
        doc.h2(f"Q2. Training and validation loss of the MLP over its first {first_n}")
        doc.p(f"Answer: over the first {first_n} the training loss fell from {first[0]['train_loss']:.4f} to "
              f"{first[-1]['train_loss']:.4f} and the validation loss from {first[0]['val_loss']:.4f} to "
              f"{first[-1]['val_loss']:.4f} (one graph, log-scale y).")
        f = plot_runs([mlp], figs / f"{mlp.name}-loss-{n1}.png", upto_epoch=n1, title=f"{mlp.name}: loss after {first_n}")
        doc.image(f, f"{mlp.name}: train and validation loss after {first_n} (log scale)")

        t = epoch_timing(rows)
        test = _test(mlp)
        more = len(rows) - n1
        doc.h2("Q3. Time per epoch, and training for more epochs (the notebook's unnumbered question between Q2 and Q4)")
        doc.p(f"Answer: {t.words()}" + (f"; the run was resumed for {plural(more, 'more epoch')}, which took "
                                        f"{sum(x['epoch_seconds'] for x in rows[n1:]):.2f} s with validation"
                                        if more else "")
              + (f"; the test set took {test['seconds']:.2f} s (accuracy {test['accuracy']:.2%})" if test else "")
              + ". A mean over all epochs would mix the cold epoch into the steady state, so it is not shown.")
        f = plot_epoch_times([mlp], figs / f"{mlp.name}-epoch-times.png", title=f"{mlp.name}: time per epoch")
        doc.image(f, f"{mlp.name}: training seconds per epoch; circled: cold epochs (first of a session); "
                     f"dashed: steady-state median, band: its min\u2013max; dotted: resumed here")
        _run_section(doc, mlp, figs)

        doc.h2("Q4. Should the MLP train longer, or is it already too long?")
        notes = training_observations(mlp)
        doc.p("Answer: " + notes[0].split(": ", 1)[1])
        doc.bullets(notes[1:])

    doc.h2("Q5. Training and testing on the GPU")
    gpu_mlp = _gpu_runs(runs, "mlp")
    if gpu_mlp:
        g = gpu_mlp[0]
        gt = epoch_timing(g.metrics())
        doc.p(f"Answer: the same training and test loops run on every device; the model and each batch are moved "
              f"with .to(device) (mnistlab train --device cuda). {g.name} ran on {_env(g).get('device')}: {gt.words()}.")
        _run_section(doc, g, figs)
    else:
        doc.p("Answer: mnistlab's training and test loops are the same code on every device; the model and each batch "
              "are moved with .to(device) (mnistlab train --device cuda). This machine has no GPU, so there is no "
              "GPU run in this report.")

    doc.h2("Q6. Is the MLP faster on the GPU, and is the speed-up what you would expect?")
    comp = device_comparisons(runs, "mlp")
    doc.p("Answer: " + (" ".join(comp) if comp else "not measured here: no GPU run.")
          + (" What limits each MLP cell, measured by the bench:" if bench else ""))
    doc.bullets(_bench_lines(bench, "mlp"))

    cnn = _cpu_run(runs, "cnn")
    prof = {m: profile_model(m, 1) for m in ("mlp", "cnn")}
    if cnn:
        rows = cnn.metrics()
        test = _test(cnn)
        cap = _capped(cnn)
        doc.h2("Q7. The CNN: fewer parameters; how does it train on the CPU?")
        fewer = 1 - prof["cnn"].parameters / prof["mlp"].parameters
        doc.p(f"Answer: the CNN has {prof['cnn'].parameters:,} parameters, {percent(abs(fewer))} "
              f"{'fewer' if fewer > 0 else 'more'} than the MLP's {prof['mlp'].parameters:,}, "
              f"yet one sample's forward pass needs {prof['cnn'].macs:,} MACs, "
              f"{prof['cnn'].macs / prof['mlp'].macs:.0f}x the MLP's. {plural(len(rows), 'epoch')} on the CPU"
              + (f" ({cap} steps each)" if cap else "") + f": {epoch_timing(rows).words()}"
              + (f"; test accuracy {test['accuracy']:.2%}" if test else "") + ".")
        _run_section(doc, cnn, figs)

    doc.h2("Q8. The CNN on the GPU")
    gpu_cnn = _gpu_runs(runs, "cnn")
    if gpu_cnn:
        g = gpu_cnn[0]
        test = _test(g)
        doc.p(f"Answer: {g.name} on {_env(g).get('device')}: {epoch_timing(g.metrics()).words()}"
              + (f"; test accuracy {test['accuracy']:.2%}" if test else "") + ".")
        _run_section(doc, g, figs)
    else:
        doc.p("Answer: not run: this machine has no GPU.")

    doc.h2("Q9. CNN on the CPU vs the GPU, and how it differs from the MLP")
    comp = device_comparisons(runs, "cnn")
    if comp:
        doc.p("Answer: " + " ".join(comp))
    else:
        doc.p(f"Answer: only {', '.join(sorted({_dev(r) for r in runs}) or ['no device'])} was measured in these runs "
              f"(no GPU on this machine), so there is no device comparison here; what limits each model on the CPU "
              f"is below and in the bench section.")
    m_cell, c_cell = (bench.cell("resident", "cpu", m) if bench else None for m in ("mlp", "cnn"))
    if m_cell and c_cell:  # the bench's one judgement (Cell.bound), as in the bullets below
        doc.p(f"On the CPU the CNN's step runs at {c_cell.utilisation:.0%} of the measured matmul peak "
              f"({c_cell.bound}-bound) and the MLP's at {m_cell.utilisation:.0%} ({m_cell.bound}-bound)"
              + (": the CNN's time goes to the multiply-adds, the MLP's to per-operation costs, so a device with "
                 "more arithmetic throughput has more of the CNN's step to speed up."
                 if c_cell.bound == "compute" and m_cell.bound != "compute" else "."))
    doc.bullets(_bench_lines(bench, "cnn"))

    shown = {x.name for x in [mlp, cnn, *gpu_mlp[:1], *gpu_cnn[:1]] if x}
    others = [r for r in runs if r.name not in shown]
    if others:
        doc.h2("Other runs")
        for r in others:
            doc.p(f"{r.name}: {epoch_timing(r.metrics()).words()}." if r.metrics() else f"{r.name}: no epoch yet.")
            if r.metrics():
                _run_section(doc, r, figs)

    profiles = [profile_model(code, b, n) for code, n in (codes or _model_codes([], ["mlp", "cnn"])).values()
                for b in (1, 64)]
    doc.h2("Q10. Parameters, MACs and FLOPs of each model (the notebook's thop.profile, batch 1)")
    if "mlp" in prof and "cnn" in prof:
        doc.p(f"Answer: at batch 1 the MLP has {prof['mlp'].parameters:,} parameters and does {prof['mlp'].macs:,} "
              f"MACs (what thop calls FLOPs); the CNN has {prof['cnn'].parameters:,} parameters and does "
              f"{prof['cnn'].macs:,} MACs, {prof['cnn'].macs / prof['mlp'].macs:.0f}x the MLP's work with fewer "
              f"parameters, because each convolution weight is reused at every position of the image.")
    doc.table(["model", "batch", "parameters", "MACs (thop's 'FLOPs')", "forward FLOPs", "backward FLOPs",
               "training-step FLOPs"],
              [[p.model, p.batch_size, f"{p.parameters:,}", f"{p.macs:,}", f"{p.forward_flops:,}",
                f"{p.backward_flops:,}", f"{p.train_step_flops:,}"] for p in profiles])
    doc.p(MACS_VS_FLOPS + " The training step counts the backward pass as it runs (FlopCounterMode), "
          "not as an assumed 3x the forward.")

    if bench:
        bdir = benches[0]
        doc.h2("Where the time goes (mnistlab bench; the evidence for Q6 and Q9)")
        doc.p("Devices: " + "; ".join(f"{k}: {v}, measured float32 matmul peak "
                                       f"{bench.peaks[k] / 1e9:,.1f} GFLOP/s" for k, v in bench.devices.items()))
        loads = [f"{w} {v['load_avg_1m']:.2f}" for w, v in bench.load.items() if v and v.get("load_avg_1m") is not None]
        if loads:
            doc.p(f"Load average (1 min) during the bench: {', '.join(loads)}, on "
                  f"{next(v['cpu_count'] for v in bench.load.values() if v)} logical cores.")
        doc.bullets(bench.warnings())
        doc.table(["cell", "epoch s median (min\u2013max)", "ms/step", "samples/s", "1st warm-up step ms", *PHASES,
                   "GFLOP/s", "utilisation", "bound", "stability"], [_bench_cell_row(c) for c in bench.cells])
        st = bench.settings
        doc.p(f"Each cell: {st['warmup']} warm-up steps (the first one, cold, shown apart), then {st['repeats']} repeats "
              f"of {st['steps'] or 'an epoch of'} steps at batch {st['batch_size']}, interleaved across cells so "
              f"that a change in the machine's load hits all of them alike; median (min\u2013max) of the repeats. "
              f"A cell is unstable when its repeats spread by more than {UNSTABLE_SPREAD:.0%} of their median, "
              f"when it had a single repeat, or when the machine was busy. * extrapolated to a full epoch. Phase "
              f"shares are of the sum of the phases, from a separate pass with a synchronisation at each phase "
              f"boundary. Bound: input (data and copy take half the step or more), compute (at least "
              f"{COMPUTE_BOUND_UTILISATION:.0%} of the measured matmul peak) or overhead (per-operation costs).")
        doc.bullets([f"{u.what}: {u.ratio.marked()}." for u in bench.speedups()])
        doc.image(plot_bench(bench, figs / f"{bdir.name}-bench.png"), "Share of each training step by phase")

    extra = [p for p in paths if any((p / f).is_file() for f in EXTRA_SECTIONS)]
    if lab:
        extra += [root / name for name in (lab.get("speedrun"),) if isinstance(name, str)]
    for p in extra:
        for name, (kind, section) in EXTRA_SECTIONS.items():
            if (p / name).is_file():
                section(doc, read_result(kind, p))  # validated: a damaged file is one line naming it

    doc.h2("Observations")
    notes = [n for r in runs if _config(r)["model"] == "mlp" for n in training_observations(r)]
    notes += [n for r in runs if _config(r)["model"] != "mlp" for n in training_observations(r)]
    notes += device_comparisons(runs)
    notes += observations(bench) if bench else []
    doc.bullets(notes or ["No training runs or benchmarks to observe."])

    md, page = out_dir / "report.md", out_dir / "report.html"
    write_atomic(md, doc.to_markdown(out_dir).encode())
    write_atomic(page, doc.to_html().encode())
    return md, page


# --- speed levers and the speedrun (issue #10): self-contained sections for the lead to wire in ---

def run_levers_text(cfg: dict[str, Any]) -> str:
    """A run's speed levers in words, from its config.json (old runs without the keys: eager fp32)."""
    precision = cfg.get("precision", "32")
    parts = ["fp32" if precision == "32" else precision]
    if cfg.get("channels_last"):
        parts.append("channels-last")
    if cfg.get("compile", "off") != "off":
        parts.append(f"compile={cfg['compile']}")
    if cfg.get("cuda_graphs"):
        parts.append("cuda-graphs")
    return ("eager " if cfg.get("compile", "off") == "off" and not cfg.get("cuda_graphs") else "") + " + ".join(parts)


def levers_section(doc: Document, levers: LeversResult) -> None:
    """bench --implementations (levers.json): the table and the sentences computed from it."""
    doc.h2("Speed levers: what each one buys")
    for dev, peaks in levers.peaks.items():
        doc.p(f"{dev}: {levers.devices.get(dev, dev)}; measured matmul peaks: "
              + ", ".join(f"{k} {v / 1e9:,.1f} GFLOP/s" for k, v in peaks.items()) + ".")
    rows = []
    for c in levers.cells:
        if c.unavailable:
            rows.append([f"{c.device}/{c.model}", c.implementation, "not available", "", "", "", ""])
            continue
        r = levers.vs_eager(c)
        rows.append([f"{c.device}/{c.model}", c.implementation, f"{c.step_median_s * 1e3:.2f}",
                     f"{c.step.min * 1e3:.2f}-{c.step.max * 1e3:.2f}",
                     "baseline" if c.implementation == "eager" else r.words() if r else "-",
                     f"{c.utilisation:.0%} of {c.compute_dtype} ({c.bound}-bound)",
                     "stable" if c.stability.stable else "unstable"])
    doc.table(["device/model", "implementation", "ms/step (median)", "range", "vs eager fp32", "utilisation",
               "stability"], rows)
    for line in levers_observations(levers):
        doc.p(line)


def speedrun_section(doc: Document, result: SpeedrunResult) -> None:
    """`mnistlab speedrun` (speedrun.json): the recipe, the protocol, accuracy and time over the seeds."""
    s, r = result.summary(), result.recipe
    doc.h2(f"Speedrun: time to {result.target:g}% test accuracy")
    doc.p(f"Recipe: {r.model}, Adam with a one-cycle schedule (max lr {r.max_lr}), batch {r.batch_size}, "
          f"{r.epochs} epoch(s) over {result.train_samples:,} training images; levers: {result.levers.describe()}; "
          f"on {result.device_name}. Timed: {TIMED}.")
    doc.table(["seeds", "accuracy mean ± std", f"reached {result.target:g}%", "time median", "time range",
               "data to device (once)", "warm-up per seed (median)", "stability"],
              [[s["seeds"], f"{s['accuracy_mean']:.2f}% ± {s['accuracy_std']:.2f}",
                f"{s['reached_target']}/{s['seeds']}", f"{s['time_median_s']:.2f} s",
                f"{s['time_min_s']:.2f}-{s['time_max_s']:.2f} s", f"{s['data_s']:.2f} s",
                f"{s['warmup_median_s']:.2f} s", "stable" if result.stability.stable else "unstable"]])
    if not result.stability.stable:
        doc.p(f"The time {result.stability.reason}.")
    doc.table(["seed", "test accuracy", "time (train + test eval)", "train", "test eval", "warm-up (apart)"],
              [[x.seed, f"{x.accuracy:.2f}% ({x.correct}/{x.total})", f"{x.seconds:.2f} s",
                f"{x.train_s:.2f} s", f"{x.eval_s:.2f} s", f"{x.warmup_s:.2f} s"] for x in result.seeds])


# folders of other measurements, each with its own section: file name -> (result type, section writer)
EXTRA_SECTIONS = {ScalingResult.FILE: (ScalingResult, _scaling_section),
                  LeversResult.FILE: (LeversResult, levers_section),
                  SpeedrunResult.FILE: (SpeedrunResult, speedrun_section)}
