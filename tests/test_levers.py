"""Speed levers: each trains a tiny run end to end on the CPU (not timed); the ones a device lacks
are one-line ConfigErrors; config.json records them and --resume keeps them."""

import json
import platform
import subprocess
import sys

import pytest
import torch

from mnistlab import cli
from mnistlab.core.errors import ConfigError
from mnistlab.jobs.train import train_run
from mnistlab.training import levers as lv
from mnistlab.training.checkpoint import load_checkpoint
from mnistlab.training.config import TrainConfig
from mnistlab.training.levers import Levers
from mnistlab.training.loop import make_optimizer
from mnistlab.training.models import create_model

CPU = torch.device("cpu")


def cfg(**kw):
    return TrainConfig(**{**dict(dataset="tiny", epochs=1, seed=0, device="cpu", subset=256), **kw})


def quiet(**kw):
    return dict(log=lambda m: None, progress=False, **kw)


@pytest.mark.parametrize(
    "model, kw",
    [
        ("cnn", dict(precision="bf16-mixed")),
        ("cnn", dict(channels_last=True)),
        ("cnn", dict(precision="bf16-mixed", channels_last=True)),
        ("mlp", dict(precision="bf16-mixed")),
    ],
)
@pytest.mark.slow
def test_each_lever_trains_and_is_recorded(tiny, tmp_path, model, kw):
    run = train_run(cfg(model=model, epochs=2, lr=0.05, subset=128, **kw), run_dir=tmp_path / "r", **quiet())
    stored = json.loads((run / "config.json").read_text())
    assert {k: stored[k] for k in kw} == kw
    assert run.test()["total"] == 128 and run.metrics()[-1]["train_loss"] < run.metrics()[0]["train_loss"]
    state = load_checkpoint(run / "last.pt")
    assert state["config"]["precision"] == kw.get("precision", "32")


@pytest.mark.slow
def test_compiled_run_trains(tiny, tmp_path, monkeypatch):
    # the real path through torch.compile (dynamo, AOT autograd) with the cheap aot_eager backend:
    # inductor's C++ build of even this tiny model takes a minute on 2 cores (benchmarks/ runs it)
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: real(model, backend="aot_eager"))
    run = train_run(cfg(compile="default", subset=128), run_dir=tmp_path / "r", **quiet())
    assert run.status()["state"] == "completed" and run.test()["total"] == 128
    assert "_orig_mod" not in "".join(load_checkpoint(run / "last.pt")["model"])  # eager module's keys


def test_levers_change_the_arithmetic_not_the_result():
    """bf16 autocast really runs: the loss differs from fp32's, slightly."""
    losses = {}
    for precision in ("32", "bf16-mixed"):
        torch.manual_seed(0)
        model = create_model("cnn")
        step = lv.make_step(
            model,
            make_optimizer(model, 0.01, 0.5),
            Levers(precision=precision),
            CPU,
            batch_size=8,
            sample_shape=(1, 28, 28),
        )
        x, y = torch.randn(8, 1, 28, 28), torch.arange(8)
        losses[precision] = float(step(x, y))
    assert losses["32"] != losses["bf16-mixed"] and abs(losses["32"] - losses["bf16-mixed"]) < 0.05


@pytest.mark.parametrize(
    "levers, words",
    [
        (Levers(precision="16-mixed"), "16-mixed needs a CUDA GPU"),
        (Levers(cuda_graphs=True), "--cuda-graphs needs a CUDA GPU"),
        (Levers(compile="reduce-overhead"), "reduce-overhead means CUDA graphs"),
    ],
)
def test_a_lever_the_cpu_lacks_is_one_line(levers, words):
    with pytest.raises(ConfigError, match=words) as e:
        levers.check(CPU)
    assert "\n" not in str(e.value)


