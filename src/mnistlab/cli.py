"""The `mnistlab` command: argv in, exit code out. A thin layer over the Python API."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

from mnistlab.core.errors import MnistlabError
from mnistlab.core.writer import json_text

SPECS = "package.module:factory, path/to/file.py:Name"


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr, with the same prefix as every other error
    (`mnistlab: error:`), and exit code 2; and no abbreviations: `--epoch 1` is a typo to say, not a
    prefix of `--epochs` to guess."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # argparse's own
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"mnistlab: error: {message} (see: {self.prog} --help)\n")
        raise SystemExit(2)

    def parse_args(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        namespace: argparse.Namespace | None = None,
    ) -> argparse.Namespace:
        """As argparse, but an unknown option is said by the subcommand's parser, so that the line
        points at `mnistlab train --help`, where the options are, not at `mnistlab --help`."""
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            (self._subcommand_parser(ns) or self).error(f"unrecognized arguments: {' '.join(extras)}")
        return ns

    def _subcommand_parser(self, ns: argparse.Namespace) -> argparse.ArgumentParser | None:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001 - argparse has no public way
                return action.choices.get(getattr(ns, action.dest, None) or "")
        return None


def _int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number >= minimum (and <= maximum, where a larger one would take
    unbounded time or memory)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {v}")
        if maximum is not None and v > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {v}")
        return v

    return parse


_positive_int, _nonneg_int = _int_at_least(1), _int_at_least(0)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _gpu_name(text: str) -> str:
    """An argparse type: a GPU of the prediction's table (measure/gpus.py)."""
    from mnistlab.measure.gpus import gpu

    try:
        return gpu(text).name
    except MnistlabError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class _Version(argparse.Action):
    """--version: the line is made only when asked for (it reads installed metadata, never imports torch)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        from mnistlab.core.version import version_line

        print(version_line())
        parser.exit()


def _add_gpu(p: argparse.ArgumentParser) -> None:
    from mnistlab.measure.gpus import DEFAULT_GPU, GPUS

    p.add_argument(
        "--gpu",
        type=_gpu_name,
        default=DEFAULT_GPU,
        metavar="NAME",
        help=f"the GPU Q6 and Q9 predict a step's time on ({', '.join(GPUS)}; default: {DEFAULT_GPU})",
    )


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", help="data root (default: $MNISTLAB_DATA, else $XDG_CACHE_HOME/mnistlab, else ~/.cache/mnistlab)"
    )


def _add_config_options(p: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field, with its help text; unset options stay None (the config's
    default applies, and on --resume the run's stored value)."""
    from mnistlab.training.config import TrainConfig

    defaults = TrainConfig.__dataclass_fields__
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        meta = dict(f.metadata)
        help_ = meta.pop("help")
        default = defaults[f.name].default
        shown = help_ if default is None or default is False else f"{help_} (default: {default})"
        kind = str(f.type).split(" | ")[0]
        if kind == "bool":
            p.add_argument(flag, action="store_true", default=None, help=help_)
        elif kind == "int":
            nonneg = f.name == "seed"
            p.add_argument(flag, type=_nonneg_int if nonneg else _positive_int, help=shown, **meta)
        elif kind == "float":
            p.add_argument(flag, type=_float, help=shown, **meta)
        else:
            p.add_argument(flag, help=shown, **meta)


def _add_json(p: argparse.ArgumentParser, what: str = "the result") -> None:
    p.add_argument(
        "--json",
        action="store_true",
        help=f"print {what} as JSON on stdout (strict: no NaN); progress lines go to stderr",
    )


def _add_trace(p: argparse.ArgumentParser, what: str) -> None:
    from mnistlab.core.defaults import TRACE_STEPS

    p.add_argument(
        "--trace",
        metavar="DIR",
        help=f"also write a torch.profiler trace of {TRACE_STEPS} {what} steps into DIR (created if "
        "absent), "
        "taken apart from any timing; open it in ui.perfetto.dev or chrome://tracing",
    )


def _add_no_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars (none where stderr is no terminal)")


def _add_device(p: argparse.ArgumentParser, help: str) -> None:
    from mnistlab.core.defaults import DEVICES

    p.add_argument("--device", choices=list(DEVICES), default="auto", help=help)


def _add_new_folder(p: argparse.ArgumentParser, flag: str = "--out", what: str = "output") -> None:
    from mnistlab.core.defaults import RUNS_DIR

    p.add_argument(flag, help=f"the {what} directory to create (default: a new one under {RUNS_DIR}/)")


