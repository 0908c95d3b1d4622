"""Speed levers: mixed precision, channels-last, torch.compile and CUDA graphs, in one place.

`Levers` says which are on; `Levers.check(device)` turns a lever that a device lacks into one
ConfigError line; `make_step` builds the training step (forward, loss, backward, optimizer step)
that train_epoch, bench, levers bench and speedrun all run, so that every caller times the same
thing (scaling builds its own: it times the step under DistributedDataParallel and under no_sync()).
`warm_up` is the one warm-up, timed apart, before any of them times anything.
The step does no I/O: it returns the loss tensor, left on the device.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.core.defaults import COMPILE_MODES, PRECISIONS
from mnistlab.core.errors import ConfigError, first_line
from mnistlab.core.timing import Timer

_AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
GRAPH_WARMUP_STEPS = 3  # eager steps on a side stream before capture (allocator and cuBLAS settle), then undone


@dataclass(frozen=True)
class Levers:
    precision: str = "32"
    channels_last: bool = False
    compile: str = "off"
    cuda_graphs: bool = False

    @classmethod
    def of(cls, cfg: Any) -> Levers:
        """The levers of a TrainConfig (or anything with these four attributes)."""
        return cls(cfg.precision, cfg.channels_last, cfg.compile, cfg.cuda_graphs)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return _AUTOCAST_DTYPES.get(self.precision)

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the matmuls and convs run in: what utilisation is measured against."""
        return self.autocast_dtype or torch.float32

    def describe(self) -> str:
        parts = ["fp32" if self.precision == "32" else self.precision]
        if self.channels_last:
            parts.append("channels-last")
        if self.compile != "off":
            parts.append(f"compile={self.compile}")
        if self.cuda_graphs:
            parts.append("cuda-graphs")
        return ("eager " if self.compile == "off" and not self.cuda_graphs else "") + " + ".join(parts)

    def check(self, device: torch.device) -> None:
        """One ConfigError line for a lever (or a combination) that does not exist on `device`."""
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}")
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"unknown compile mode {self.compile!r}; choose one of: {', '.join(COMPILE_MODES)}")
        kind = device.type
        if self.precision == "16-mixed" and kind != "cuda":
            raise ConfigError(
                f"--precision 16-mixed needs a CUDA GPU (float16 autocast with a GradScaler); "
                f"on {kind} use --precision bf16-mixed or 32"
            )
        if self.precision == "bf16-mixed":
            if kind == "mps":
                raise ConfigError("--precision bf16-mixed is not supported on mps here; use --precision 32")
            if kind == "cuda" and not torch.cuda.is_bf16_supported():
                raise ConfigError(
                    f"--precision bf16-mixed: {torch.cuda.get_device_name(device)} has no bfloat16 "
                    f"support; use --precision 16-mixed"
                )
        if self.cuda_graphs:
            if kind != "cuda":
                raise ConfigError(f"--cuda-graphs needs a CUDA GPU; there are no CUDA graphs on {kind}")
            if self.compile != "off":
                raise ConfigError(
                    "--cuda-graphs and --compile cannot be combined (compile's reduce-overhead mode "
                    "is its own CUDA graphs); choose one"
                )
            if self.precision == "16-mixed":
                raise ConfigError(
                    "--cuda-graphs and --precision 16-mixed cannot be combined: the GradScaler checks "
                    "for overflow on the host every step; use bf16-mixed"
                )
        if self.compile == "reduce-overhead" and kind != "cuda":
            raise ConfigError(
                f"--compile reduce-overhead means CUDA graphs, which {kind} does not have; "
                f"use --compile default or max-autotune"
            )
        if self.compile != "off":
            check_compiler(device)