def test_cuda_only_combinations_are_refused(monkeypatch):
    cuda = torch.device("cuda")
    with pytest.raises(ConfigError, match="cannot be combined"):
        Levers(cuda_graphs=True, compile="default").check(cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    with pytest.raises(ConfigError, match="GradScaler"):
        Levers(cuda_graphs=True, precision="16-mixed").check(cuda)


def test_missing_compiler_is_one_line():
    from torch._inductor import config as inductor_config

    with inductor_config.patch({"cpp.cxx": (None, "no-such-c++-compiler")}):
        with pytest.raises(ConfigError, match="needs a C\\+\\+ compiler"):
            Levers(compile="default").check(CPU)


def test_broken_compiler_at_first_call_is_one_line(monkeypatch):
    import torch._inductor.exc

    def broken(model, mode=None):
        def call(x):
            raise torch._inductor.exc.InductorError(RuntimeError("cc1plus: fatal error\nmore"), "trace")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    model = create_model("mlp")
    step = lv.make_step(
        model, make_optimizer(model, 0.01, 0.5), Levers(compile="default"), CPU, batch_size=4, sample_shape=(1, 28, 28)
    )
    with pytest.raises(ConfigError, match="torch.compile failed on this machine") as e:
        step(torch.randn(4, 1, 28, 28), torch.arange(4))
    assert "\n" not in str(e.value)


def test_config_validates_levers():
    with pytest.raises(ConfigError, match="precision must be one of"):
        TrainConfig(precision="fp8")
    with pytest.raises(ConfigError, match="compile must be one of"):
        TrainConfig(compile="fast")
    with pytest.raises(ConfigError, match="channels_last must be true or false"):
        TrainConfig(channels_last="yes")


def test_old_config_without_levers_loads_with_defaults():
    old = {
        k: v
        for k, v in TrainConfig().to_dict().items()
        if k not in ("precision", "channels_last", "compile", "cuda_graphs")
    }
    c = TrainConfig.from_dict(old)
    assert (c.precision, c.channels_last, c.compile, c.cuda_graphs) == ("32", False, "off", False)


def test_resume_keeps_the_levers(tiny, tmp_path):
    run = train_run(
        cfg(model="cnn", precision="bf16-mixed", channels_last=True, subset=128), run_dir=tmp_path / "r", **quiet()
    )
    lines = []
    train_run(resume=run.path, overrides={"epochs": 1}, log=lines.append, progress=False)
    assert any("bf16-mixed + channels-last" in line for line in lines)
    stored = json.loads((run / "config.json").read_text())
    assert (stored["precision"], stored["channels_last"], stored["epochs"]) == ("bf16-mixed", True, 2)
    with pytest.raises(ConfigError, match="cannot resume with precision"):
        train_run(resume=run.path, overrides={"epochs": 1, "precision": "32"}, **quiet())


def test_warm_up_leaves_weights_and_optimizer_untouched():
    torch.manual_seed(0)
    model = create_model("cnn")
    opt = make_optimizer(model, 0.1, 0.9)
    step = lv.make_step(model, opt, Levers(), CPU, batch_size=8, sample_shape=(1, 28, 28))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8)
    lv.warm_up(step, x, y, steps=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.count_nonzero(s["momentum_buffer"]) == 0 for s in opt.state.values())
    # and a step after the warm-up equals a first step of a fresh run
    first_after = float(step(x, y))
    torch.manual_seed(0)
    fresh = create_model("cnn")
    assert first_after == float(
        lv.make_step(fresh, make_optimizer(fresh, 0.1, 0.9), Levers(), CPU, batch_size=8, sample_shape=(1, 28, 28))(
            x, y
        )
    )
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters(), strict=True))