def _add_quiet(parser: argparse.ArgumentParser) -> None:
    """-q/--quiet on every command: its progress lines and bars off, its answer and errors still printed."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001 - argparse has no public way
            for sub in action.choices.values():
                _add_quiet(sub)
            return
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress lines or bars: only the answer, warnings and errors"
    )


def _add_threads(p: argparse.ArgumentParser) -> None:
    """The one --threads option (train, bench, speedrun, sweep, lab)."""
    from mnistlab.core.defaults import MAX_THREADS

    p.add_argument(
        "--threads",
        type=_int_at_least(1, MAX_THREADS),
        metavar="N",
        help="torch's intra-op threads, at most the usable CPUs (default: the usable CPUs less those "
        "other processes are running on, chosen again at each epoch; OMP_NUM_THREADS also pins it)",
    )


# commands that compute with torch: their threads are chosen (or pinned) before they start
_COMPUTING = ("env", "summary", "train", "eval", "profile", "bench", "speedrun", "lab", "sweep")


def _target(text: str) -> float:
    v = _float(text)
    if not 0 < v <= 100:
        raise argparse.ArgumentTypeError(f"a test accuracy in percent, in (0, 100], got {text!r}")
    return v


def _add_speedrun_parser(sub: Any, datasets: list[str]) -> None:  # sub: argparse's _SubParsersAction
    from mnistlab.core.defaults import COMPILE_MODES, MAX_SEEDS, PRECISIONS

    s = sub.add_parser("speedrun", help="time to a target test accuracy (default 99%%) from scratch, over N seeds")
    _add_device(s, "where to run (auto: cuda, then mps, then cpu)")
    s.add_argument(
        "--seeds",
        type=_int_at_least(1, MAX_SEEDS),
        default=10,
        help=f"runs, seeds 0..N-1, at most {MAX_SEEDS} (default: 10)",
    )
    s.add_argument("--target", type=_target, default=99.0, help="test accuracy to reach, in percent (default: 99.0)")
    s.add_argument("--precision", choices=list(PRECISIONS), help="default: the recipe's for the device")
    s.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="default: the recipe's for the device",
    )
    s.add_argument("--compile", choices=list(COMPILE_MODES), help="default: off")
    s.add_argument(
        "--cuda-graphs", action=argparse.BooleanOptionalAction, default=None, help="default: on with --device cuda"
    )
    s.add_argument("--dataset", default="mnist", choices=datasets, help="dataset (default: mnist)")
    _add_new_folder(s)
    _add_json(s, "the result (speedrun.json's fields and the folder)")
    _add_no_progress(s)
    _add_threads(s)
    _add_data_dir(s)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line. Nothing here imports torch: `--help` answers at once."""
    from mnistlab.core.defaults import (
        BUILTIN_MODELS,
        DEFAULT_BATCH_SIZE,
        DEVICES,
        GRACE_S,
        HEARTBEAT_S,
        IMPLEMENTATIONS,
        MAX_BATCH_SIZE,
        MAX_REPEATS,
        MAX_SHOWN,
        MAX_THREADS,
        MAX_TIMED_STEPS,
        MAX_TRIALS,
        MAX_WAIT_S,
        PIPELINES,
        RUNS_DIR,
    )
    from mnistlab.data.datasets import all_datasets

    datasets = list(all_datasets())  # the built-in table plus $MNISTLAB_DATASETS_FILE
    models = ", ".join(BUILTIN_MODELS)
    parser = _Parser(prog="mnistlab", description="Train, time and profile small models on MNIST-family data.")
    parser.add_argument("--version", action=_Version, help="print the versions of mnistlab, torch and Python, and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    _add_json(sub.add_parser("env", help="torch version, devices, CPU threads"), "the environment")

    data = sub.add_parser("data", help="fetch, inspect and show a dataset")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    for name, help_ in (
        ("fetch", "fetch and verify the files"),
        ("info", "counts, shapes, label histogram, mean/std"),
        ("show", "write a PNG grid of samples with their labels"),
    ):
        p = data_sub.add_parser(name, help=help_)
        p.add_argument("--dataset", default="mnist", choices=datasets, help="which dataset (default: mnist)")
        _add_data_dir(p)
        _add_no_progress(p)  # a download's bar
        if name == "fetch":
            p.add_argument("--no-web", action="store_true", help="skip the web mirrors")
        if name == "info":
            _add_json(p, "the figures")
        if name == "show":
            p.add_argument(
                "--out", default=None, help="PNG path; its folder must exist (default: <dataset>-samples.png)"
            )
            p.add_argument(
                "--count",
                type=_int_at_least(1, MAX_SHOWN),
                default=32,
                help=f"how many samples, at most {MAX_SHOWN} (default: 32)",
            )

    p = sub.add_parser("summary", help="module tree, state_dict shapes, parameter count, output shape")
    p.add_argument("model", help=f"model name ({models}) or spec ({SPECS})")
    p.add_argument(
        "--batch-size", type=_int_at_least(1, MAX_BATCH_SIZE), default=1, help="batch of the example input (default: 1)"
    )
    _add_json(p, "the summary (tree, state_dict shapes, counts, shapes)")

    t = sub.add_parser("train", help="train a model, or resume a run")
    _add_config_options(t)
    _add_new_folder(t, "--run-dir", "run")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue this run")
    t.add_argument(
        "--resume-if-exists",
        action="store_true",
        help="start or resume: continue the run in --run-dir if it holds one of the same configuration "
        "(a rerun of the same command: a requeued batch job; torchrun --max-restarts does this always)",
    )
    _add_no_progress(t)
    _add_json(t, "the run (its folder, state, config, epochs, test result and epoch times)")
    _add_trace(t, "training (after the run, of its model, levers and batch)")
    t.add_argument(
        "--no-tensorboard",
        action="store_true",
        help="write no TensorBoard event files (on by default where the tensorboard package is installed, "
        "pip install 'mnistlab[tensorboard]'; then: tensorboard --logdir runs)",
    )
    _add_threads(t)

    e = sub.add_parser("eval", help="test loss, accuracy, per-class accuracy, confusion matrix")
    e.add_argument("run_dir", help="a run directory written by mnistlab train")
    e.add_argument(
        "--checkpoint",
        choices=["last", "best"],
        default="last",
        help="last.pt (the last epoch) or best.pt (lowest validation loss) (default: last)",
    )
    _add_device(e, "auto: CUDA, then MPS, then the CPU (default: auto)")
    _add_json(e)
    _add_no_progress(e)
    _add_data_dir(e)

    pl = sub.add_parser("plot", help="loss (log scale) and accuracy curves of one or more runs")
    pl.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="one or more run directories (several overlay)")
    pl.add_argument(
        "--out", help="PNG path (default: RUN-loss.png, or compare.png for several runs, in the current directory)"
    )
    pr = sub.add_parser("profile", help="parameters, MACs and FLOPs (forward and training step), per layer")
    pr.add_argument("models", nargs="+", metavar="MODEL", help=f"model names ({models}) or specs ({SPECS})")
    pr.add_argument(
        "--batch-size", type=_int_at_least(1, MAX_BATCH_SIZE), default=1, help="batch to count for (default: 1)"
    )
    _add_json(pr, "the profiles")

    b = sub.add_parser("bench", help="time models x devices x input pipelines and show where the time goes")
    b.add_argument(
        "--models", nargs="+", default=list(BUILTIN_MODELS), help=f"model names or specs ({SPECS}; default: {models})"
    )
    b.add_argument(
        "--devices",
        nargs="+",
        choices=[d for d in DEVICES if d != "auto"],
        help="default: cpu, and cuda / mps when present",
    )
    b.add_argument(
        "--pipelines",
        nargs="+",
        choices=list(PIPELINES),
        help="resident: mnistlab's device-resident tensors; reference: the notebook's per-sample PIL "
        "+ DataLoader (default: both; not with --implementations or --nproc)",
    )
    b.add_argument(
        "--steps",
        type=_int_at_least(0, MAX_TIMED_STEPS),
        help="timed steps per repeat (0: a whole epoch, not with --nproc) (default: 100; 50 with --nproc)",
    )
    b.add_argument(
        "--repeats",
        type=_int_at_least(1, MAX_REPEATS),
        default=3,
        help="timed repeats per cell, interleaved across cells; the median and min-max are shown (default: 3)",
    )
    b.add_argument(
        "--warmup",
        type=_int_at_least(0, MAX_TIMED_STEPS),
        help="warm-up steps per cell, left out of the result; the first (cold) one is shown apart "
        "(default: 10; not with --nproc, whose processes warm up max(3, steps/10) steps)",
    )
    b.add_argument(
        "--batch-size",
        type=_int_at_least(1, MAX_BATCH_SIZE),
        default=DEFAULT_BATCH_SIZE,
        help=f"samples per step (default: {DEFAULT_BATCH_SIZE})",
    )
    b.add_argument("--dataset", default="mnist", choices=datasets, help="which dataset (default: mnist)")
    _add_new_folder(b)
    b.add_argument(
        "--nproc",
        type=_int_at_least(2, MAX_THREADS),
        metavar="N",
        help="instead: data-parallel scaling, 1 against N processes (DDP; gloo on the CPU) on random "
        "inputs of the dataset's shape, on one device (--devices: at most one; no --data-dir)",
    )
    b.add_argument(
        "--implementations",
        nargs="+",
        choices=list(IMPLEMENTATIONS),
        metavar="IMPL",
        help="compare speed levers on resident data instead of pipelines: "
        f"{', '.join(IMPLEMENTATIONS)} (levers.txt, levers.json)",
    )
    _add_json(b, "the result (bench.json's, levers.json's or scaling.json's fields, and the folder)")
    _add_trace(b, "each cell's (not with --implementations or --nproc)")
    _add_no_progress(b)
    _add_threads(b)
    _add_data_dir(b)

    _add_speedrun_parser(sub, datasets)

    lab = sub.add_parser("lab", help="reproduce the whole notebook and write report.html and report.md")
    lab.add_argument("--quick", action="store_true", help="a smaller plan that ends in a few minutes on 2 CPU cores")
    _add_device(lab, "the GPU to compare with the CPU (default: auto, the GPU there is, if any)")
    _add_new_folder(lab, what="lab")
    lab.add_argument(
        "--resume",
        metavar="LAB_DIR",
        help="finish a lab that was stopped or killed: run what is missing, keep what is done (its own "
        "plan; not with --quick or --out)",
    )
    _add_no_progress(lab)
    _add_json(lab, "the lab's folder and its report's files")
    _add_gpu(lab)
    _add_threads(lab)
    _add_data_dir(lab)

    sw = sub.add_parser("sweep", help="a hyper-parameter study on Optuna; each trial is a run directory")
    sw.add_argument("--study", required=True, help="the study's name (also names its folder: runs/sweep-NAME)")
    sw.add_argument(
        "--trials",
        type=_int_at_least(1, MAX_TRIALS),
        required=True,
        help="completed or pruned trials the study must reach (the same command continues it)",
    )
    sw.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=LOW:HIGH[:log] | NAME=A,B,C",
        help="a parameter to vary, e.g. lr=1e-3:1e-1:log, momentum=0.5,0.9, batch_size=32,64,128",
    )
    sw.add_argument(
        "--direction",
        choices=["minimize", "maximize"],
        default="minimize",
        help="minimize: the best validation loss; maximize: the best validation accuracy",
    )
    sw.add_argument(
        "--pruner",
        choices=["none", "median"],
        default="none",
        help="median: stop a trial whose validation loss is worse than the median at the same epoch",
    )
    sw.add_argument(
        "--storage",
        help="an SQLAlchemy URL of the study's database, shared by workers on any machine, "
        "e.g. postgresql+psycopg://USER@HOST/DB (default: SQLite in the sweep folder)",
    )
    sw.add_argument(
        "--heartbeat-interval",
        type=_int_at_least(1, MAX_WAIT_S),
        default=HEARTBEAT_S,
        metavar="SECONDS",
        help=f"a running trial's worker records a heartbeat this often (default: {HEARTBEAT_S})",
    )
    sw.add_argument(
        "--grace-period",
        type=_int_at_least(1, MAX_WAIT_S),
        default=GRACE_S,
        metavar="SECONDS",
        help="a running trial without a heartbeat this long has lost its worker: it is marked failed "
        f"and run again (default: {GRACE_S})",
    )
    sw.add_argument("--out", help=f"the sweep folder (default: {RUNS_DIR}/sweep-STUDY)")
    _add_json(sw, "the study's record and its trials (sweep.json, trials.json) and the folder")
    _add_no_progress(sw)
    _add_threads(sw)
    _add_config_options(sw)

    rep = sub.add_parser("report", help="rebuild the report from a lab directory, or from run and bench directories")
    rep.add_argument("dirs", nargs="+", metavar="DIR", help="a lab directory, or run and bench directories")
    rep.add_argument(
        "--out", help="where to write report.md/.html (default: a lab directory itself, else the current directory)"
    )
    _add_gpu(rep)
    _add_json(rep, "the report's files")
    _add_quiet(parser)
    return parser