def check_compiler(device: torch.device) -> None:
    """Fail early, in one line, where torch.compile cannot work (no compiler, no Triton)."""
    try:
        import torch._dynamo  # noqa: F401
        from torch._inductor import config as inductor_config
    except Exception as e:  # a broken or stripped install
        raise ConfigError(
            f"--compile: torch.compile is not usable in this torch install ({first_line(e)}); use --compile off"
        ) from None
    if not torch._dynamo.is_dynamo_supported():
        raise ConfigError("--compile: torch.compile does not support this Python version; use --compile off")
    if device.type == "cpu":
        cxx = inductor_config.cpp.cxx[-1] if isinstance(inductor_config.cpp.cxx, tuple) else inductor_config.cpp.cxx
        if not shutil.which(str(cxx or "g++")):
            raise ConfigError(
                f"--compile on the CPU needs a C++ compiler ({cxx or 'g++'} not found); "
                f"install one or use --compile off"
            )
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            raise ConfigError("--compile on CUDA needs Triton, which is not installed; use --compile off") from None


# glibc's mallopt parameters (malloc.h) and the values keep_freed_memory sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 64 << 20  # blocks up to 64 MiB come from the heap (a batch-10,000 activation of speednet: 32 MiB)
TRIM_THRESHOLD = 512 << 20  # free memory at the heap's top is kept up to 512 MiB


def keep_freed_memory() -> str | None:
    """Keep freed memory in the process, for the next step's tensors of the same sizes (glibc only).

    By default glibc serves a block of 128 KiB and up with its own mmap and returns it to the kernel
    when it is freed (its threshold then rises, but the heap's top is trimmed again past twice that),
    so every step of a small net faults in fresh pages for its larger activations and their gradients:
    320-640 minor page faults per speedrun step, and 1.11-1.14x its time with 1 thread (issue 32;
    benchmarks/speedrun_allocator.py, docs/speedrun.md). Raising both thresholds keeps the blocks for reuse,
    as CUDA's caching allocator does on a GPU. Process-wide and idempotent; returns None, or why nothing was
    set (not glibc)."""
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return f"not glibc ({platform.system()} {platform.libc_ver()[0] or 'unknown libc'})"
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    except (OSError, AttributeError) as e:
        return f"mallopt unavailable ({first_line(e)})"
    return None if ok else "mallopt refused the thresholds"


def to_memory_format(model: nn.Module, levers: Levers) -> nn.Module:
    """Channels-last weights (in place); a no-op for layers without 4-d weights."""
    if levers.channels_last:
        # torch's stubs for Module.to omit the memory_format keyword it documents and accepts
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def autocast(levers: Levers, device: torch.device, *, cache: bool = True) -> contextlib.AbstractContextManager:
    """torch.autocast for a mixed precision, else nothing. CUDA graphs need the cast cache off."""
    if levers.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=levers.autocast_dtype, cache_enabled=cache)


def make_grad_scaler(levers: Levers, device: torch.device) -> torch.amp.GradScaler | None:
    """float16's narrow range needs loss scaling; bfloat16 has float32's range and does not."""
    return torch.amp.GradScaler(device.type) if levers.precision == "16-mixed" else None


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TrainStep:
    """One optimizer step on a batch: `step(x, y) -> loss` (a device tensor, detached).

    `static_inputs` is a pair of buffers the loader may fill in place (CUDA graphs), or None.
    `state_dict()` holds what must survive a resume besides model and optimizer (the GradScaler).
    """

    static_inputs: tuple[torch.Tensor, torch.Tensor] | None = None

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        levers: Levers,
        device: torch.device,
        loss_fn: LossFn = F.cross_entropy,
    ) -> None:
        levers.check(device)
        self.model, self.optimizer, self.levers, self.device, self.loss_fn = model, optimizer, levers, device, loss_fn
        # compile a separate callable: the module itself (its state_dict keys, eval) stays the eager one
        self.forward: Callable[[torch.Tensor], torch.Tensor] = (
            model
            if levers.compile == "off"
            else torch.compile(model, mode=None if levers.compile == "default" else levers.compile)
        )
        self.scaler = make_grad_scaler(levers, device)
        self._compiled_once = levers.compile == "off"

    def _prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.levers.channels_last and x.dim() == 4 else x

    def eager(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.levers, self.device):
            loss = self.loss_fn(self.forward(self._prepare_input(x)), y)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return loss.detach()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self._compiled_once:
            return self.eager(x, y)
        import torch._dynamo.exc
        import torch._inductor.exc

        try:  # the compiler runs on the first call: a missing or broken toolchain fails here
            loss = self.eager(x, y)
        except (torch._dynamo.exc.TorchDynamoException, torch._inductor.exc.InductorError) as e:
            raise ConfigError(
                f"--compile {self.levers.compile}: torch.compile failed on this machine "
                f"({first_line(e)}); use --compile off"
            ) from None
        self._compiled_once = True
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"grad_scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])


