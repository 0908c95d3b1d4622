"""A step split into a fixed part and a per-sample part, measured; and what binds it, judged from those (issue 27)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnistlab.core.errors import CheckpointError, ConfigError
from mnistlab.data.datasets import DataShape
from mnistlab.measure.decomposition import (
    ARITHMETIC,
    FIXED,
    MEMORY,
    DecomposeSettings,
    Decomposition,
    fit_line,
    judge,
    measure_decomposition,
    per_sample_binds,
    write_decompositions,
)

BATCHES = (1, 8, 64, 256, 1024)
FIXED_S, PER_SAMPLE_S = 0.4e-3, 5e-6
# deterministic +-2% scatter, the same pattern for every batch: repeat i is i-th of these
SCATTER = (1.00, 1.02, 0.98, 1.01, 0.99)


def _timings(fixed=FIXED_S, per=PER_SAMPLE_S, scatter=SCATTER, batches=BATCHES):
    return {b: tuple((fixed + per * b) * s for s in scatter) for b in batches}


def _cell(
    timings,
    *,
    batch=64,
    flops=1_000_000,
    bytes_per_sample=10_000,
    bandwidths=None,
    footprint=2**20,
    ceiling=100e9,
    op_cost=2e-6,
):
    """A decomposition of made-up measurements: `flops` and `bytes_per_sample` per sample, 100,000 fixed bytes."""
    lo, hi = min(timings), max(timings)
    counted = {
        lo: (flops * lo, 100_000 + bytes_per_sample * lo, 60),
        hi: (flops * hi, 100_000 + bytes_per_sample * hi, 60),
    }
    sizes = {"L2": 2**20, "L3": 16 * 2**20, "DRAM": 512 * 2**20}
    return Decomposition(
        "mlp",
        "cpu",
        "Test CPU (1 thread)",
        1,
        batch,
        timings,
        counted,
        footprint,
        ceiling,
        op_cost,
        sizes,
        bandwidths or {"L2": 200e9, "L3": 100e9, "DRAM": 10e9},
    )


def test_the_fit_finds_a_known_fixed_part_despite_an_outlier():
    timings = _timings()
    batches = [b for b in BATCHES for _ in SCATTER]
    times = [t for b in BATCHES for t in timings[b]]
    times[len(SCATTER) + 2] *= 6  # one repeat at batch 8 hit by a busy neighbour: 6x slower
    fit = fit_line(batches, times)
    assert fit.fixed_s == pytest.approx(FIXED_S, rel=0.05)
    assert fit.per_sample_s == pytest.approx(PER_SAMPLE_S, rel=0.03)
    assert fit.per_sample_low_s <= fit.per_sample_s <= fit.per_sample_high_s
    assert fit.residual_median < 0.03 and fit.residual_max > 0.8  # the outlier: 5/6 of its time unexplained
    # least squares is pulled off by the same outlier: this is what the robust fit is for
    slope, intercept = np.polyfit(batches, times, 1)
    assert abs(intercept - FIXED_S) / FIXED_S > 0.10
    with pytest.raises(ConfigError, match="two batch sizes"):
        fit_line([64, 64], [1.0, 1.1])


def test_the_parts_at_the_cells_batch_come_from_the_batches_up_to_it():
    """A CNN's per-sample cost grows once its activations leave a cache: 50% dearer at 256 and 1024 here. A line
    through every batch would put its fixed part below zero; the parts at batch 64 come from batches 1-64, and
    the larger ones say how far the line holds."""
    timings = _timings(fixed=2e-3, per=1e-3)
    timings = {b: tuple(t * (1.5 if b > 64 else 1.0) for t in ts) for b, ts in timings.items()}
    d = _cell(timings, batch=64)
    assert d.fitted_batches == [1, 8, 64] and d.fit.fixed_s == pytest.approx(2e-3, rel=0.05)
    assert d.beyond() == pytest.approx({256: 0.5, 1024: 0.5}, abs=0.02) and "+50% at batch 1024" in d.words()
    everything = fit_line([b for b in BATCHES for _ in SCATTER], [t for b in BATCHES for t in timings[b]])
    assert everything.fixed_s < 0  # what a fit through every batch would have said
    assert _cell(timings, batch=1024).fitted_batches == list(BATCHES)
    assert _cell(timings, batch=1).fitted_batches == [1, 8]  # two batches at least


def test_the_labels_are_a_function_of_values_with_fixed_tolerances():
    # per sample: 10 us of arithmetic against 1 us of memory traffic; the other way round; within 25%
    assert per_sample_binds(10e-6, 1e-6) == ARITHMETIC and per_sample_binds(1e-6, 10e-6) == MEMORY
    assert (
        per_sample_binds(10e-6, 9e-6) == "between arithmetic and memory" and per_sample_binds(1e-6, None) == ARITHMETIC
    )
    assert judge(0.61, 10e-6, 1e-6) == FIXED
    assert judge(0.39, 10e-6, 1e-6) == ARITHMETIC and judge(0.39, 1e-6, 10e-6) == MEMORY
    assert judge(0.50, 10e-6, 1e-6) == "between fixed per-step cost and arithmetic"
    assert judge(0.45, 1e-6, 10e-6) == "between fixed per-step cost and memory"


def test_a_step_that_is_mostly_fixed_is_never_called_memory_bound():
    """The issue's MLP: 60% of the step at batch 64 is fixed, and its bytes at DRAM bandwidth would make the
    largest floor; the working set fits in cache, so the floor uses the cache's bandwidth, and the label is the
    fixed part."""
    timings = _timings(fixed=0.35e-3, per=3.6e-6)
    d = _cell(timings, flops=420_000, bytes_per_sample=64_000, footprint=900_000)
    assert d.fixed_share == pytest.approx(0.35 / (0.35 + 3.6e-3 * 64), rel=0.02) and d.fixed_share > 0.6
    assert d.bandwidth[0] == "L2" and "fits in the L2-sized probe" in d.bandwidth[2]
    assert d.binds == FIXED and "memory" not in d.binds
    assert d.words().startswith("mlp on Test CPU (1 thread): bound by its fixed per-step cost.")
    # the same step with a working set beyond the caches: its memory floor is at DRAM bandwidth, yet the fixed
    # part still binds; at batch 1024 the per-sample part dominates and memory is its larger floor
    beyond = _cell(timings, flops=420_000, bytes_per_sample=64_000, footprint=2**30)
    assert beyond.bandwidth[0] == "DRAM" and beyond.binds == FIXED
    assert _cell(timings, batch=1024, flops=420_000, bytes_per_sample=64_000, footprint=2**30).binds == MEMORY


def test_two_cells_with_equal_floors_and_overlapping_spreads_get_the_same_label():
    """The issue's two CNN cells: identical floors at batch 64 (13.376 ms of arithmetic, 8.729 ms of memory
    traffic), one measured with 2% scatter and one with 20%, which ranged them once as 'compute-bound' and once
    as 'between compute and memory'. Their medians agree and their ranges overlap: their labels must agree."""
    floors = {
        "flops": round(13.376e-3 / 64 * 100e9),
        "bytes_per_sample": round(8.729e-3 / 64 * 10e9),
        "footprint": 2**30,
    }
    tight = _cell(_timings(fixed=0.3e-3, per=220e-6), **floors)
    wide = _cell(_timings(fixed=0.3e-3, per=220e-6, scatter=(1.0, 1.2, 0.8, 1.1, 0.9)), **floors)
    assert tight.compute_per_sample_s * 64 == pytest.approx(
        13.376e-3
    ) and wide.memory_per_sample_s * 64 == pytest.approx(8.729e-3)
    assert wide.step.rel_range > 0.3 > tight.step.rel_range
    assert tight.step.min <= wide.step.max and wide.step.min <= tight.step.max  # the spreads overlap
    assert tight.binds == wide.binds == ARITHMETIC
    # and where the two floors are within FLOOR_TOLERANCE, both say 'between', whatever their spreads
    near = {**floors, "bytes_per_sample": round(12e-3 / 64 * 10e9)}
    assert _cell(_timings(fixed=0.3e-3, per=220e-6), **near).binds == "between arithmetic and memory"
    assert (
        _cell(_timings(fixed=0.3e-3, per=220e-6, scatter=(1.0, 1.2, 0.8, 1.1, 0.9)), **near).binds
        == "between arithmetic and memory"
    )
    assert not wide.stability.stable and "unstable" in wide.words()


def _read(path):
    """decomposition.json's entries, each read as bench.json reads its decompositions."""
    data = json.loads(path.read_text())
    return [Decomposition.from_dict(d, f"{path}: decompositions[{i}]") for i, d in enumerate(data["decompositions"])]