def _answer(args: argparse.Namespace, out: TextIO, record: Any, *lines: Any) -> int:
    """A command's answer on stdout: `record` as strict JSON with --json, else `lines`, one per print."""
    for line in [json_text(record)] if getattr(args, "json", False) else lines:
        print(line, file=out)
    return 0


def _cmd_env(args: argparse.Namespace, out: TextIO) -> int:
    from mnistlab.core.environment import environment, format_environment, format_precision, precision_environment
    from mnistlab.measure.table import fit_width

    env, precision = environment(), precision_environment()
    return _answer(  # no line over 160 characters (issue 28)
        args,
        out,
        {"environment": env, "precision": precision},
        fit_width(format_environment(env)),
        fit_width(format_precision(precision)),
    )


def _cmd_data(args: argparse.Namespace, out: TextIO) -> int:
    from mnistlab.data.datasets import get_dataset
    from mnistlab.jobs import folder as jobs

    if args.data_command == "show" and args.out and not Path(args.out).parent.is_dir():
        raise MnistlabError(f"{Path(args.out).parent}: no such directory (create it first, or choose another --out)")
    get_dataset(args.dataset)  # a bad row fails before any fetch
    spec, root = jobs.dataset(args.dataset, args.data_dir, web=args.data_command != "fetch" or not args.no_web)
    if args.data_command == "fetch":
        print(spec.raw_dir(root), file=out)
        return 0
    if args.data_command == "info":
        from mnistlab.data.info import dataset_info, format_info

        info = dataset_info(spec, root)
        return _answer(args, out, info, format_info(info))
    from mnistlab.data.loader import read_split
    from mnistlab.report.plots import plot_samples

    train = read_split(spec, root, train=True)
    png = Path(args.out or f"{spec.name}-samples.png")
    plot_samples(train.images.numpy(), train.labels.numpy(), spec.classes, png, n=args.count)
    print(png, file=out)
    return 0


