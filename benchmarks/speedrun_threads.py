"""Issue 32: data parallelism inside the process instead of intra-op threads, for speednet's step.

The recipe's step (batch 256, bf16-mixed + channels-last, its fused Adam, freed memory kept) as the speedrun
runs it, with torch's 2 intra-op threads, against the same step split in two halves of 128 images computed at
once by two Python threads with 1 intra-op thread each (torch releases the GIL inside its ops, and CPU
autograd runs a backward pass on the thread that calls it):

- `2 intra-op threads`: the recipe's step as it is (torch.set_num_threads(2));
- `1 thread`: the same step with torch.set_num_threads(1), for reference;
- `2 replicas`: a second copy of the model, whose half the persistent worker thread computes while the calling
  thread computes the other; then the copy's gradients are added to the model's (torch._foreach_add_, halved),
  one fused Adam step, and the parameters copied to the replica (torch._foreach_copy_);
- `shared parameters`: the same, but the replica holds the model's own parameters (only its batch-norm
  buffers are its own), so both backward passes accumulate into the same .grad (autograd's AccumulateGrad
  takes a lock per parameter): no sum and no copy; each half's loss is weighted by its share of the batch.

Batch norm normalises over each half (as ghost batch norm does): the arithmetic is not the recipe's.

The variants are timed in interleaved repeats (the order rotated each repeat), wall time of `--steps` steps
after one untimed step; printed: ms per step, median (range), and the ratio to the recipe's step, medians
and repeat by repeat (> 1: faster than the recipe).

    python benchmarks/speedrun_threads.py [--repeats 15] [--steps 20] [--variants 0,2] [--breakdown]
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from speedrun_ladder import cpu_words  # noqa: E402

from mnistlab.data.datasets import data_root, get_dataset  # noqa: E402
from mnistlab.data.loader import read_split  # noqa: E402
from mnistlab.training.levers import Levers, autocast, keep_freed_memory, make_step, prepare_model  # noqa: E402
from mnistlab.training.models import create_model  # noqa: E402
from mnistlab.training.recipe import Recipe, default_levers, load_to_device, recipe_optimizer  # noqa: E402


class Worker:
    """One persistent thread (1 intra-op thread) that runs the jobs it is handed, one at a time."""

    def __init__(self) -> None:
        self._go, self._done = threading.Semaphore(0), threading.Semaphore(0)
        self._job: Callable[[], object] | None = None
        self._out: object = None
        self._error: BaseException | None = None
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        torch.set_num_threads(1)  # this thread's OpenMP team: itself
        while True:
            self._go.acquire()
            try:
                self._out = self._job() if self._job else None
            except BaseException as e:  # noqa: BLE001 - handed back to the caller by wait()
                self._error = e
            self._done.release()

    def submit(self, job: Callable[[], object]) -> None:
        self._job, self._error = job, None
        self._go.release()

    def wait(self) -> object:
        self._done.acquire()
        if self._error is not None:
            raise self._error
        return self._out


class HalvesStep:
    """The step on two halves of the batch at once: the calling thread's on `model`, the worker's on `replica`."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        levers: Levers,
        device: torch.device,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        shared: bool,
    ) -> None:
        self.model, self.optimizer, self.levers, self.device, self.loss_fn = model, optimizer, levers, device, loss_fn
        self.shared = shared
        self.replica = copy.deepcopy(model)
        if shared:  # the model's own Parameter objects; the replica keeps its own buffers
            for (_, mine), (_, theirs) in zip(self.replica.named_modules(), model.named_modules(), strict=True):
                for name in list(mine._parameters):
                    mine._parameters[name] = theirs._parameters[name]
        self.params = [p for p in model.parameters()]
        self.rparams = [p for p in self.replica.parameters()]
        self.worker = Worker()

    def _half(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, weight: float) -> torch.Tensor:
        with autocast(self.levers, self.device):
            x = x.contiguous(memory_format=torch.channels_last) if self.levers.channels_last else x
            loss = self.loss_fn(model(x), y)
        (loss * weight if self.shared else loss).backward()
        return loss.detach()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n, k = x.shape[0], x.shape[0] // 2
        wa, wb = k / n, (n - k) / n
        self.optimizer.zero_grad(set_to_none=True)
        if not self.shared:
            for p in self.rparams:
                p.grad = None
        self.worker.submit(functools.partial(self._half, self.replica, x[k:], y[k:], wb))
        la = self._half(self.model, x[:k], y[:k], wa)
        lb = self.worker.wait()
        assert isinstance(lb, torch.Tensor)
        if not self.shared:
            grads = [p.grad for p in self.params]
            torch._foreach_mul_(grads, wa)
            torch._foreach_add_(grads, [p.grad for p in self.rparams], alpha=wb)
        self.optimizer.step()
        if not self.shared:
            with torch.no_grad():
                torch._foreach_copy_(self.rparams, self.params)
        return la * wa + lb * wb


def build(kind: str, recipe: Recipe, levers: Levers, cpu: torch.device, sample: tuple[int, ...]):
    torch.manual_seed(0)
    model = prepare_model(create_model(recipe.model), levers, cpu, sample_shape=sample)
    opt = recipe_optimizer(model, recipe, levers, cpu)
    loss_fn = functools.partial(F.cross_entropy, label_smoothing=recipe.label_smoothing)
    if kind in ("2 intra-op threads", "1 thread"):
        return make_step(
            model,
            opt,
            levers,
            cpu,
            batch_size=recipe.batch_size,
            sample_shape=sample,
            loss_fn=loss_fn,
            input_dtype=torch.bfloat16,
        )
    return HalvesStep(model, opt, levers, cpu, loss_fn, shared=kind.startswith("shared"))


