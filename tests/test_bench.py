import json

import pytest

from mnistlab.measure.bench import PHASES, format_table, observations, run_bench, target_checks
from mnistlab.cli import main
from mnistlab.data.loader import read_split


@pytest.fixture
def result(tiny):
    spec, root = tiny
    split = read_split(spec, root, train=True)
    return run_bench(split, spec, models=["mlp", "cnn"], devices=["cpu"], pipelines=["reference", "resident"],
                     steps=4, repeats=2, warmup=1, log=lambda m: None)


def test_every_cell_is_measured(result):
    assert [c.key for c in result.cells] == ["reference/cpu/mlp", "resident/cpu/mlp",
                                              "reference/cpu/cnn", "resident/cpu/cnn"]
    for c in result.cells:
        assert len(c.step_s) == 2 and all(t > 0 for t in c.step_s)
        assert c.extrapolated and c.steps_per_epoch == 10 and c.epoch_s_median == pytest.approx(10 * c.step_median_s)
        assert c.peak_flops_per_s > 0 and 0 < c.utilisation
        assert set(c.phases_s) == set(PHASES)
    assert result.cell("resident", "cpu", "mlp").train_step_flops == 64 * 454_400


def test_phases_add_up_to_the_measured_step(result):
    for c in result.cells:
        total = sum(c.phases_s.values())
        assert total <= c.instrumented_step_s * 1.0001
        assert total >= 0.9 * c.instrumented_step_s, (c.key, total, c.instrumented_step_s)


def test_observations_and_targets_come_from_the_numbers(result):
    notes = observations(result)
    for c in result.cells:
        line = next(n for n in notes if n.startswith(c.key + ":"))
        assert f"{c.step_median_s * 1e3:.2f} ms per step" in line
    assert any(n.startswith("mlp on cpu: the resident pipeline is") for n in notes)
    checks = dict(target_checks(result))
    assert any("floor 10x" in k for k in checks) and any("compute-bound" in k for k in checks)
    assert "reference/cpu/cnn" in format_table(result)


def test_bench_cli_writes_json_png_and_text(tiny, capsys, tmp_path):
    code = main(["bench", "--dataset", "tiny", "--steps", "2", "--repeats", "1", "--warmup", "1",
                 "--models", "mlp", "--out", str(tmp_path / "b")])
    out, _ = capsys.readouterr()
    assert code == 0 and "resident/cpu/mlp" in out and out.strip().endswith(str(tmp_path / "b"))
    data = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert len(data["cells"]) == 2 and data["observations"] and data["peaks_flops_per_s"]["cpu"] > 0
    assert (tmp_path / "b" / "bench.png").read_bytes()[:4] == b"\x89PNG"
    assert "of each step is" in (tmp_path / "b" / "bench.txt").read_text()


def test_profile_cli(capsys):
    assert main(["profile", "mlp", "cnn"]) == 0
    out, _ = capsys.readouterr()
    assert "454,400" in out and "101,578" in out and "MAC" in out
    assert main(["profile", "mlp", "--json", "--batch-size", "2"]) == 0
    assert json.loads(capsys.readouterr()[0])[0]["macs"] == 2 * 109_184