def _cmd_summary(args: argparse.Namespace, out: TextIO) -> int:
    from mnistlab.measure.summary import summarize

    summary = summarize(args.model, args.batch_size)
    return _answer(args, out, summary.to_dict(), summary.format())


def _cmd_train(args: argparse.Namespace, out: TextIO) -> int:
    from mnistlab.core.distributed import world
    from mnistlab.jobs import train as jobs
    from mnistlab.measure.epochs import epoch_timing
    from mnistlab.training.config import TrainConfig

    keys = [f.name for f in dataclasses.fields(TrainConfig)]
    given = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    _check_trace_dir(args.trace)
    if args.trace and world().distributed:
        raise MnistlabError("--trace records a single process's steps: run it without torchrun")
    # train's progress lines stay on stdout, as they always were, but for --json (_lines_stream)
    options: dict[str, Any] = dict(progress=not args.no_progress, tensorboard=not args.no_tensorboard)
    if args.resume:
        run = jobs.train_run(resume=args.resume, run_dir=args.run_dir, overrides=given, **options)
    else:
        run = jobs.train_run(
            TrainConfig(**given), run_dir=args.run_dir, resume_if_exists=args.resume_if_exists, **options
        )
    if world().is_main:  # under torchrun, rank 0 alone prints
        trace = jobs.trace_run(run.path, args.trace) if args.trace else None  # after the run, apart from it
        timing = epoch_timing(run.metrics()) if run.metrics() else None
        if args.json:
            print(json_text({**_run_record(run, timing), "trace": None if trace is None else str(trace)}), file=out)
            return 0
        if timing is not None:
            print(f"epoch times: {timing.words()}", file=sys.stderr)
        print(run.path, file=out)
    return 0


