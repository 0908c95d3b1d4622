"""The command line answers --help without importing torch, and `import mnistlab` stays cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mnistlab.cli import build_parser

COMMANDS = [
    [],
    ["env"],
    ["data"],
    ["data", "fetch"],
    ["data", "info"],
    ["data", "show"],
    ["summary"],
    ["train"],
    ["eval"],
    ["plot"],
    ["profile"],
    ["bench"],
    ["lab"],
    ["report"],
]

# run in a fresh interpreter: this test process has long since imported torch
PROBE = """
import contextlib, io, sys
from mnistlab.cli import main
for argv in {commands!r}:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main([*argv, "--help"])
print("HEAVY=" + ",".join(m for m in ("torch", "matplotlib", "numpy", "tqdm") if m in sys.modules))
"""


def heavy_modules_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("HEAVY="))
    return [m for m in line[len("HEAVY=") :].split(",") if m]


def test_every_help_is_torch_free():
    assert heavy_modules_after(PROBE.format(commands=COMMANDS)) == []


def test_version_names_mnistlab_torch_and_python_without_importing_torch(capsys):
    import platform

    import torch

    import mnistlab

    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == (
        f"mnistlab {mnistlab.__version__} (torch {torch.__version__}, Python {platform.python_version()})\n"
    )
    probe = (
        "import contextlib, io, sys\nfrom mnistlab.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--version'])\n"
        "print('HEAVY=' + ','.join(m for m in ('torch', 'matplotlib', 'numpy') if m in sys.modules))"
    )
    assert heavy_modules_after(probe) == []


def test_import_mnistlab_is_cheap_and_names_load_on_use():
    code = (
        "import sys, mnistlab\nassert 'mnistlab.training' not in sys.modules\n"
        "print('HEAVY=' + ','.join(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    )
    assert heavy_modules_after(code) == []
    import mnistlab

    assert mnistlab.TrainConfig().batch_size == 64 and callable(mnistlab.train)
    assert set(mnistlab.__all__) <= set(dir(mnistlab)) | {"__version__"}
    with pytest.raises(AttributeError):
        mnistlab.no_such_name  # noqa: B018


def test_every_public_name_resolves():
    import mnistlab

    for name in mnistlab.__all__:
        assert getattr(mnistlab, name) is not None, name


@pytest.mark.parametrize("command", COMMANDS)
def test_help_exits_zero(command, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*command, "--help"])
    assert e.value.code == 0 and "usage: mnistlab" in capsys.readouterr().out
