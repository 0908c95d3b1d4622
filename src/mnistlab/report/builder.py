"""The lab report, rebuilt from run directories alone: report.md and a self-contained report.html.

Every number in it is read from the runs (metrics.csv, test.json, env.json, bench.json) or
computed from the model code (parameter and FLOP counts); every observation is a sentence
computed from those numbers.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from mnistlab.measure.bench import PHASES
from mnistlab.report.document import Document
from mnistlab.core.environment import format_environment
from mnistlab.core.errors import CheckpointError
from mnistlab.report.plots import plot_runs
from mnistlab.measure.profiling import MACS_VS_FLOPS, profile_model
from mnistlab.core.atomicfile import write_atomic
from mnistlab.core.rundir import RunDir, read_json
from mnistlab.measure.summary import summarize

LAB_FILE = "lab.json"
OVERFIT_RATIO = 1.5  # validation loss over training loss beyond which we call it overfitting
FIGURES = "figures"


def _fmt_s(x: float) -> str:
    return f"{x:.2f}"


def training_observations(run: RunDir) -> list[str]:
    """Question 4: train longer, or stop early? Read off the validation curve."""
    rows = run.metrics()
    if len(rows) < 2:
        return [f"{run.name}: only {len(rows)} epoch, too few to judge the trend."]
    best = min(rows, key=lambda r: r["val_loss"])
    last = rows[-1]
    n, b = int(last["epoch"]), int(best["epoch"])
    out = []
    if b == n:
        k = min(5, n - 1)
        before = rows[-1 - k]["val_loss"]
        drop = (before - last["val_loss"]) / before
        out.append(f"{run.name}: validation loss was still falling at the last epoch ({last['val_loss']:.4f} at "
                   f"epoch {n}, down {drop:.1%} over the last {k} epochs): training longer may still help, "
                   f"with diminishing returns.")
    else:
        out.append(f"{run.name}: validation loss was lowest at epoch {b} ({best['val_loss']:.4f}) and did not "
                   f"improve in the {n - b} epochs after it (epoch {n}: {last['val_loss']:.4f}); training longer "
                   f"does not help, and early stopping (--early-stop {max(1, min(3, n - b))}) would keep epoch {b}.")
    gap, ratio = last["val_loss"] - last["train_loss"], last["val_loss"] / last["train_loss"]
    if gap <= 0:
        verdict = ("validation loss is below the training loss (which is averaged over an epoch of still-changing "
                   "weights): no sign of overfitting.")
    elif ratio > OVERFIT_RATIO:
        verdict = "the model fits the training data clearly better than unseen data: it has started to overfit."
    else:
        verdict = "the two are close: no sign of overfitting yet."
    out.append(f"{run.name}: at the end the validation loss is {last['val_loss']:.4f} against a training loss of "
               f"{last['train_loss']:.4f} ({ratio:.2f}x); {verdict}")
    return out


def _run_summary_row(run: RunDir) -> list[str]:
    cfg, rows, test = run.config(), run.metrics(), run.test() or {}
    train_s = [r["train_seconds"] for r in rows]
    return [run.name, cfg["model"], run.env().get("device", cfg["device"]), str(len(rows)),
            _fmt_s(statistics.mean(train_s)) if train_s else "-", _fmt_s(sum(r["epoch_seconds"] for r in rows)),
            f"{statistics.mean(r['samples_per_s'] for r in rows):,.0f}" if rows else "-",
            f"{test['accuracy']:.2%}" if test else "-", _fmt_s(test["seconds"]) if test else "-"]


RUN_HEADERS = ["run", "model", "device", "epochs", "mean train s/epoch", "total s (train+val)", "samples/s",
               "test accuracy", "test s"]


def device_comparisons(runs: list[RunDir]) -> list[str]:
    """Questions 6 and 9, from the training runs: which device was faster for each model, by how much."""
    out = []
    by_model: dict[str, dict[str, RunDir]] = {}
    for r in runs:
        by_model.setdefault(r.config()["model"], {})[r.env().get("device", "cpu").split(":")[0]] = r
    for model, devs in by_model.items():
        cpu = devs.get("cpu")
        for dev, run in devs.items():
            if dev == "cpu" or cpu is None:
                continue
            t_cpu = statistics.mean(x["train_seconds"] for x in cpu.metrics())
            t_dev = statistics.mean(x["train_seconds"] for x in run.metrics())
            faster = "faster" if t_dev < t_cpu else "slower"
            ratio = max(t_cpu, t_dev) / min(t_cpu, t_dev)
            out.append(f"{model}: an epoch on {dev} took {t_dev:.2f} s against {t_cpu:.2f} s on the CPU: "
                       f"{dev} is {ratio:.1f}x {faster}.")
    return out


def _classify(paths: list[Path]) -> tuple[dict[str, Any] | None, Path, list[RunDir], list[Path]]:
    """Expand a lab directory or a list of run and bench directories."""
    if len(paths) == 1 and (paths[0] / LAB_FILE).is_file():
        lab = read_json(paths[0] / LAB_FILE)
        root = paths[0]
        runs = [RunDir(root / name) for name in lab["runs"]]
        benches = [root / lab["bench"]] if lab.get("bench") else []
        return lab, root, runs, benches
    runs, benches = [], []
    for p in paths:
        if (p / "bench.json").is_file():
            benches.append(p)
        elif (p / "config.json").is_file():
            runs.append(RunDir(p))
        else:
            raise CheckpointError(f"{p}: neither a run directory, a bench directory nor a lab directory")
    return None, paths[0], runs, benches


def build_report(paths: list[Path], out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write report.md and report.html (into `out_dir`, default the lab or first directory)."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_dir():
            raise CheckpointError(f"{p}: no such directory")
    lab, root, runs, benches = _classify(paths)
    out_dir = Path(out_dir or root)
    figs = out_dir / FIGURES
    figs.mkdir(parents=True, exist_ok=True)
    title = "mnistlab report" + (" (quick run)" if lab and lab.get("quick") else "")
    doc = Document(title)
    if lab and lab.get("quick"):
        doc.p("This was a quick run (mnistlab lab --quick): fewer epochs and a step limit for the CNN on the CPU, "
              "so accuracies are below what the full plan reaches. Run mnistlab lab for the full plan.")

    env = (lab or {}).get("env") or (runs[0].env() if runs else None)
    if env:
        doc.h2("1. Environment")
        doc.pre(format_environment(env))

    if lab and lab.get("data"):
        d = lab["data"]
        doc.h2("2. The data")
        doc.table(["dataset", "train", "test", "image", "on disk", "model input", "labels", "first label"],
                  [[d["dataset"], f"{d['train_samples']:,}", f"{d['test_samples']:,}", str(d["image_shape"]),
                    d["stored_dtype"], f"{d['model_input']['shape']} {d['model_input']['dtype']}",
                    d["label_dtype"], d["first_train_label"]]])
        doc.p(f"Normalisation: {d['model_input']['transform']}; measured pixel mean {d['pixel_mean']:.6f}, "
              f"std {d['pixel_std']:.6f}. The training set is split {lab['split']} with seed {lab['seed']}.")
        for name, caption in (("first-sample.png", f"The first training sample, label {d['first_train_label']}"),
                              ("samples.png", "The first training samples with their labels")):
            if (root / name).is_file():
                doc.image(root / name, caption)

    models = list(dict.fromkeys([r.config()["model"] for r in runs] or (lab or {}).get("models", [])))
    if models:
        doc.h2("3. The models")
        for m in models:
            s = summarize(m, batch_size=64)
            doc.p(f"{m}: {s.total:,} parameters ({s.trainable:,} trainable); input {list(s.input_shape)} gives "
                  f"output {list(s.output_shape)}.")
            doc.pre(s.tree)
            doc.table(["state_dict key", "shape", "parameters"], [[n, str(list(sh)), f"{c:,}"] for n, sh, c in s.parameters])

    if runs:
        doc.h2("4. Training runs")
        doc.table(RUN_HEADERS, [_run_summary_row(r) for r in runs])
        for r in runs:
            rows = r.metrics()
            sessions = sorted({int(x.get("session", 1)) for x in rows})
            cfg = r.config()
            doc.p(f"{r.name}: {cfg['model']} on {cfg['dataset']}, batch {cfg['batch_size']}, SGD lr {cfg['lr']} "
                  f"momentum {cfg['momentum']}, seed {cfg['seed']}"
                  + (f", at most {cfg['max_steps']} steps per epoch" if cfg.get("max_steps") else "")
                  + (f"; trained in {len(sessions)} sessions (resumed)" if len(sessions) > 1 else "") + ".")
            for s in sessions[:-1]:
                upto = max(int(x["epoch"]) for x in rows if int(x.get("session", 1)) == s)
                f = plot_runs([r], figs / f"{r.name}-loss-{upto}.png", upto_epoch=upto,
                              title=f"{r.name}: loss after {upto} epochs")
                doc.image(f, f"{r.name}: train and validation loss after {upto} epochs (log scale)")
            f = plot_runs([r], figs / f"{r.name}-loss.png", title=f"{r.name}: loss after {len(rows)} epochs")
            doc.image(f, f"{r.name}: train and validation loss after {len(rows)} epochs (log scale)")
            doc.table(["epoch", "train loss", "val loss", "val accuracy", "train s", "val s", "samples/s"],
                      [[int(x["epoch"]), f"{x['train_loss']:.4f}", f"{x['val_loss']:.4f}", f"{x['val_accuracy']:.2%}",
                        _fmt_s(x["train_seconds"]), _fmt_s(x["val_seconds"]), f"{x['samples_per_s']:,.0f}"]
                       for x in rows])
            test = r.test()
            if test:
                doc.p(f"{r.name} test set: loss {test['loss']:.4f}, accuracy {test['accuracy']:.2%} "
                      f"({test['correct']}/{test['total']}), evaluated in {test['seconds']:.2f} s.")

        doc.h2("5. CPU vs GPU")
        comparisons = device_comparisons(runs)
        devices = {r.env().get("device", "cpu").split(":")[0] for r in runs}
        if comparisons:
            doc.bullets(comparisons)
        else:
            doc.p(f"Only {', '.join(sorted(devices))} was measured in these runs (no GPU on this machine), so "
                  f"there is no device comparison here; the bench section explains what limits each model.")

    profiles = [profile_model(m, b) for m in (models or ["mlp", "cnn"]) for b in (1, 64)]
    doc.h2("6. Parameters, MACs and FLOPs")
    doc.table(["model", "batch", "parameters", "MACs (thop's 'FLOPs')", "forward FLOPs", "backward FLOPs",
               "training-step FLOPs"],
              [[p.model, p.batch_size, f"{p.parameters:,}", f"{p.macs:,}", f"{p.forward_flops:,}",
                f"{p.backward_flops:,}", f"{p.train_step_flops:,}"] for p in profiles])
    doc.p(MACS_VS_FLOPS + " The training step counts the backward pass as it runs (FlopCounterMode), "
          "not as an assumed 3x the forward.")

    bench_notes: list[str] = []
    for bdir in benches:
        data = read_json(bdir / "bench.json")
        doc.h2("7. Where the time goes (mnistlab bench)")
        doc.p("Devices: " + "; ".join(f"{k}: {v}, measured float32 matmul peak "
                                       f"{data['peaks_flops_per_s'][k] / 1e9:,.1f} GFLOP/s"
                                       for k, v in data["devices"].items()))
        doc.table(["cell", "epoch s (min)", "epoch s (median)", "ms/step", "samples/s", *PHASES, "GFLOP/s",
                   "utilisation"],
                  [[c["key"], f"{c['epoch_s_min']:.2f}{'*' if c['extrapolated'] else ''}",
                    f"{c['epoch_s_median']:.2f}{'*' if c['extrapolated'] else ''}",
                    f"{c['step_median_s'] * 1e3:.3f}", f"{c['samples_per_s']:,.0f}",
                    *(f"{c['phases_s'][p] / c['instrumented_step_s']:.0%}" for p in PHASES),
                    f"{c['achieved_flops_per_s'] / 1e9:.1f}", f"{c['utilisation']:.1%}"] for c in data["cells"]])
        s = data["settings"]
        doc.p(f"Each cell: {s['warmup']} warm-up steps, then {s['repeats']} repeats of {s['steps'] or 'an epoch of'} "
              f"steps at batch {s['batch_size']}; medians reported. * extrapolated to a full epoch. Phase shares come "
              f"from a separate pass with a synchronisation at each phase boundary.")
        if (bdir / "bench.png").is_file():
            doc.image(bdir / "bench.png", "Share of each training step by phase")
        bench_notes = data["observations"]
        doc.bullets([f"{'PASS' if t['pass'] else 'FAIL'}: {t['check']}" for t in data.get("targets", [])])

    doc.h2("8. Observations")
    notes = [n for r in runs if r.config()["model"] == "mlp" for n in training_observations(r)]
    notes += [n for r in runs if r.config()["model"] != "mlp" for n in training_observations(r)]
    notes += device_comparisons(runs)
    notes += bench_notes
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


def levers_section(doc: Document, levers: dict[str, Any]) -> None:
    """bench --implementations (levers.json): the table and the sentences computed from it."""
    doc.h2("Speed levers: what each one buys")
    for dev, peaks in levers.get("peaks_flops_per_s", {}).items():
        doc.p(f"{dev}: {levers['devices'].get(dev, dev)}; measured matmul peaks: "
              + ", ".join(f"{k} {v / 1e9:,.1f} GFLOP/s" for k, v in peaks.items()) + ".")
    rows = []
    for c in levers["cells"]:
        if c.get("unavailable"):
            rows.append([f"{c['device']}/{c['model']}", c["implementation"], "not available", "", "", ""])
            continue
        s = c.get("speedup_vs_eager")
        rows.append([f"{c['device']}/{c['model']}", c["implementation"], f"{c['step_median_s'] * 1e3:.2f}",
                     f"{c['step_min_s'] * 1e3:.2f}-{c['step_max_s'] * 1e3:.2f}",
                     f"{s:.2f}x" if s is not None else "-", f"{c['utilisation']:.0%} of {c['compute_dtype']}"])
    doc.table(["device/model", "implementation", "ms/step (median)", "range", "vs eager fp32", "utilisation"], rows)
    for line in levers.get("observations", []):
        doc.p(line)


def speedrun_section(doc: Document, result: dict[str, Any]) -> None:
    """`mnistlab speedrun` (speedrun.json): the recipe, the protocol, accuracy and time over the seeds."""
    s, r = result["summary"], result["recipe"]
    doc.h2(f"Speedrun: time to {result['target']:g}% test accuracy")
    doc.p(f"Recipe: {r['model']}, Adam with a one-cycle schedule (max lr {r['max_lr']}), batch {r['batch_size']}, "
          f"{r['epochs']} epoch(s) over {result['train_samples']:,} training images; levers: {result['levers_text']}; "
          f"on {result['device_name']}. Timed: {result['timed']}.")
    doc.table(["seeds", "accuracy mean ± std", f"reached {result['target']:g}%", "time median", "time range",
               "data to device (once)", "warm-up per seed (median)"],
              [[s["seeds"], f"{s['accuracy_mean']:.2f}% ± {s['accuracy_std']:.2f}",
                f"{s['reached_target']}/{s['seeds']}", f"{s['time_median_s']:.2f} s",
                f"{s['time_min_s']:.2f}-{s['time_max_s']:.2f} s", f"{s['data_s']:.2f} s",
                f"{s['warmup_median_s']:.2f} s"]])
    doc.table(["seed", "test accuracy", "time (train + test eval)", "train", "test eval", "warm-up (apart)"],
              [[x["seed"], f"{x['accuracy']:.2f}% ({x['correct']}/{x['total']})", f"{x['seconds']:.2f} s",
                f"{x['train_s']:.2f} s", f"{x['eval_s']:.2f} s", f"{x['warmup_s']:.2f} s"] for x in result["runs"]])