def _check_trace_dir(trace: str | None) -> None:
    """--trace DIR, refused before any work where DIR is empty, a link (the writer refuses to follow it, but
    only after the run), or there and not a folder."""
    from mnistlab.core.errors import ConfigError

    if trace is None:
        return
    if not trace.strip():
        raise ConfigError("--trace needs a folder name (got an empty one)")
    if Path(trace).is_symlink():
        raise ConfigError(
            f"--trace {trace}: is a symbolic link; mnistlab writes into no folder through a link "
            "(give the folder itself)"
        )
    if Path(trace).exists() and not Path(trace).is_dir():
        raise ConfigError(f"--trace {trace}: is not a folder (give the folder to write the trace into)")


def _run_record(run: Any, timing: Any) -> dict[str, Any]:
    """train --json: the run as its files hold it, and its epoch times read with core/timing.py's rules."""
    times = None
    if timing is not None:
        times = {
            **dataclasses.asdict(timing),
            "words": timing.words(),
            "steady": timing.spread.to_dict() if timing.steady_s else None,
        }
    return {
        "folder": str(run.path),
        "status": run.status(),
        "config": run.config(),
        "epochs": run.metrics(),
        "test": run.test(),
        "epoch_times": times,
    }


def _cmd_eval(args: argparse.Namespace, out: TextIO) -> int:
    from mnistlab.data.info import class_label
    from mnistlab.jobs import evaluate as jobs

    ev = jobs.evaluate_run(args.run_dir, checkpoint=args.checkpoint, device=args.device, data_dir=args.data_dir)
    result = ev.result
    if args.json:
        return _answer(args, out, ev.to_dict())
    print(f"{ev.run} ({ev.model} on {ev.dataset}, {ev.checkpoint}.pt {ev.when}, {ev.device})", file=out)
    if ev.subset:
        print(f"test set: the first {result.total:,} test images only, as in this --subset {ev.subset} run", file=out)
    print(
        f"test loss {result.loss:.4f}  accuracy {result.accuracy:.2%} ({result.correct}/{result.total})  "
        f"in {result.seconds:.2f} s",
        file=out,
    )
    print("per-class accuracy:", file=out)
    names = [class_label(i, c) for i, c in enumerate(ev.classes)]
    w = max(len(n) for n in names)
    for name, acc in zip(names, result.per_class_accuracy, strict=True):
        print(f"  {name:<{w}}  {acc:>7.2%}", file=out)
    print("confusion matrix (rows: true class, columns: predicted):", file=out)
    print("      " + "".join(f"{j:>6}" for j in range(len(ev.classes))), file=out)
    for i, row in enumerate(result.confusion):
        print(f"  {i:>2}  " + "".join(f"{v:>6}" for v in row), file=out)
    return 0