class GraphedStep(TrainStep):
    """The whole step captured once in a CUDA graph and replayed (torch.cuda.graph).

    The loader writes each full batch straight into `static_inputs`; a short last batch (another
    shape) runs eagerly on the same parameters, gradients and optimizer state. The warm-up steps
    that capture needs are undone, so that training sees exactly the steps it asked for.
    """

    static_inputs: tuple[torch.Tensor, torch.Tensor]  # always there: made in __init__

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        levers: Levers,
        device: torch.device,
        batch_size: int,
        sample_shape: tuple[int, ...],
        loss_fn: LossFn = F.cross_entropy,
        input_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(model, optimizer, levers, device, loss_fn)
        self.batch_size = batch_size
        self.static_inputs = (
            torch.zeros((batch_size, *sample_shape), device=device, dtype=input_dtype),
            torch.zeros(batch_size, dtype=torch.long, device=device),
        )
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_loss: torch.Tensor | None = None

    def _captured_body(self) -> torch.Tensor:
        x, y = self.static_inputs
        with autocast(self.levers, self.device, cache=False):
            loss = self.loss_fn(self.model(self._prepare_input(x)), y)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def capture(self) -> None:
        with restored(self.model, self.optimizer):
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(GRAPH_WARMUP_STEPS):
                    self.optimizer.zero_grad(set_to_none=True)
                    self._captured_body()
            torch.cuda.current_stream(self.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # grads are allocated inside the graph's pool
        with torch.cuda.graph(self.graph):
            self.static_loss = self._captured_body()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.batch_size:  # the short last batch: eager, accumulating into the graph's grads
            self.optimizer.zero_grad(set_to_none=False)
            with autocast(self.levers, self.device):
                loss = self.loss_fn(self.model(self._prepare_input(x)), y)
            loss.backward()
            self.optimizer.step()
            return loss.detach()
        sx, sy = self.static_inputs
        if x.data_ptr() != sx.data_ptr():
            sx.copy_(x)
        if y.data_ptr() != sy.data_ptr():
            sy.copy_(y)
        if self.graph is None:
            self.capture()
        assert self.graph is not None and self.static_loss is not None  # capture() set both, or raised
        self.graph.replay()
        return self.static_loss.clone()  # the next replay overwrites the static one


def make_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    levers: Levers,
    device: torch.device,
    *,
    batch_size: int,
    sample_shape: tuple[int, ...],
    loss_fn: LossFn = F.cross_entropy,
    input_dtype: torch.dtype = torch.float32,
) -> TrainStep:
    """The step for these levers; the model must already be on `device` (see `prepare_model`).
    `input_dtype`: the loader's (a CUDA graph's input buffer is filled in place, so it must match)."""
    if levers.cuda_graphs:
        return GraphedStep(model, optimizer, levers, device, batch_size, sample_shape, loss_fn, input_dtype)
    return TrainStep(model, optimizer, levers, device, loss_fn)


def prepare_model(
    model: nn.Module, levers: Levers, device: torch.device, *, sample_shape: tuple[int, ...], name: str = "the model"
) -> nn.Module:
    """Check the levers against the device, move the model there in its memory format (`name`: the
    model, for an error; `sample_shape`: one input sample's, for the channels-last check)."""
    levers.check(device)
    model = to_memory_format(model.to(device), levers)
    if levers.channels_last:
        _check_channels_last(model, device, sample_shape, name)
    return model


