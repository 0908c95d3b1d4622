"""One validation mechanism for every file mnistlab reads back (run files, lab.json, result files).

A schema is a type name, {key: schema} for an object (a key ending in '?' may be absent; the single
key '*' checks every value of a map), or [schema] for a list ([schema, NONEMPTY]: with at least one
item); a type name ending in '?' also allows null. 'positive' is a finite number above 0 (a time a
reader divides by). Ranged names (RANGED) bound what a reader prints or divides by: 'seconds' and
'positive seconds' (a duration, at most MAX_SECONDS), 'count' and 'positive count' (whole, below 2**63,
so float() of a sum stays finite), 'percent', 'fraction', 'flop rate', 'byte rate'. A value that does not fit is a
CheckpointError naming the file and the field, in one line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol, TypeVar

from mnistlab.core.errors import CheckpointError
from mnistlab.core.rundir import Range, json_kind, read_json_object

NONEMPTY = "nonempty"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


MAX_SECONDS = 1e9  # 31 years: no recorded duration is longer, and '{:.2f}' of one stays short
MAX_COUNT = 2**63 - 1
MAX_FLOP_RATE = 1e21  # FLOP/s: a zettaFLOP, far above any one device
MAX_BYTE_RATE = 1e16  # bytes/s: 10 PB/s, far above any one device's memory or cache
# name: (its Range, words for the error line); the same Range that bounds a run's CSV columns (core/rundir.py)
RANGED = {"seconds": (Range(0, MAX_SECONDS), f"a duration in [0, {MAX_SECONDS:g}] s"),
          "positive seconds": (Range(math.ulp(0), MAX_SECONDS), f"a duration in (0, {MAX_SECONDS:g}] s"),
          "count": (Range(0, MAX_COUNT, whole=True), "a whole number in 0..2**63-1"),
          "positive count": (Range(1, MAX_COUNT, whole=True), "a whole number in 1..2**63-1"),
          "percent": (Range(0, 100), "a percentage in [0, 100]"),
          "fraction": (Range(0, 1), "a number in [0, 1]"),
          "flop rate": (Range(1, MAX_FLOP_RATE), f"FLOP/s in [1, {MAX_FLOP_RATE:g}]"),
          "byte rate": (Range(1, MAX_BYTE_RATE), f"bytes/s in [1, {MAX_BYTE_RATE:g}]")}


def _in(r: Range) -> Any:
    """A JSON value's test for `r`: a number (an int where it is whole: 3.0 is not a count) within it."""
    return lambda v: (_int(v) if r.whole else _number(v)) and r.holds(v)


_TYPES = {"number": _number, "positive": lambda v: _number(v) and v > 0,
          "int": _int, "text": lambda v: isinstance(v, str),
          "bool": lambda v: isinstance(v, bool), "any": lambda v: True,
          **{name: _in(r) for name, (r, _) in RANGED.items()}}


def check_schema(value: Any, schema: Any, where: str) -> None:
    """CheckpointError naming the file and the field of the first value that does not fit `schema`."""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise CheckpointError(f"{where}: expected an object, found {json_kind(value)}")
        items = ([(k, schema["*"]) for k in value] if set(schema) == {"*"} else schema.items())
        for key, sub in items:
            name = key.rstrip("?")
            if name not in value:
                if key.endswith("?"):
                    continue
                raise CheckpointError(f"{where}: missing the field {name!r}")
            check_schema(value[name], sub, f"{where}: field {name!r}" if ": field" not in where else f"{where}.{name}")
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise CheckpointError(f"{where}: expected a list, found {json_kind(value)}")
        if schema[1:] == [NONEMPTY] and not value:
            raise CheckpointError(f"{where}: expected at least one value, found an empty list")
        for i, item in enumerate(value):
            check_schema(item, schema[0], f"{where}[{i}]")
    elif not (value is None and schema.endswith("?")) and not _TYPES[schema.rstrip("?")](value):
        name = schema.rstrip("?")
        found = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."  # a 400-digit int: one line
        raise CheckpointError(f"{where}: expected {RANGED[name][1] if name in RANGED else name}, found {found}")


class Result(Protocol):
    """A typed measurement result: it names its file and reads itself back, validated."""
    FILE: str

    def to_dict(self) -> dict[str, Any]: ...


R = TypeVar("R")


def read_result(cls: type[R], folder: Path) -> R:
    """`folder / cls.FILE`, validated by `cls.from_dict` (a damaged or old file: one line naming it)."""
    path = Path(folder) / cls.FILE  # type: ignore[attr-defined]
    return cls.from_dict(read_json_object(path), str(path))  # type: ignore[attr-defined]
