"""Model specs: a registry name, `package.module:factory`, or `path/to/file.py:Name`.

A spec is parsed without running anything (TrainConfig validates it that way); its code runs
only when a model is built, and only from the spec the user gave: checkpoints are loaded with
weights_only=True and never name code that gets imported.

A file spec is read once, as bytes: those bytes are hashed (SHA-256), executed, and copied into
the run directory (model_source.py, recorded in model.json). Later, `eval`, `--resume` and
`report` execute the run's copy, and only after its hash matches the record. The copy, not the
original, because it is exactly the code the checkpoints were trained with, it travels with the
run (the original may have moved, been edited or deleted), and its path does not depend on the
directory the command is run from. `--resume` also refuses when the original file still exists
but no longer matches the record: the user changed their model, and continuing the old weights
with the old code would silently not be the model they now have.

The hash guards against a copy changed by accident or by a half-finished write, not against
someone who can write the whole run directory (they can rewrite model.json too): a run of your
own model carries code, so evaluate or resume only runs you trust, as you would only run scripts
you trust. A run of a built-in model runs no code from its directory.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import sys
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.core.errors import CheckpointError, ConfigError, ResultFileError, first_line
from mnistlab.core.rundir import read_bytes, read_json
from mnistlab.core.schema import Check, check, one_of
from mnistlab.core.writer import FILES, Writer
from mnistlab.data.datasets import DataShape

MODEL_RECORD, MODEL_COPY = "model.json", "model_source.py"  # in the run directory, for file specs
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED_RE = re.compile(rf"{_IDENT}(\.{_IDENT})*")  # package.module, and the (dotted) name after the ':'
_SHA_RE = re.compile(r"[0-9a-f]{64}")
FORMS = "package.module:factory or path/to/file.py:Name"
CHECK_BATCH = 2  # the output-shape check's batch: 1 would hide a model that mixes up batch and features


@dataclass(frozen=True)
class ModelCode:
    """Where a model comes from. For a file spec, `source` holds the exact bytes that run."""

    spec: str  # as the user wrote it (what TrainConfig.model keeps)
    kind: str  # "builtin", "module" or "file"
    target: str  # the registry name, the module name, or the file's absolute path
    attr: str | None = None
    source: bytes | None = None
    origin: Path | None = None  # the file the bytes were read from (the run's copy, for a run)
    named: Path | None = None  # a file spec's path as written, made absolute, links not followed

    @property
    def sha256(self) -> str | None:
        return hashlib.sha256(self.source).hexdigest() if self.source is not None else None


def parse_spec(spec: Any, registry: list[str]) -> tuple[str, str, str | None]:
    """(kind, target, attr) of a spec, checked for form only: nothing is read or imported."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"model must be a name or a spec, got {spec!r}")
    if spec in registry:
        return "builtin", spec, None
    where, colon, attr = spec.rpartition(":")
    if not colon:
        raise ConfigError(f"unknown model {spec!r}; choose one of: {', '.join(registry)}, or give {FORMS}")
    if not _DOTTED_RE.fullmatch(attr):
        raise ConfigError(f"model spec {spec!r}: {attr!r} after the last ':' is not a Python name")
    if where.endswith(".py"):
        return "file", where, attr
    if not _DOTTED_RE.fullmatch(where):
        raise ConfigError(
            f"model spec {spec!r}: {where!r} is neither a module name (package.module) nor a .py file path"
        )
    owner = _not_users(where)
    if owner:
        raise ConfigError(f"model spec {spec!r}: {where} is part of {owner}; {_RULE}")
    return "module", where, attr


# The rule for a model spec (README, "Your own model"): its factory is a class or function defined in
# the user's code, never in the standard library or in mnistlab, so that a spec cannot call an
# arbitrary installed callable (signal:pause hangs, os:abort dumps core, mnistlab.cli:main reenters).
_RULE = "a model spec must name a class or function of your own code"


def _not_users(module: str | None) -> str | None:
    """Why `module` is not the user's code (None: it may be)."""
    top = (module or "").partition(".")[0]
    if not top:
        return "no module of yours"
    if top in sys.stdlib_module_names:
        return "the standard library"
    return "mnistlab" if top == "mnistlab" else None


def _check_defined_by_user(factory: Any, code: ModelCode) -> None:
    """The spec's factory, refused before it is called where it is defined outside the user's code
    (a file spec may import one, and a module spec re-export one)."""
    where = getattr(factory, "__module__", None)
    owner = _not_users(where)
    if owner:
        raise ConfigError(
            f"model spec {code.spec!r}: {code.attr} is defined in {where or 'no named module'}, "
            f"part of {owner}; {_RULE}"
        )