def _check_channels_last(model: nn.Module, device: torch.device, sample_shape: tuple[int, ...], name: str) -> None:
    """A model that flattens with .view() fails on the channels-last activations this lever gives
    it (they are not contiguous): one line before any work, not a failure in the first step."""
    was_training = model.training
    model.eval()  # no dropout draw, no batch-norm statistics changed by this check
    try:
        with torch.no_grad():
            model(torch.zeros(2, *sample_shape, device=device).contiguous(memory_format=torch.channels_last))
    except Exception as e:  # noqa: BLE001 - the model's code: any failure is one line
        hint = (
            "flatten with x.flatten(1) or x.reshape(x.size(0), -1), or drop --channels-last"
            if "view size is not compatible" in str(e)
            else "drop --channels-last"
        )
        raise ConfigError(
            f"model {name}: its forward pass on channels-last input failed ({first_line(e)}); {hint}"
        ) from None
    finally:
        model.train(was_training)


@contextlib.contextmanager
def restored(model: nn.Module, optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Undo whatever the body does to weights, buffers and optimizer state, writing back in place
    (the same tensors: a captured graph or compiled code keeps pointing at them). Optimizer state
    that the body created starts from zero, which is what a fresh SGD/Adam state means."""
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    before = {
        id(p): {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()} for p, s in optimizer.state.items()
    }
    lrs = [g["lr"].clone() if torch.is_tensor(g["lr"]) else g["lr"] for g in optimizer.param_groups]
    yield
    with torch.no_grad():
        for k, v in model.state_dict().items():
            v.copy_(weights[k])
        for p, s in optimizer.state.items():
            saved = before.get(id(p), {})
            for k, v in s.items():
                if torch.is_tensor(v):
                    v.copy_(saved[k]) if k in saved else v.zero_()
                elif k in saved:
                    s[k] = saved[k]
        for g, lr in zip(optimizer.param_groups, lrs, strict=True):
            if torch.is_tensor(g["lr"]):
                g["lr"].copy_(lr)
            else:
                g["lr"] = lr


# Devices whose first step pays one-time costs (cuBLAS/cuDNN handles, lazy kernel loading, first
# allocations) that would otherwise land in epoch 1's time; compile and CUDA graphs pay them anywhere.
WARMUP_DEVICES = ("cuda", "mps")


@contextlib.contextmanager
def _rng_kept(device: torch.device) -> Iterator[None]:
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    mps = torch.mps.get_rng_state() if device.type == "mps" else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)
        elif mps is not None:
            torch.mps.set_rng_state(mps)


def warm_up(
    step: TrainStep, x: torch.Tensor, y: torch.Tensor, steps: int = 2, evaluation: torch.Tensor | None = None
) -> float:
    """The one warm-up (trainer, bench, levers bench, speedrun): run `steps` steps (compiling,
    capturing, autotuning on the way) and, given `evaluation`, one eval-mode forward at its shape;
    then undo their effect on weights, buffers, gradients, optimizer state, the train/eval mode and
    the RNG states, so that what is timed next is the steady state of an untouched run. Returns its seconds,
    synchronised at both ends: the first-call, compile and capture costs, reported apart."""
    model, was_training = step.model, step.model.training
    grads = [(p, p.grad) for p in model.parameters()]
    with Timer(step.device) as timer, _rng_kept(step.device), restored(model, step.optimizer):
        model.train()
        for _ in range(steps):
            step(x, y)
        if evaluation is not None:
            model.eval()
            with torch.no_grad(), autocast(step.levers, step.device):
                model(evaluation)
    seconds = timer.seconds
    model.train(was_training)
    if step.static_inputs is None:  # a captured graph keeps its gradients in its own memory pool
        for p, g in grads:
            p.grad = g
    if step.scaler is not None:  # its scale may have moved: start again from torch's default
        step.scaler = make_grad_scaler(step.levers, step.device)
    return seconds
