"""The lab report, rebuilt from run directories alone: report.md and a self-contained report.html.

Every number in it is read from the runs (metrics.csv, test.json, env.json, bench.json) or
computed from the model code (parameter and FLOP counts); every observation is a sentence
computed from those numbers.
"""

from __future__ import annotations

import math
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
from mnistlab.core.rundir import CONFIG, ENV, TEST, RunDir, json_kind, read_json_object
from mnistlab.data.datasets import plain_name
from mnistlab.training.config import check_run_config
from mnistlab.measure.summary import summarize

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
LAB_SCHEMA = {"runs": ["text"], "bench?": "text?", "quick?": "bool", "env?": {**ENV_SCHEMA}, "data?": DATA_SCHEMA,
              "split?": "text", "seed?": "int", "models?": ["text"]}
_TYPES = {"number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
          "int": lambda v: isinstance(v, int) and not isinstance(v, bool), "text": lambda v: isinstance(v, str),
          "bool": lambda v: isinstance(v, bool), "any": lambda v: True}


def check_schema(value: Any, schema: Any, where: str) -> None:
    """CheckpointError naming the file and the field of the first value that does not fit `schema`."""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise CheckpointError(f"{where}: expected an object, found {json_kind(value)}")
        for key, sub in schema.items():
            name = key.rstrip("?")
            if name not in value:
                if key.endswith("?"):
                    continue
                raise CheckpointError(f"{where}: missing the field {name!r}")
            check_schema(value[name], sub, f"{where}: field {name!r}" if ": field" not in where else f"{where}.{name}")
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise CheckpointError(f"{where}: expected a list, found {json_kind(value)}")
        for i, item in enumerate(value):
            check_schema(item, schema[0], f"{where}[{i}]")
    elif not (value is None and schema.endswith("?")) and not _TYPES[schema.rstrip("?")](value):
        raise CheckpointError(f"{where}: expected {schema.rstrip('?')}, found {value!r}")


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
        return [f"{run.name}: only {len(rows)} epoch, too few to judge the trend."]
    best = min(rows, key=lambda r: r["val_loss"])
    last = rows[-1]
    n, b = int(last["epoch"]), int(best["epoch"])
    out = []
    if b == n:
        k = min(5, len(rows) - 1)
        before = rows[-1 - k]["val_loss"]
        drop = _ratio(before - last["val_loss"], before)
        out.append(f"{run.name}: validation loss was still falling at the last epoch ({last['val_loss']:.4f} at "
                   f"epoch {n}, down {drop:.1%} over the last {k} epochs): training longer may still help, "
                   f"with diminishing returns.")
    else:
        out.append(f"{run.name}: validation loss was lowest at epoch {b} ({best['val_loss']:.4f}) and did not "
                   f"improve in the {n - b} epochs after it (epoch {n}: {last['val_loss']:.4f}); training longer "
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


def _run_summary_row(run: RunDir) -> list[str]:
    cfg, rows, test = _config(run), run.metrics(), _test(run) or {}
    train_s = [r["train_seconds"] for r in rows]
    return [run.name, cfg["model"], _env(run).get("device", cfg["device"]), str(len(rows)),
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
        by_model.setdefault(_config(r)["model"], {})[_env(r).get("device", "cpu").split(":")[0]] = r
    for model, devs in by_model.items():
        cpu = devs.get("cpu")
        for dev, run in devs.items():
            if dev == "cpu" or cpu is None or not cpu.metrics() or not run.metrics():
                continue
            t_cpu = statistics.mean(x["train_seconds"] for x in cpu.metrics())
            t_dev = statistics.mean(x["train_seconds"] for x in run.metrics())
            faster = "faster" if t_dev < t_cpu else "slower"
            ratio = _ratio(max(t_cpu, t_dev), min(t_cpu, t_dev))
            out.append(f"{model}: an epoch on {dev} took {t_dev:.2f} s against {t_cpu:.2f} s on the CPU: "
                       f"{dev} is {ratio:.1f}x {faster}.")
    return out


def _bench_section(doc: Document, bdir: Path, data: dict[str, Any]) -> list[str]:
    """Section 7 from one bench.json; returns its observations."""
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
    doc.bullets([f"{'PASS' if t['pass'] else 'FAIL'}: {t['check']}" for t in data.get("targets", [])])
    return list(data["observations"])


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

    env = (lab or {}).get("env") or (_env(runs[0]) if runs else None)
    if env and all(k.endswith("?") or k in env for k in ENV_SCHEMA):  # a partial env.json has no section 1
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

    models = list(dict.fromkeys([_config(r)["model"] for r in runs] or (lab or {}).get("models", [])))
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
            cfg = _config(r)
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
            test = _test(r)
            if test:
                doc.p(f"{r.name} test set: loss {test['loss']:.4f}, accuracy {test['accuracy']:.2%} "
                      f"({test['correct']}/{test['total']}), evaluated in {test['seconds']:.2f} s.")

        doc.h2("5. CPU vs GPU")
        comparisons = device_comparisons(runs)
        devices = {_env(r).get("device", "cpu").split(":")[0] for r in runs}
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
        data = read_json_object(bdir / "bench.json")
        try:
            bench_notes = _bench_section(doc, bdir, data)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError) as e:
            raise CheckpointError(f"{bdir / 'bench.json'}: malformed ({type(e).__name__}: {e})") from None

    doc.h2("8. Observations")
    notes = [n for r in runs if _config(r)["model"] == "mlp" for n in training_observations(r)]
    notes += [n for r in runs if _config(r)["model"] != "mlp" for n in training_observations(r)]
    notes += device_comparisons(runs)
    notes += bench_notes
    doc.bullets(notes or ["No training runs or benchmarks to observe."])

    md, page = out_dir / "report.md", out_dir / "report.html"
    write_atomic(md, doc.to_markdown(out_dir).encode())
    write_atomic(page, doc.to_html().encode())
    return md, page