def label(spec: str) -> str:
    """A short name for run directories and plots: the registry name or the factory's name."""
    name = spec.rpartition(":")[2] if ":" in spec else spec
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name.rpartition(".")[2] or name) or "model"


def _read(path: Path, spec: str) -> bytes:
    if not path.exists():
        raise ConfigError(f"model spec {spec!r}: {path}: no such file")
    try:
        return read_bytes(path, "a .py file")  # a regular file of bounded size: never a FIFO that blocks
    except ResultFileError as e:
        raise ConfigError(f"model spec {spec!r}: {e}") from None


def resolve(spec: str, registry: list[str]) -> ModelCode:
    """The spec's code, read now (a file's bytes) but not yet run."""
    kind, target, attr = parse_spec(spec, registry)
    if kind == "file":
        named = Path(target).expanduser().absolute()
        path = named.resolve()
        return ModelCode(spec, kind, str(path), attr, _read(path, spec), path, named)
    return ModelCode(spec, kind, target, attr)


def _exec_file(code: ModelCode) -> types.ModuleType:
    """Run a file's bytes as a fresh module; the same bytes (same hash) run once per process."""
    digest = code.sha256
    assert code.source is not None and code.origin is not None and digest is not None
    name = f"mnistlab_user_models.{label(Path(code.target).stem)}_{digest[:16]}"
    if name in sys.modules:
        return sys.modules[name]
    module = types.ModuleType(name)
    module.__file__ = str(code.origin)
    sys.modules[name] = module  # dataclasses and pickling look a class's module up here
    try:
        exec(compile(code.source, str(code.origin), "exec"), module.__dict__)
    except KeyboardInterrupt:
        del sys.modules[name]
        raise
    except BaseException as e:  # SyntaxError, ImportError, anything the file raises, even SystemExit
        del sys.modules[name]
        raise ConfigError(f"model spec {code.spec!r}: cannot import {code.origin} ({first_line(e)})") from None
    return module


def _import_module(code: ModelCode) -> types.ModuleType:
    try:
        return importlib.import_module(code.target)
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        hint = (
            f"; is it installed or on PYTHONPATH? (for a file, give path/to/file.py:{code.attr})"
            if isinstance(e, ModuleNotFoundError) and e.name == code.target.split(".")[0]
            else ""
        )
        raise ConfigError(f"model spec {code.spec!r}: cannot import {code.target!r} ({first_line(e)}){hint}") from None


def factory_of(code: ModelCode, registry: dict[str, Callable[..., Any]]) -> Callable[..., Any]:
    """The class or function the spec names (importing the module or running the file)."""
    if code.kind == "builtin":
        return registry[code.target]
    import torch

    with torch.random.fork_rng(devices=[]):  # draws at import time must not shift the seeded weights
        module = _exec_file(code) if code.kind == "file" else _import_module(code)
    obj: Any = module
    for part in (code.attr or "").split("."):
        if not hasattr(obj, part):
            from torch import nn

            found = sorted(
                n
                for n, v in vars(module).items()
                if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == module.__name__
            )
            where = code.origin if code.kind == "file" else code.target
            raise ConfigError(
                f"model spec {code.spec!r}: {where} has no name {code.attr!r}"
                + (f" (its nn.Module classes: {', '.join(found)})" if found else "")
            )
        obj = getattr(obj, part)
    return obj


SHAPE_ARGUMENTS = ("num_classes", "sample_shape")  # what a factory may take: the data's shape (DataShape)


