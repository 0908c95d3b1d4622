"""Made-up measurements for tests that check what is said of them, not how they are measured."""

from __future__ import annotations

from mnistlab.measure.decomposition import Decomposition

QUIET = {"start": {"load_avg_1m": 0.5, "cpu_count": 2}, "end": {"load_avg_1m": 0.5, "cpu_count": 2}}


def fake_decomposition(
    model: str,
    fixed_s: float,
    per_sample_s: float,
    *,
    flops_per_sample: int = 420_000,
    bytes_per_sample: int = 64_000,
    footprint: int = 900_000,
    batch: int = 64,
    device: str = "cpu",
    scatter: tuple[float, ...] = (1.0, 1.02, 0.98),
) -> Decomposition:
    """A step of `fixed_s + per_sample_s x batch` (times `scatter`, one repeat each) at batches 1-256 on 2 threads,
    counted at `flops_per_sample` and 100,000 + `bytes_per_sample` x batch bytes, against a 100 GFLOP/s ceiling and
    probes of 200 (L2, 2 MiB), 100 (L3, 16 MiB) and 10 (DRAM) GB/s."""
    timings = {b: tuple((fixed_s + per_sample_s * b) * f for f in scatter) for b in sorted({1, 8, 64, 256, batch})}
    counted = {
        1: (flops_per_sample, 100_000 + bytes_per_sample, 59),
        batch: (flops_per_sample * batch, 100_000 + bytes_per_sample * batch, 59),
    }
    return Decomposition(
        model,
        device,
        "a CPU (2 threads)",
        2,
        batch,
        timings,
        counted,
        footprint,
        100e9,
        2e-6,
        {"L2": 2**21, "L3": 2**24, "DRAM": 2**29},
        {"L2": 200e9, "L3": 100e9, "DRAM": 10e9},
        QUIET,
    )