def _cmd_plot(args: argparse.Namespace, out: TextIO) -> int:
    from mnistlab.core.rundir import open_run
    from mnistlab.report.plots import plot_runs

    runs = [open_run(p) for p in args.run_dirs]
    for run in runs:
        if not run.metrics():
            raise MnistlabError(f"{run.path}: no finished epoch to plot yet")
    # a reader writes into no run: the default is the current directory
    default = Path(f"{runs[0].path.resolve().name}-loss.png" if len(runs) == 1 else "compare.png")
    print(plot_runs(runs, Path(args.out) if args.out else default), file=out)
    return 0


def _cmd_profile(args: argparse.Namespace, out: TextIO) -> int:
    from mnistlab.measure.profiling import MACS_VS_FLOPS, format_profile, profile_model
    from mnistlab.measure.table import fit_width

    profiles = [profile_model(m, args.batch_size) for m in args.models]
    texts = [f"{format_profile(p)}\n" for p in profiles]
    return _answer(args, out, [p.to_dict() for p in profiles], *texts, fit_width(MACS_VS_FLOPS))


def _cmd_bench(args: argparse.Namespace, out: TextIO) -> int:
    from mnistlab.core.defaults import PIPELINES
    from mnistlab.core.device import available_devices
    from mnistlab.core.errors import ConfigError
    from mnistlab.jobs import bench as jobs
    from mnistlab.measure.table import fit_width

    conflict = _bench_conflict(args)
    if conflict:
        raise ConfigError(conflict)
    _check_trace_dir(args.trace)
    devices = args.devices or available_devices()
    steps = 100 if args.steps is None else args.steps
    warmup = 10 if args.warmup is None else args.warmup
    common = dict(
        models=args.models, batch_size=args.batch_size, repeats=args.repeats, dataset_name=args.dataset, out=args.out
    )
    if args.nproc:
        result, folder, text = jobs.bench_scaling(
            device=devices[0], nproc=args.nproc, steps=50 if args.steps is None else args.steps, **common
        )
    elif args.implementations:  # the lever axis
        result, folder, text = jobs.bench_levers(
            devices=devices,
            implementations=args.implementations,
            steps=steps,
            warmup=warmup,
            data_dir=args.data_dir,
            **common,
        )
    else:
        pipelines = args.pipelines or list(PIPELINES)
        result, folder, text = jobs.bench_pipelines(
            devices=devices, pipelines=pipelines, steps=steps or None, warmup=warmup, data_dir=args.data_dir, **common
        )
    traces = []
    if args.trace:  # after the timing, in a pass of its own: the profiler slows what it records
        traces = jobs.bench_traces(
            args.trace,
            models=args.models,
            devices=devices,
            pipelines=pipelines,
            batch_size=args.batch_size,
            dataset_name=args.dataset,
            data_dir=args.data_dir,
            name=folder.path.name,
        )
    # JSON: the result file's fields (bench.json, levers.json or scaling.json), where it is, the traces; text:
    # its table fits, its legend wraps (no line over 160 characters)
    record = {"folder": str(folder.path), "file": result.FILE, "traces": [str(t) for t in traces]}
    return _answer(args, out, {**record, **result.to_dict()}, fit_width(text), folder.path)