VARIANTS = {  # name: intra-op threads of the calling thread
    "2 intra-op threads": 2,
    "1 thread": 1,
    "2 replicas, 2 threads": 1,
    "shared parameters, 2 threads": 1,
}


def breakdown(recipe: Recipe, levers: Levers, cpu: torch.device, x: torch.Tensor, y: torch.Tensor, args) -> None:
    """Where the data-parallel step's time goes: forward + backward (no optimizer) of the whole batch with 2 and
    1 intra-op threads, of one half on 1 thread, and of both halves at once on two threads; then the replicas'
    serial tail (gradient sum, Adam, copy). Interleaved like the steps; wall ms per step, median (range)."""
    torch.set_num_threads(1)
    st = build("2 replicas, 2 threads", recipe, levers, cpu, tuple(x.shape[1:]))
    assert isinstance(st, HalvesStep)
    k = x.shape[0] // 2

    def fb(model: nn.Module, xx: torch.Tensor, yy: torch.Tensor) -> None:
        st._half(model, xx, yy, 0.5)

    def both() -> None:
        st.worker.submit(functools.partial(fb, st.replica, x[k:], y[k:]))
        fb(st.model, x[:k], y[:k])
        st.worker.wait()

    def tail() -> None:
        grads = [p.grad for p in st.params]
        torch._foreach_mul_(grads, 0.5)
        torch._foreach_add_(grads, [p.grad for p in st.rparams], alpha=0.5)
        st.optimizer.step()
        with torch.no_grad():
            torch._foreach_copy_(st.rparams, st.params)

    parts: dict[str, tuple[int, Callable[[], None]]] = {
        f"fwd+bwd {x.shape[0]}, 2 intra-op threads": (2, functools.partial(fb, st.model, x, y)),
        f"fwd+bwd {x.shape[0]}, 1 thread": (1, functools.partial(fb, st.model, x, y)),
        f"fwd+bwd {k}, 1 thread": (1, functools.partial(fb, st.model, x[:k], y[:k])),
        f"fwd+bwd {k} x 2 at once, 2 threads": (1, both),
        "replicas' tail: sum, Adam, copy (1 thread)": (1, tail),
        "the recipe's Adam (2 intra-op threads)": (2, st.optimizer.step),
    }
    both()  # every gradient exists: the tail and Adam have something to step
    ms: dict[str, list[float]] = {n: [] for n in parts}
    for _ in range(args.repeats):
        for name, (threads, fn) in parts.items():
            torch.set_num_threads(threads)
            fn()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn()
            ms[name].append((time.perf_counter() - t0) / args.steps * 1e3)
    print("breakdown, wall ms per call, median (range):")
    for name, v in ms.items():
        print(f"  {name:<46} {spread(v):>20}")


def spread(v: list[float]) -> str:
    return f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--variants", default="", help="comma-separated numbers (0-based) of VARIANTS; default: all")
    p.add_argument("--breakdown", action="store_true", help="then time the data-parallel step's parts")
    args = p.parse_args(argv)
    known = list(VARIANTS)
    try:
        names = [known[int(i)] for i in args.variants.split(",")] if args.variants else known
    except (ValueError, IndexError):
        p.error(f"--variants: comma-separated numbers from 0 to {len(known) - 1} ({', '.join(known)})")
    if args.repeats < 1 or args.steps < 1:
        p.error("--repeats and --steps must be at least 1")
    cpu, recipe, spec = torch.device("cpu"), Recipe(), get_dataset("mnist")
    levers = default_levers(cpu)
    keep_freed_memory()
    print(f"machine: {cpu_words()}; torch {torch.__version__}, {os.cpu_count()} CPUs")
    print(f"load average at the start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}, {time.strftime('%F %T')}")
    train, test = read_split(spec, data_root(None), True), read_split(spec, data_root(None), False)
    tr, _, _ = load_to_device(train, test, spec, recipe.batch_size, cpu, dtype=torch.bfloat16)
    x, y = tr.x[: recipe.batch_size].clone(), tr.y[: recipe.batch_size].clone()
    sample = tuple(tr.x.shape[1:])
    steps = {}
    for name in names:
        torch.set_num_threads(VARIANTS[name])
        steps[name] = build(name, recipe, levers, cpu, sample)
        for _ in range(3):
            steps[name](x, y)
    ms: dict[str, list[float]] = {n: [] for n in names}
    faults: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            torch.set_num_threads(VARIANTS[name])
            steps[name](x, y)  # untimed: the thread count's first step
            f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
            for _ in range(args.steps):
                steps[name](x, y)
            ms[name].append((time.perf_counter() - t0) / args.steps * 1e3)
            faults[name].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / args.steps)
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}, {time.strftime('%F %T')}")
    ref = ms[names[0]]
    print(f"wall ms per step over {args.repeats} interleaved repeats of {args.steps} steps (batch {recipe.batch_size})")
    print(f"{'variant':<32} {'ms/step (range)':>20} {'vs ' + names[0]:>24} {'paired (range)':>18} {'faults/step':>11}")
    for name in names:
        paired = [a / b for a, b in zip(ref, ms[name], strict=True)]
        print(
            f"{name:<32} {spread(ms[name]):>20} {statistics.median(ref) / statistics.median(ms[name]):>23.2f}x "
            f"{spread(paired) + 'x':>18} {statistics.median(faults[name]):>11.0f}"
        )
    if args.breakdown:
        breakdown(recipe, levers, cpu, x, y, args)
        print(f"load average after the breakdown: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