def test_a_decomposition_reads_back_and_a_damaged_file_is_one_line(tmp_path):
    d = _cell(_timings())
    path = write_decompositions([d, _cell(_timings(), batch=256)], tmp_path)
    back = _read(path)
    assert [b.binds for b in back] == [d.binds, _cell(_timings(), batch=256).binds]
    assert back[0].timings == d.timings and back[0].fit == d.fit
    data = json.loads(path.read_text())
    for field, value, said in [
        ("batch_size", 63, "not among the timed batches"),
        ("compute_flops_per_s", "fast", "FLOP/s in"),
        ("op_cost_s", -1.0, r"a duration in \(0"),
        ("bandwidths", {"DRAM": 1e30}, "bytes/s in"),
        ("timings", [{"batch": 64, "step_s": [0.001]}], "two or more distinct batch sizes"),
    ]:
        bad = json.loads(json.dumps(data))
        bad["decompositions"][0][field] = value
        path.write_text(json.dumps(bad))
        with pytest.raises(CheckpointError, match=said) as e:
            _read(path)
        assert len(str(e.value).splitlines()) == 1 and "decompositions[0]" in str(e.value)


def test_a_real_step_is_decomposed_and_drawn(tmp_path):
    from mnistlab.report.plots import plot_decomposition

    d = measure_decomposition(
        "mlp",
        DataShape((1, 28, 28), 10),
        batch_size=16,
        settings=DecomposeSettings((1, 4), repeats=2, chunk_s=0.002),
        threads=1,
        ceiling_s=0.005,
        log=lambda m: None,
    )
    assert sorted(d.timings) == [1, 4, 16] and all(len(t) == 2 for t in d.timings.values())
    assert d.threads == 1 and "1 thread" in d.machine and d.counted[1][2] == d.counted[16][2]  # same ops at any batch
    assert d.flops_per_sample > 0 and d.footprint_bytes > 4 * 100_000  # weights, grads and momentum at least
    assert d.binds in (FIXED, ARITHMETIC, MEMORY) or d.binds.startswith("between")
    assert Decomposition.from_dict(json.loads(json.dumps(d.to_dict()))).binds == d.binds
    out = plot_decomposition([d], tmp_path / "decomposition.png")
    assert out.stat().st_size > 1000
    with pytest.raises(ConfigError, match="2 repeats"):
        measure_decomposition("mlp", DataShape((1, 28, 28), 10), settings=DecomposeSettings(repeats=1))


def test_a_line_that_misses_its_timings_separates_nothing():
    """A machine so busy that a step's time hardly follows its batch (the MLP on 2 threads beside other sessions'
    test suites: 6.3, 1.4, 2.2 and 1.9 ms at batches 1, 8, 64 and 256): the fit's median residual is far above
    FIT_TOLERANCE, and the label is 'between', never a single bound read off a line that does not hold."""
    from mnistlab.measure.decomposition import FIT_TOLERANCE

    timings = {
        1: (6.3e-3, 1.1e-3, 15.2e-3),
        8: (1.35e-3, 1.35e-3, 5.1e-3),
        64: (2.2e-3, 1.07e-3, 4.0e-3),
        256: (1.9e-3, 1.7e-3, 2.5e-3),
    }
    d = _cell(timings)
    assert d.fit.residual_median > FIT_TOLERANCE and d.binds == "between fixed per-step cost and arithmetic"
    assert "the parts cannot be told apart" in d.brief() and "cannot be told apart" in d.words()
    if d.fit.per_sample_s <= 0:
        assert "no per-sample part can be told from zero" in d.brief()
    # the same step timed on a quiet machine: a line, and a single label
    assert _cell(_timings(fixed=0.35e-3, per=3.6e-6)).binds == FIXED