def test_cli_options_come_from_the_config(tiny, tmp_path, capsys):
    assert (
        cli.main(
            [
                "train",
                "--dataset",
                "tiny",
                "--epochs",
                "1",
                "--device",
                "cpu",
                "--subset",
                "128",
                "--precision",
                "bf16-mixed",
                "--channels-last",
                "--model",
                "cnn",
                "--no-progress",
                "--run-dir",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    assert stored["precision"] == "bf16-mixed" and stored["channels_last"] is True
    assert (
        cli.main(
            [
                "train",
                "--dataset",
                "tiny",
                "--device",
                "cpu",
                "--precision",
                "16-mixed",
                "--run-dir",
                str(tmp_path / "r2"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mnistlab: error: --precision 16-mixed needs a CUDA GPU")
    assert not (tmp_path / "r2").exists()  # refused before a run directory was made
    with pytest.raises(SystemExit):
        cli.main(["train", "--compile", "fast"])


needs_cuda = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")]


@pytest.mark.parametrize(
    "kw",
    [
        dict(cuda_graphs=True),
        dict(cuda_graphs=True, precision="bf16-mixed", channels_last=True),
        dict(precision="16-mixed"),
        dict(compile="default"),
    ],
)
@pytest.mark.usefixtures("tiny")
@needs_cuda[0]
@needs_cuda[1]
def test_cuda_levers_train_and_resume(tmp_path, kw):
    # batch 48 over 256 samples: five full batches (graph replays) and a short one (eager, same weights)
    run = train_run(cfg(model="cnn", device="cuda", batch_size=48, **kw), run_dir=tmp_path / "r", **quiet())
    train_run(resume=run.path, overrides={"epochs": 1}, **quiet())
    assert len(run.metrics()) == 2 and run.test()["total"] == 200
    state = load_checkpoint(run / "last.pt")
    assert ("grad_scaler" in state) == (kw.get("precision") == "16-mixed")


@pytest.mark.usefixtures("tiny")
@needs_cuda[0]
@needs_cuda[1]
def test_cuda_graphs_train_like_eager(tmp_path):
    """The captured step is the same arithmetic: same losses as the eager step, short last batch included."""
    rows = {}
    for graphs in (False, True):
        run = train_run(
            cfg(model="mlp", device="cuda", batch_size=48, epochs=2, cuda_graphs=graphs),
            run_dir=tmp_path / f"r{graphs}",
            **quiet(),
        )
        rows[graphs] = run.metrics()
    for a, b in zip(rows[False], rows[True], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)


FAULTS_SCRIPT = """
import resource, sys, torch
from mnistlab.measure.speedrun import Recipe, recipe_optimizer
from mnistlab.training.levers import Levers, keep_freed_memory, make_step, prepare_model
from mnistlab.training.models import create_model
torch.set_num_threads(1)
levers, cpu = Levers(precision="bf16-mixed", channels_last=True), torch.device("cpu")
model = prepare_model(create_model("speednet"), levers, cpu, sample_shape=(1, 28, 28))
step = make_step(model, recipe_optimizer(model, Recipe(), levers, cpu), levers, cpu, batch_size=256,
                 sample_shape=(1, 28, 28), input_dtype=torch.bfloat16)
x, y = torch.randn(256, 1, 28, 28).to(torch.bfloat16), torch.randint(0, 10, (256,))
def faults_per_step():
    for _ in range(5):
        step(x, y)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        step(x, y)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
default = faults_per_step()
assert keep_freed_memory() is None
print(default, faults_per_step())
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_keep_freed_memory_stops_the_page_faults_of_each_speednet_step():
    """glibc hands the step's larger freed blocks back to the kernel, so speedrun steps fault in hundreds of
    fresh pages; kept, they are reused. Counted (minor page faults per step), not timed, in fresh processes
    (the setting is the process's): glibc's default first, then the setting. Its thresholds adapt to what was
    freed before, so by default a process faults 0-700 times a step (measured): some of 4 fault heavily, and
    none once the setting is made."""

    # the 4 processes at once (one thread each): faults are counted per process, whatever runs beside it
    procs = [
        subprocess.Popen([sys.executable, "-c", FAULTS_SCRIPT], stdout=subprocess.PIPE, text=True) for _ in range(4)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    default, keep = zip(*(map(float, out.split()) for out in outs), strict=True)
    assert max(default) > 50 and max(keep) < 30, (default, keep)


def test_keep_freed_memory_says_why_not_where_there_is_no_glibc(monkeypatch):
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    assert lv.keep_freed_memory().startswith("not glibc (Darwin")
