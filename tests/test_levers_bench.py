"""bench's implementation axis on tiny data: one table of what each lever buys (not timed)."""

import json
import re

import pytest

from mnistlab import cli
from mnistlab.core.defaults import IMPLEMENTATIONS
from mnistlab.core.errors import CheckpointError
from mnistlab.measure.levers_bench import IMPLEMENTATION_LEVERS, ImplCell, LeversResult, format_table


@pytest.mark.slow
def test_bench_implementations_table(tiny, tmp_path, capsys):
    assert (
        cli.main(
            [
                "bench",
                "--dataset",
                "tiny",
                "--models",
                "cnn",
                "--devices",
                "cpu",
                "--implementations",
                "eager",
                "bf16-mixed+channels-last",
                "cuda-graphs",
                "--steps",
                "2",
                "--repeats",
                "2",
                "--warmup",
                "1",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "not measured: --cuda-graphs needs a CUDA GPU" in out and "bf16-mixed+channels-last" in out
    data = json.loads((tmp_path / "b" / "levers.json").read_text())
    cells = {c["implementation"]: c for c in data["cells"]}
    assert cells["eager"]["speedup_vs_eager"] == 1.0 and len(cells["eager"]["step_s"]) == 2
    # the eager cell's bound is its measured decomposition's judgement, in the one vocabulary (issue 27)
    part = "(fixed per-step cost|arithmetic|memory)"
    assert re.fullmatch(f"{part}|between {part} and {part}", cells["eager"]["bound"]), cells["eager"]["bound"]
    assert [d["implementation"] for d in data["decompositions"]] == ["eager"]
    assert "stable" in cells["eager"]["stability"]
    bf16 = cells["bf16-mixed+channels-last"]
    assert bf16["compute_dtype"] == "bfloat16" and len(bf16["step_s"]) == 2
    assert bf16["peak_flops_per_s"] == data["peaks_flops_per_s"]["cpu"]["bfloat16"]  # the dtype's own peak
    # the median of the per-repeat ratios (the repeats ran interleaved), with its range and stability
    paired = sorted(a / b for a, b in zip(cells["eager"]["step_s"], bf16["step_s"], strict=True))
    assert bf16["speedup_vs_eager"] == pytest.approx(sum(paired) / 2) and bf16["vs_eager"]["spread"]["n"] == 2
    assert "CUDA GPU" in cells["cuda-graphs"]["unavailable"] and not cells["cuda-graphs"]["step_s"]
    assert any("bf16-mixed+channels-last" in o and "eager fp32 in the same run" in o for o in data["observations"])
    assert (tmp_path / "b" / "levers.txt").read_text().startswith("cpu: ")

    from mnistlab.report.document import Document
    from mnistlab.report.sections.levers import levers_section

    doc = Document("t")
    result = LeversResult.from_dict(data)
    assert result.to_dict() == data  # round trip
    levers_section(doc, result)
    md = doc.to_markdown(tmp_path)
    assert "Speed levers: what each one buys" in md and "not available" in md and "of bfloat16" in md


def test_every_implementation_has_its_levers():
    assert tuple(IMPLEMENTATION_LEVERS) == IMPLEMENTATIONS
    assert IMPLEMENTATION_LEVERS["eager"].describe() == "eager fp32"


def _lever_result(eager_s, bf16_s) -> LeversResult:
    cells = [
        ImplCell("cnn", "cpu", name, name, "float32", 64, 10, 0.1, list(s), 1_000_000, 1e9)
        for name, s in (("eager", eager_s), ("bf16-mixed", bf16_s))
    ]
    return LeversResult(
        cells,
        {"cpu": {"float32": 1e9}},
        {"cpu": "a CPU"},
        {"batch_size": 64, "steps": 10, "repeats": len(eager_s), "warmup": 1},
    )


def test_a_levers_cell_with_a_30_percent_spread_is_unstable():
    result = _lever_result([0.010, 0.010, 0.010], [0.008, 0.0104, 0.008])  # 30% of its median
    bf16 = result.cell("cpu", "cnn", "bf16-mixed")
    assert result.cell("cpu", "cnn", "eager").stability.stable and not bf16.stability.stable
    data = result.to_dict()
    assert not data["cells"][1]["stability"]["stable"] and "30%" in data["cells"][1]["stability"]["reason"]
    assert "[unstable:" in next(o for o in data["observations"] if "bf16-mixed:" in o)  # its ratio to eager
    assert format_table(result).splitlines()[3].endswith("unstable")


@pytest.mark.parametrize("field, value", [("step_s", ["fast"]), ("implementation", None), ("warmup_s", "1 s")])
def test_a_malformed_levers_json_is_one_line_naming_the_file_and_field(tmp_path, field, value):
    from mnistlab.core.schema import read_result

    data = _lever_result([0.01, 0.01], [0.008, 0.008]).to_dict()
    data["cells"][1][field] = value
    (tmp_path / "levers.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError) as e:
        read_result(LeversResult, tmp_path)
    message = str(e.value)
    assert str(tmp_path / "levers.json") in message and field in message and "\n" not in message


VIEW_NET = """
from torch import nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 28 * 28, 10)
    def forward(self, x):
        x = self.conv(x).relu()
        return self.fc(x.view(x.size(0), -1))
"""


@pytest.mark.slow
def test_a_lever_the_model_cannot_take_leaves_the_other_cells_measured(tiny, tmp_path, capsys):
    from mnistlab import cli
    from mnistlab.core.schema import read_result
    from mnistlab.measure.levers_bench import LeversResult

    (tmp_path / "net.py").write_text(VIEW_NET)
    assert (
        cli.main(
            [
                "bench",
                "--implementations",
                "eager",
                "channels-last",
                "--models",
                f"{tmp_path}/net.py:Net",
                "--dataset",
                "tiny",
                "--devices",
                "cpu",
                "--steps",
                "2",
                "--repeats",
                "1",
                "--warmup",
                "1",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    result = read_result(LeversResult, tmp_path / "out")
    eager, cl = result.cells
    assert eager.step_s and not eager.unavailable
    assert "x.flatten(1)" in cl.unavailable and "not measured" in capsys.readouterr().out


@pytest.mark.slow
def test_eager_and_channels_last_cells_are_judged_by_their_floors(tiny, tmp_path):
    from mnistlab import cli
    from mnistlab.core.schema import read_result
    from mnistlab.measure.levers_bench import LeversResult

    assert (
        cli.main(
            [
                "bench",
                "--implementations",
                "eager",
                "channels-last",
                "bf16-mixed",
                "--models",
                "cnn",
                "--dataset",
                "tiny",
                "--devices",
                "cpu",
                "--steps",
                "2",
                "--repeats",
                "2",
                "--warmup",
                "1",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    result = read_result(LeversResult, tmp_path / "out")
    eager, cl, bf16 = result.cells
    for c in (eager, cl):  # measured at several batches with its own levers, read back from levers.json
        d = c.decomposition
        assert d is not None and d.implementation == c.implementation and d.model == "cnn" and d.batch_size == 64
        assert c.floors is not None and c.bound == d.binds and 0 < c.utilisation <= 1
    assert [d.implementation for d in result.decompositions] == ["eager", "channels-last"]
    assert bf16.floors is None and bf16.decomposition is None  # its own ops are not counted: the threshold
    assert bf16.bound in ("arithmetic", "fixed per-step cost")
    eager_line = next(o for o in result.to_dict()["observations"] if o.startswith("cpu/cnn eager:"))
    assert eager.decomposition.brief() in eager_line
