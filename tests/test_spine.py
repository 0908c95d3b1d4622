"""The spine: one owner of output folders (jobs/), one writer (core/writer.py), one validator (core/schema.py),
imports that only go down the layers, and a new measurement added in the documented four places."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

import mnistlab
from mnistlab.core.errors import ResultFileError
from mnistlab.core.schema import NONEMPTY, check
from mnistlab.jobs.folder import job_folder
from mnistlab.report.builder import build_report
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.sections import _REGISTERED, register
from mnistlab.report.sections.section import Section

SRC = Path(mnistlab.__file__).parent
LAYERS = {"core": 0, "data": 1, "training": 2, "measure": 3, "report": 4, "jobs": 5}  # then cli and the package


def _modules() -> dict[str, ast.Module]:
    out = {}
    for f in SRC.rglob("*.py"):
        name = ".".join(("mnistlab", *f.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
        out[name] = ast.parse(f.read_text())
    return out


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 6) if len(parts) > 1 else 6


def _imports(tree: ast.Module) -> list[str]:
    """Every module imported anywhere in the file, a function's own imports included."""
    return [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module] + [
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    ]


def _names(tree: ast.Module) -> set[str]:
    return (
        {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        | {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        | {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    )


def test_imports_only_go_down_the_layers():
    """core <- data <- training <- measure <- report <- jobs <- cli: a lower layer never imports a higher one;
    the one exception is core/processstart.py reading when the package itself was imported."""
    up = [
        (m, t)
        for m, tree in _modules().items()
        for t in _imports(tree)
        if t.startswith("mnistlab") and _layer(t) > _layer(m)
    ]
    assert up == [("mnistlab.core.processstart", "mnistlab")], up


def test_only_core_writes_files_and_only_the_writer_writes_status():
    mods = _modules()
    outside = [m for m, tree in mods.items() if not m.startswith("mnistlab.core.") and "write_atomic" in _names(tree)]
    assert outside == []
    # status.json: named by core/writer.py (which writes it) and core/rundir.py (which reads it), nowhere else
    named = [
        m
        for m, tree in mods.items()
        if any(isinstance(n, ast.Constant) and n.value == "status.json" for n in ast.walk(tree))
    ]
    assert sorted(named) == ["mnistlab.core.rundir", "mnistlab.core.writer"]
    writes_status = [
        m
        for m, tree in mods.items()
        if m != "mnistlab.core.writer"
        and any(
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr == "status"
            and isinstance(n.func.value, ast.Attribute)
            and n.func.value.attr == "writer"
            for n in ast.walk(tree)
        )
    ]
    assert writes_status == []  # jobs go through JobFolder.progress / end, which call Writer.status


def test_the_runner_owns_no_folder_and_measure_runs_no_job():
    mods = _modules()
    assert not _names(mods["mnistlab.training.runner"]) & {"create_run_dir", "fetch", "new_folder", "FolderLock"}
    for m, tree in mods.items():
        if m.startswith("mnistlab.measure"):
            assert not [t for t in _imports(tree) if t.startswith(("mnistlab.jobs", "mnistlab.training.runner"))], m


def test_hand_written_timers_live_in_core_timing_only():
    for m, tree in _modules().items():
        if m != "mnistlab.core.timing":
            assert "perf_counter" not in _names(tree), m


def test_one_rule_for_numbers_one_error_naming_file_and_field():
    schema = {"a": "seconds", "b": ["count", NONEMPTY]}
    for bad, field in (
        ({"a": float("nan"), "b": [1]}, "'a'"),
        ({"a": float("inf"), "b": [1]}, "'a'"),
        ({"a": True, "b": [1]}, "'a'"),
        ({"a": 1.0, "b": [1.5]}, "'b'[0]"),
        ({"a": 1.0, "b": [10**400]}, "'b'[0]"),
        ({"a": -1, "b": [1]}, "'a'"),
    ):
        with pytest.raises(ResultFileError, match=re.escape(f"f.json: field {field} must be")):
            check(bad, schema, "f.json")
    assert check({"a": 0.5, "b": [3]}, schema, "f.json")


# --- a new measurement, added the documented way (CONTRIBUTING.md): its module, its job, its section --------


@dataclass
class ToyResult:
    """1. The measurement's module: a result type that owns its file and its validated reading."""

    FILE: ClassVar[str] = "toy.json"
    SCHEMA: ClassVar[dict[str, Any]] = {"answer": "count", "seconds": "seconds"}

    answer: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = FILE) -> ToyResult:
        return cls(**check(data, cls.SCHEMA, where))


def toy_job(out: Path) -> ToyResult:
    """2. Its job: one folder, its status, its result written by the job's writer."""
    with job_folder(out, job="toy") as job:
        result = ToyResult(answer=42, seconds=0.25)
        job.save(result, f"the answer is {result.answer}", "toy.txt")
    return result


def toy_section(doc: Document, inputs: Inputs) -> None:
    """3. Its report section, which registers itself and names the result it reads."""
    for r in inputs.results_of(ToyResult):
        doc.h2("Toy measurement")
        doc.p(f"The toy measured {r.answer} in {r.seconds:.2f} s.")


def test_a_new_measurement_touches_its_module_job_and_section(tmp_path, monkeypatch):
    monkeypatch.setattr("mnistlab.report.sections._REGISTERED", [*_REGISTERED])
    register(Section(toy_section, order=175, reads=ToyResult))
    toy_job(tmp_path / "toy")
    status = json.loads((tmp_path / "toy" / "status.json").read_text())
    assert status == {"state": "completed", "job": "toy"} and (tmp_path / "toy" / "toy.txt").is_file()
    md = build_report([tmp_path / "toy"], tmp_path / "out")[0].read_text()
    assert "The toy measured 42 in 0.25 s." in md
    (tmp_path / "toy" / "toy.json").write_text('{"answer": -1, "seconds": 0.25}')  # a hostile file: one line
    with pytest.raises(ResultFileError, match="toy.json: field 'answer' must be a whole number"):
        build_report([tmp_path / "toy"], tmp_path / "out")
