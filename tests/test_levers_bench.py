"""bench's implementation axis on tiny data: one table of what each lever buys (not timed)."""

import json

from mnistlab import cli
from mnistlab.core.defaults import IMPLEMENTATIONS
from mnistlab.measure.levers_bench import IMPLEMENTATION_LEVERS


def test_bench_implementations_table(tiny, tmp_path, capsys):
    assert cli.main(["bench", "--dataset", "tiny", "--models", "cnn", "--devices", "cpu", "--implementations",
                     "eager", "bf16-mixed+channels-last", "cuda-graphs", "--steps", "2", "--repeats", "2",
                     "--warmup", "1", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "not available on cpu" in out and "bf16-mixed+channels-last" in out
    data = json.loads((tmp_path / "b" / "levers.json").read_text())
    cells = {c["implementation"]: c for c in data["cells"]}
    assert cells["eager"]["speedup_vs_eager"] == 1.0 and len(cells["eager"]["step_s"]) == 2
    bf16 = cells["bf16-mixed+channels-last"]
    assert bf16["compute_dtype"] == "bfloat16" and len(bf16["step_s"]) == 2
    assert bf16["peak_flops_per_s"] == data["peaks_flops_per_s"]["cpu"]["bfloat16"]  # the dtype's own peak
    assert bf16["speedup_vs_eager"] == cells["eager"]["step_median_s"] / bf16["step_median_s"]
    assert "CUDA GPU" in cells["cuda-graphs"]["unavailable"] and not cells["cuda-graphs"]["step_s"]
    assert any("bf16-mixed+channels-last" in o and "eager fp32 in the same run" in o for o in data["observations"])
    assert (tmp_path / "b" / "levers.txt").read_text().startswith("cpu: ")

    from mnistlab.report.builder import levers_section
    from mnistlab.report.document import Document

    doc = Document("t")
    levers_section(doc, data)
    md = doc.to_markdown(tmp_path)
    assert "Speed levers: what each one buys" in md and "not available" in md and "of bfloat16" in md


def test_every_implementation_has_its_levers():
    assert tuple(IMPLEMENTATION_LEVERS) == IMPLEMENTATIONS
    assert IMPLEMENTATION_LEVERS["eager"].describe() == "eager fp32"
