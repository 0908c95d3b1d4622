"""One validation mechanism for every file mnistlab reads back (run files, lab.json, result files).

A schema is a type name, {key: schema} for an object (a key ending in '?' may be absent; the single
key '*' checks every value of a map), or [schema] for a list ([schema, NONEMPTY]: with at least one
item); a type name ending in '?' also allows null. 'positive' is a finite number above 0 (a time a
reader divides by). A value that does not fit is a CheckpointError naming the file and the field, in one line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol, TypeVar

from mnistlab.core.errors import CheckpointError
from mnistlab.core.rundir import json_kind, read_json_object

NONEMPTY = "nonempty"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_TYPES = {"number": _number, "positive": lambda v: _number(v) and v > 0,
          "int": lambda v: isinstance(v, int) and not isinstance(v, bool), "text": lambda v: isinstance(v, str),
          "bool": lambda v: isinstance(v, bool), "any": lambda v: True}


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
        raise CheckpointError(f"{where}: expected {schema.rstrip('?')}, found {value!r}")


class Result(Protocol):
    """A typed measurement result: it names its file and reads itself back, validated."""
    FILE: str

    def to_dict(self) -> dict[str, Any]: ...


R = TypeVar("R")


def read_result(cls: type[R], folder: Path) -> R:
    """`folder / cls.FILE`, validated by `cls.from_dict` (a damaged or old file: one line naming it)."""
    path = Path(folder) / cls.FILE  # type: ignore[attr-defined]
    return cls.from_dict(read_json_object(path), str(path))  # type: ignore[attr-defined]
