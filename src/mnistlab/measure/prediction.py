"""A GPU's step time predicted from a step counted here: a lower bound, what binds it, and the speed-up.

A training step on a GPU cannot take less than the largest of three floors:
- launch: its operations, each dispatched and launched at a cost of its own (measure/gpus.py's assumed
  DISPATCH_COST_S), however little work each does;
- bandwidth: the bytes its operations read and write, at the memory's datasheet bandwidth;
- compute: its FLOPs, at the datasheet peak of the dtype it computes in.
The step's FLOPs, bytes and operations are counted once, on the CPU (measure/ceilings.StepCost): an eager
step dispatches the same operations on every device. A lower bound on the GPU's time makes the speed-up
over the step measured here an upper bound: "at most". Where the bench also ran on a GPU, the measured
step beside its bound checks the model: the ratio is 1 or more if the bound holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from mnistlab.core.timing import Spread
from mnistlab.measure.bench import BenchResult, Cell
from mnistlab.measure.ceilings import StepCost
from mnistlab.measure.gpus import DISPATCH_COST_S, Gpu, match

FLOORS = ("launch", "bandwidth", "compute")


@dataclass(frozen=True)
class Prediction:
    """The floors of one step on one GPU of the table."""

    gpu: Gpu
    dtype: str
    cost: StepCost
    launch_s: float
    bandwidth_s: float
    compute_s: float
    dispatch_cost_s: float = DISPATCH_COST_S  # the assumption the launch floor used
    conv_flops: int | None = None  # of cost.flops, those in convolutions (None: not split)

    @classmethod
    def of(
        cls,
        cost: StepCost,
        gpu: Gpu,
        dtype: str = "float32",
        dispatch_cost_s: float = DISPATCH_COST_S,
        conv_flops: int | None = None,
    ) -> Prediction:
        """The step's floors. Its FLOPs at the rate PyTorch uses by default: where `conv_flops` says which are
        convolutions, those at Gpu.peak (TF32 may serve a float32 convolution) and the rest (matmuls) at
        Gpu.matmul_peak (float32 matmuls at the FP32 rate); where it does not, all at Gpu.peak, which only
        lowers a lower bound. Not given, `conv_flops` is the count's own (StepCost.conv_flops)."""
        conv_flops = cost.conv_flops if conv_flops is None else conv_flops
        if conv_flops is None:
            compute = cost.flops / gpu.peak(dtype)
        else:
            conv = min(max(conv_flops, 0), cost.flops)
            compute = conv / gpu.peak(dtype) + (cost.flops - conv) / gpu.matmul_peak(dtype)
        return cls(
            gpu,
            dtype,
            cost,
            cost.ops * dispatch_cost_s,
            cost.bytes / gpu.bandwidth_bytes_per_s,
            compute,
            dispatch_cost_s,
            conv_flops,
        )

    def floor(self, name: str) -> float:
        return {"launch": self.launch_s, "bandwidth": self.bandwidth_s, "compute": self.compute_s}[name]

    @property
    def binds(self) -> str:
        """'launch', 'bandwidth' or 'compute': the largest floor."""
        return max(FLOORS, key=self.floor)

    @property
    def bound_s(self) -> float:
        return self.floor(self.binds)

    @property
    def attainable_flops_per_s(self) -> float:
        """The most FLOP/s the step could reach on the GPU: its FLOPs over its bound."""
        return self.cost.flops / self.bound_s if self.bound_s > 0 else 0.0

    def speedup(self, measured: Spread) -> tuple[float, float, float]:
        """At most how much faster than `measured` (median, and over its min-max) the GPU could run the step."""
        return measured.median / self.bound_s, measured.min / self.bound_s, measured.max / self.bound_s

    def rate_words(self) -> str:
        """The rate(s) the compute floor used, in words."""
        peak, mm = self.gpu.peak(self.dtype), self.gpu.matmul_peak(self.dtype)
        if self.conv_flops is None or peak == mm:
            return f"{peak / 1e12:,.1f} TFLOP/s ({self.dtype})"
        if not self.conv_flops:  # no convolution: every FLOP at the matmul rate
            return f"{mm / 1e12:,.1f} TFLOP/s (float32 matmuls at the FP32 rate)"
        return (
            f"{peak / 1e12:,.1f} TFLOP/s for the {self.conv_flops / 1e6:,.1f} MFLOP of convolutions (TF32 allowed) "
            f"and {mm / 1e12:,.1f} TFLOP/s for the rest (float32 matmuls at the FP32 rate)"
        )

    def words(self) -> str:
        return (
            f"at least {self.bound_s * 1e3:.3f} ms per step, {self.binds}-bound: {self.cost.ops} operations at "
            f"{self.dispatch_cost_s * 1e6:g} us each take {self.launch_s * 1e6:,.2f} us (launch floor); "
            f"{self.cost.bytes / 1e6:,.1f} MB read and written at {self.gpu.bandwidth_bytes_per_s / 1e12:.2f} TB/s "
            f"take {self.bandwidth_s * 1e6:,.2f} us (bandwidth floor); {self.cost.flops / 1e6:,.1f} MFLOP at "
            f"{self.rate_words()} take {self.compute_s * 1e6:,.2f} us (compute floor)"
        )


def cell_cost(cell: Cell) -> StepCost | None:
    """The step's counted cost (its convolution FLOPs apart where the bench recorded them: float32 matmuls are
    then counted at the FP32 rate), or None for a bench.json from before operations were counted."""
    if not cell.train_step_ops:
        return None
    return StepCost(cell.train_step_flops, cell.train_step_bytes, cell.train_step_ops, cell.train_step_conv_flops)


@dataclass(frozen=True)
class Expected:
    """One model: its step measured here, predicted on the chosen GPU, and where a GPU cell exists, checked."""

    model: str
    here: Cell  # measured on the CPU
    prediction: Prediction  # on the chosen GPU
    there: Cell | None = None  # measured on a GPU by the same bench
    check: Prediction | None = None  # the prediction for the GPU `there` ran on (its table row, else the chosen one)

    def speedup_words(self) -> str:
        mid, low, high = self.prediction.speedup(self.here.step)
        return (
            f"measured here on the CPU: {self.here.step.median * 1e3:.3f} ms per step "
            f"({self.here.step.min * 1e3:.3f}\u2013{self.here.step.max * 1e3:.3f}), so the {self.prediction.gpu.name} "
            f"could be at most {mid:,.1f}x faster ({low:,.1f}\u2013{high:,.1f}x over the measured range)"
        )

    @property
    def ratio(self) -> float | None:
        """The GPU step measured over its predicted lower bound: 1 or more when the bound holds."""
        return self.there.step.median / self.check.bound_s if self.there and self.check else None


def expectations(bench: BenchResult, gpu: Gpu) -> list[Expected]:
    """Each model with a counted CPU step (the resident pipeline's, else the notebook's), predicted on `gpu`."""
    measured_gpu = match(bench.devices.get("cuda", ""))
    out = []
    for model in dict.fromkeys(c.model for c in bench.cells):
        here = bench.cell("resident", "cpu", model) or bench.cell("reference", "cpu", model)
        cost = cell_cost(here) if here else None
        if here is None or cost is None:
            continue
        there = bench.cell(here.pipeline, "cuda", model)
        check = Prediction.of(cost, measured_gpu or gpu) if there else None
        out.append(Expected(model, here, Prediction.of(cost, gpu), there, check))
    return out