def _bench_conflict(args: argparse.Namespace) -> str | None:
    """Why the bench options given cannot all be honoured together (None: they can): an option the
    chosen measurement would ignore is refused, not dropped."""
    if args.implementations and args.nproc:
        return "--nproc and --implementations measure different things; give one of them"
    if args.trace and (args.implementations or args.nproc):
        other = "--implementations" if args.implementations else "--nproc"
        return f"--trace records the pipeline cells' steps; drop {other} (or --trace)"
    if args.implementations and args.pipelines:
        return "--implementations times the levers on resident data only; drop --pipelines"
    if not args.nproc:
        return None
    ignored = {
        "--pipelines": args.pipelines,
        "--warmup": args.warmup is not None,
        "--data-dir": args.data_dir,
        "--steps 0": args.steps == 0,
        "a second device in --devices": len(args.devices or []) > 1,
    }
    given = [name for name, on in ignored.items() if on]
    return (
        f"--nproc times DDP steps on random inputs on one device, with its own warm-up: it cannot honour "
        f"{given[0]}; drop it"
        if given
        else None
    )


def _cmd_speedrun(args: argparse.Namespace, out: TextIO) -> int:
    from mnistlab.jobs import speedrun as jobs

    given = {
        k: getattr(args, k)
        for k in ("precision", "channels_last", "compile", "cuda_graphs")
        if getattr(args, k) is not None
    }
    # a cold time only where this command is the process (`mnistlab ...`, not main([...]) in a test or notebook)
    cold = None
    if args.as_program:
        from mnistlab.core.processstart import process_start

        cold = process_start()
    result, folder = jobs.speedrun(
        device=args.device,
        seeds=args.seeds,
        target=args.target,
        levers=given,
        dataset_name=args.dataset,
        data_dir=args.data_dir,
        out=args.out,
        cold_since=cold,
    )
    record = {"folder": str(folder.path), "file": result.FILE, **result.to_dict()}
    return _answer(args, out, record, result.table(), folder.path)


def _cmd_lab(args: argparse.Namespace, out: TextIO) -> int:
    from mnistlab.jobs.lab import run_lab

    if args.resume and (args.quick or args.out):
        from mnistlab.core.errors import ConfigError

        raise ConfigError(
            "--resume finishes a lab with its own plan and folder: drop " + ("--quick" if args.quick else "--out")
        )
    page = run_lab(
        quick=args.quick,
        device=args.device,
        out=args.out,
        data_dir=args.data_dir,
        progress=not args.no_progress,
        gpu=args.gpu,
        resume=args.resume,
    )
    record = {"folder": str(page.parent), "report_html": str(page), "report_md": str(page.with_suffix(".md"))}
    return _answer(args, out, record, page)


def _cmd_sweep(args: argparse.Namespace, out: TextIO) -> int:
    from mnistlab.jobs.sweep import SweepPlan, parse_params, run_sweep
    from mnistlab.measure.sweeps import best_trial, format_results, sweep_results
    from mnistlab.training.config import TrainConfig

    keys = [f.name for f in dataclasses.fields(TrainConfig)]
    base = TrainConfig(**{k: getattr(args, k) for k in keys if getattr(args, k) is not None})
    plan = SweepPlan(
        study=args.study,
        trials=args.trials,
        params=parse_params(args.param),
        base=base,
        direction=args.direction,
        pruner=args.pruner,
        storage=args.storage,
        heartbeat=args.heartbeat_interval,
        grace=args.grace_period,
    )
    sweep_dir = run_sweep(plan, out=args.out)
    record, rows = sweep_results(sweep_dir)
    best = best_trial(record, rows)
    trials = [r.to_dict() for r in rows]
    number = None if best is None else best.number
    as_json = {"folder": str(sweep_dir), "sweep": record, "trials": trials, "best_trial": number}
    return _answer(args, out, as_json, format_results(record, rows), sweep_dir)


def _cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    from mnistlab.report.builder import build_report

    md, page = build_report([Path(d) for d in args.dirs], Path(args.out) if args.out else None, gpu=args.gpu)
    return _answer(args, out, {"report_md": str(md), "report_html": str(page)}, md, page)