def call_factory(factory: Any, code: ModelCode, shape: DataShape) -> Any:
    """factory(), with num_classes= and sample_shape= (the data's) where it takes them; nothing else
    may be required."""
    from torch import nn

    if isinstance(factory, nn.Module):
        raise ConfigError(
            f"model spec {code.spec!r}: {code.attr} is an nn.Module instance, not a factory; "
            f"name its class, or a function that builds it"
        )
    if not callable(factory):
        raise ConfigError(
            f"model spec {code.spec!r}: {code.attr} is not a class or function (it is of type "
            f"{type(factory).__name__}), so it cannot build an nn.Module"
        )
    if code.kind != "builtin":
        _check_defined_by_user(factory, code)
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # some builtins have no signature: just call them
        params = {}
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    values = {"num_classes": shape.classes, "sample_shape": shape.sample}
    kwargs = {k: v for k, v in values.items() if k in params and params[k].kind in named}
    required = [
        p.name
        for p in params.values()
        if p.default is p.empty
        and p.name not in SHAPE_ARGUMENTS
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if required:
        raise ConfigError(
            f"model spec {code.spec!r}: {code.attr} requires the arguments {', '.join(required)}; "
            f"a model factory must take none, or only {' and '.join(SHAPE_ARGUMENTS)}"
        )
    try:
        return factory(**kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        call = f"{code.attr or code.target}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
        raise ConfigError(f"model spec {code.spec!r}: {call} failed ({first_line(e)})") from None


def check_model(model: Any, code: ModelCode, data: DataShape) -> None:
    """An nn.Module with parameters whose output on a (B, *data.sample) batch is (B, data.classes)."""
    import torch
    from torch import nn

    what = code.attr or code.target
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model spec {code.spec!r}: {what} returned {type(model).__name__}, not an nn.Module")
    if not any(True for _ in model.parameters()):
        raise ConfigError(f"model spec {code.spec!r}: the model has no parameters (nothing to train)")
    shape = (CHECK_BATCH, *data.sample)
    was_training = model.training
    model.eval()  # no dropout draw, no batch-norm statistics changed by this check
    try:
        with torch.no_grad():
            out = model(torch.zeros(shape))
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        raise ConfigError(
            f"model spec {code.spec!r}: the forward pass on a {shape} batch failed ({first_line(e)})"
        ) from None
    finally:
        model.train(was_training)
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if got != (CHECK_BATCH, data.classes):
        raise ConfigError(
            f"model spec {code.spec!r}: its output on a {shape} batch is {got}, expected "
            f"{(CHECK_BATCH, data.classes)} (one logit per class)"
        )


# --- the run directory's record of a file spec -------------------------------------------------


def record_in_run(run_path: Path, code: ModelCode, writer: Writer = FILES) -> None:
    """Copy a file spec's bytes into the run and record their hash (nothing for other specs).
    The copy is written first, so a model.json that exists always has its copy."""
    if code.kind != "file":
        return
    assert code.source is not None
    writer.bytes(run_path / MODEL_COPY, code.source)
    writer.json(
        run_path / MODEL_RECORD,
        {
            "spec": code.spec,
            "kind": "file",
            "path": code.target,
            "named": str(code.named or code.target),
            "sha256": code.sha256,
            "copy": MODEL_COPY,
        },
    )


RECORD_SCHEMA = {
    "spec": "text",
    "kind?": "text",
    "path": "text",
    "named?": "text",
    "copy": one_of((MODEL_COPY,)),
    "sha256": Check(lambda h: isinstance(h, str) and bool(_SHA_RE.fullmatch(h)), "a SHA-256 in hex"),
}


def _read_record(run_path: Path, spec: str) -> dict[str, Any]:
    path = run_path / MODEL_RECORD
    rec = check(read_json(path), RECORD_SCHEMA, str(path), CheckpointError)
    if rec["spec"] != spec:
        raise CheckpointError(f"{path}: field 'spec' is {rec['spec']!r}, the run's config says {spec!r}")
    return rec


def resolve_for_run(
    run_path: Path, spec: str, registry: list[str], *, check_original: bool, fallback_to_spec: bool = False
) -> ModelCode:
    """The code a run was trained with. A file spec runs from the run's verified copy; with
    `check_original` (resume), a changed original file is refused. `fallback_to_spec`: a run
    killed before its record was written (so before any weights were saved) reads the spec anew."""
    kind, _, attr = parse_spec(spec, registry)
    if kind != "file":
        return resolve(spec, registry)
    if not (run_path / MODEL_RECORD).exists():
        if fallback_to_spec:
            return resolve(spec, registry)
        raise CheckpointError(f"{run_path}: trained with {spec!r} but has no {MODEL_RECORD} (its record of that file)")
    rec = _read_record(run_path, spec)
    copy = run_path / MODEL_COPY
    data = read_bytes(copy, "a .py file")
    if hashlib.sha256(data).hexdigest() != rec["sha256"]:
        raise CheckpointError(
            f"{copy}: does not match the SHA-256 in {MODEL_RECORD} (changed or corrupt); refusing to run it"
        )
    if check_original:
        # the file the bytes came from, and the path the spec names: a symbolic link there may now
        # point at other code (runs recorded before "named" was kept check the first only)
        for original in dict.fromkeys((Path(rec["path"]), Path(rec.get("named") or rec["path"]))):
            _check_unchanged(original, spec, rec["sha256"])
    return ModelCode(spec, "file", rec["path"], attr, data, copy)


def _check_unchanged(original: Path, spec: str, recorded: str) -> None:
    """A ConfigError if the file (or what a link there points at now) holds other code than `recorded`."""
    if not original.is_file():
        return  # moved or deleted: the run's copy is the code
    now = hashlib.sha256(_read(original, spec)).hexdigest()
    if now != recorded:
        target = original.resolve()
        now_at = f", now a link to {target}" if target != original else ""
        raise ConfigError(
            f"{original}{now_at}: changed since this run started (SHA-256 {now[:12]}..., recorded "
            f"{recorded[:12]}...); cannot resume with different model code: restore the file or "
            f"start a new run"
        )