_COMMANDS = {name.removeprefix("_cmd_"): f for name, f in list(globals().items()) if name.startswith("_cmd_")}


def _lines_stream(args: argparse.Namespace, answer: TextIO) -> TextIO:
    """Where the command's progress lines (the `mnistlab` logger's) go: stderr, so that stdout holds only what
    a command answers (a path, a table, JSON); train's and lab's lines are what a user reads as it runs, and
    stay on stdout as they always were, except under --json."""
    if args.command in ("train", "lab") and not getattr(args, "json", False):
        return answer
    return sys.stderr


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (captured): nothing to flush
        pass


def _paths_print_as_bytes() -> None:
    """A path that is not valid UTF-8 reaches Python as surrogate escapes; printing one must not crash
    after the work is done. On a UTF-8 stream it is written back as its original bytes."""
    for stream in (sys.stdout, sys.stderr):
        try:
            utf8 = (stream.encoding or "").lower().replace("-", "") == "utf8"
            cast(Any, stream).reconfigure(errors="surrogateescape" if utf8 else "backslashreplace")
        except (AttributeError, ValueError, OSError):  # not a TextIOWrapper: leave it
            pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code. Called as the program (no `argv`: the `mnistlab` script,
    `python -m mnistlab`), a process whose command is done does not wait for threads a user's model
    left running."""
    before = set(threading.enumerate())
    code = _run(argv)
    if argv is None:
        _exit_if_threads_left(before, code)
    return code


def _run(argv: Sequence[str] | None) -> int:
    from mnistlab.core import logs, progress, stopping, threads
    from mnistlab.core.faults import kill_point
    from mnistlab.core.stopping import StopRequests

    _paths_print_as_bytes()
    answer = sys.stdout
    started = False  # argparse's own exits (--help, --version, a bad option) pass through as they are
    stopping.release()
    try:
        args = build_parser().parse_args(argv)
        args.as_program = argv is None  # the process's own command line, not main([...]) called from Python
        started = True
        # every command stops on SIGTERM as on Ctrl-C: one line and its exit code, never a silent death
        with StopRequests():
            if args.command in _COMPUTING:
                threads.apply(getattr(args, "threads", None))
                if threads.capped():
                    print(f"mnistlab: warning: {threads.capped()}", file=sys.stderr)
            # stdout holds only the command's answer: whatever else prints while it works (a user's model,
            # a library) goes to stderr, so that `eval --json` or a printed run path stays parseable
            quiet = getattr(args, "quiet", False)
            with (
                contextlib.redirect_stdout(sys.stderr),
                logs.printing(_lines_stream(args, answer), logging.WARNING if quiet else logging.INFO),
                progress.turned_off(quiet or getattr(args, "no_progress", False)),
            ):
                code = _COMMANDS[args.command](args, answer)
                kill_point("command-done")
            answer.flush()  # a closed pipe shows up here, inside the handlers below, not at interpreter exit
        return code
    except BrokenPipeError:  # `mnistlab eval RUN --json | head`: the reader left; stop quietly, as cat does
        _silence_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the broken pipe
    except (Exception, KeyboardInterrupt, SystemExit) as e:  # one mapping for every command (core.failures)
        if isinstance(e, SystemExit) and not started:
            raise
        from mnistlab.core.failures import outcome

        end = outcome(e)  # sys.exit() called by a user's model or a library is a failure like any other
        if end.line is None:  # a bug in mnistlab: keep its traceback
            raise
        prefix = "mnistlab: " if isinstance(e, KeyboardInterrupt) else "mnistlab: error: "
        print(prefix + end.line, file=sys.stderr)
        return end.exit_code
    finally:
        _late_stop(stopping.release())


def _late_stop(signum: int | None) -> None:
    """A stop request that came after the command's job had recorded how it ended changed nothing: say so."""
    if signum is not None:
        import signal

        what = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        print(f"mnistlab: {what} came after the job had recorded how it ended; nothing was changed", file=sys.stderr)


def _exit_if_threads_left(before: set[threading.Thread], code: int) -> None:
    """A non-daemon thread started during the command (by a user's model, or torch.compile's workers:
    mnistlab starts none) and still running would keep the interpreter from exiting, forever: say so,
    flush, and exit now."""
    left = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    if not left:
        return
    print(
        f"mnistlab: warning: not waiting for {len(left)} thread(s) still running ({left[0].name}, started by "
        f"the model's code or, with --compile, by torch.compile's workers)",
        file=sys.stderr,
    )
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
