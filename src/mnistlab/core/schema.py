"""The one way mnistlab reads back what it (or anyone) wrote: every file is checked here before use.

config.json, metrics.csv, steps.csv, status.json, env.json, test.json, every result file, sweep.json and
trials.json, dataset rows and a checkpoint's history and optimizer fields all go through `check`, with
ONE rule for numbers (finite, not a bool, and inside the field's range) and ONE error type, named by
the caller (ResultFileError for a file, ConfigError for settings), whose line names the file and field.

A schema is:
- a type name: 'number' (finite), 'positive', 'int', 'text', 'bool', 'any', or a ranged name (RANGED:
  'seconds', 'count', 'percent', ...); a name ending in '?' also allows null;
- a `Range` (a number in [low, high], whole if `whole`) or a `Check` (any test, with its words);
- {key: schema} for an object (a key ending in '?' may be absent; the single key '*' checks every value
  of a map); `Closed({...})` refuses keys it does not name;
- [schema] for a list, [schema, NONEMPTY] for one with at least one item, [schema, (low, high)] for one
  with a bounded length.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from mnistlab.core.errors import MnistlabError, ResultFileError

NONEMPTY = "nonempty"


def is_number(v: Any) -> bool:
    """THE rule for a number read back: an int or float, not a bool, finite."""
    # an int is finite however long (math.isfinite of a 400-digit one would overflow)
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and math.isfinite(v))


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def json_kind(obj: Any) -> str:
    """The JSON name of a value's type, for messages."""
    names = {
        dict: "an object",
        list: "a list",
        str: "text",
        bool: "a boolean",
        type(None): "null",
        int: "a number",
        float: "a number",
    }
    return names.get(type(obj), type(obj).__name__)


@dataclass(frozen=True)
class Range:
    """A finite number in [low, high], whole if `whole` (an int in JSON; an integral value in a CSV)."""

    low: float
    high: float
    whole: bool = False

    def holds(self, v: Any) -> bool:
        # the bounds first: they are finite (so nan and inf fail) and compare a 400-digit int exactly
        return is_number(v) and self.low <= v <= self.high and (not self.whole or v == int(v))

    def words(self) -> str:
        return (
            f"a whole number in {int(self.low):,}..{int(self.high):,}"
            if self.whole
            else f"a number in [{self.low:g}, {self.high:g}]"
        )


@dataclass(frozen=True)
class Check:
    """A leaf with its own test, and the words that say what it wants."""

    test: Callable[[Any], bool]
    words: str


def one_of(values: tuple[Any, ...] | list[Any]) -> Check:
    allowed = tuple(values)
    return Check(
        lambda v: isinstance(v, (str, int, float)) and not isinstance(v, bool) and v in allowed,
        "one of " + ", ".join(map(repr, allowed)),
    )


class Closed(dict[str, Any]):
    """An object schema that refuses keys it does not name."""


MAX_SECONDS = 1e9  # 31 years: no recorded duration is longer, and '{:.2f}' of one stays short
MAX_COUNT = 2**63 - 1
MAX_FLOP_RATE = 1e21  # FLOP/s: a zettaFLOP, far above any one device
MAX_BYTE_RATE = 1e16  # B/s: 10 PB/s, far above any memory
LARGE = 3.4e38  # float32's largest: no loss computed in float32 is larger
RANGED = {
    "seconds": Range(0, MAX_SECONDS),
    "positive seconds": Range(math.ulp(0), MAX_SECONDS),
    "count": Range(0, MAX_COUNT, whole=True),
    "positive count": Range(1, MAX_COUNT, whole=True),
    "percent": Range(0, 100),
    "fraction": Range(0, 1),
    "flop rate": Range(1, MAX_FLOP_RATE),
    "byte rate": Range(0, MAX_BYTE_RATE),
    "loss": Range(0, LARGE),
}
_WORDS = {
    "seconds": f"a duration in [0, {MAX_SECONDS:g}] s",
    "positive seconds": f"a duration in (0, {MAX_SECONDS:g}] s",
    "count": "a whole number in 0..2**63-1",
    "positive count": "a whole number in 1..2**63-1",
    "percent": "a percentage in [0, 100]",
    "fraction": "a number in [0, 1]",
    "flop rate": f"FLOP/s in [1, {MAX_FLOP_RATE:g}]",
    "byte rate": f"bytes/s in [0, {MAX_BYTE_RATE:g}]",
    "loss": "a loss in [0, 3.4e38]",
    "number": "a finite number",
    "positive": "a finite number above 0",
    "int": "a whole number",
    "bool": "true or false",
}

_TYPES: dict[str, Callable[[Any], bool]] = {
    "number": is_number,
    "positive": lambda v: is_number(v) and v > 0,
    "int": is_int,
    "text": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "any": lambda v: True,
}


def _fits(value: Any, leaf: Any) -> bool:
    if isinstance(leaf, Check):
        return bool(leaf.test(value))
    if isinstance(leaf, Range):
        return leaf.holds(value) and (not leaf.whole or is_int(value))
    if value is None and leaf.endswith("?"):
        return True
    name = leaf.rstrip("?")
    return _fits(value, RANGED[name]) if name in RANGED else _TYPES[name](value)


def _words(leaf: Any) -> str:
    if isinstance(leaf, (Check,)):
        return leaf.words
    if isinstance(leaf, Range):
        return leaf.words()
    name = leaf.rstrip("?")
    return _WORDS.get(name, name) + (" or null" if leaf.endswith("?") else "")


def short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."  # a 400-digit int: one line


def check(value: Any, schema: Any, where: str = "", error: type[MnistlabError] = ResultFileError) -> Any:
    """`value`, if it fits `schema`; else `error` in one line naming the file (`where`) and the field of the
    first value that does not fit: "config.json: field 'epochs' must be a whole number in 1..100,000, got 0"
    (settings given directly, with no file: "epochs must be ...")."""
    _check(value, schema, where, "", error)
    return value


def _at(where: str, path: str) -> str:
    if not path:
        return where or "the value"
    return f"{where}: field {path}" if where else path.strip("'")


def _in(where: str, path: str) -> str:
    """'config.json: ', 'config.json: field 'a': ' or nothing: where a missing or unknown field is."""
    return f"{_at(where, path)}: " if where or path else ""


def _check(value: Any, schema: Any, where: str, path: str, error: type[MnistlabError]) -> None:
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise error(f"{_at(where, path)} must be an object, got {json_kind(value)}")
        if isinstance(schema, Closed):
            unknown = sorted(str(k) for k in value if k not in {s.rstrip("?") for s in schema})
            if unknown:
                raise error(
                    f"{_in(where, path)}unknown field {unknown[0]!r} (known: "
                    f"{', '.join(sorted(s.rstrip('?') for s in schema))})"
                )
        items = [(k, schema["*"]) for k in value] if set(schema) == {"*"} else list(schema.items())
        for key, sub in items:
            name = key.rstrip("?")
            if name not in value:
                if key.endswith("?"):
                    continue
                raise error(f"{_in(where, path)}missing the field {name!r}")
            _check(value[name], sub, where, f"{path}.{name}" if path else repr(name), error)
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise error(f"{_at(where, path)} must be a list, got {json_kind(value)}")
        bounds = schema[1] if len(schema) > 1 else None
        if bounds == NONEMPTY and not value:
            raise error(f"{_at(where, path)} must hold at least one value, got an empty list")
        if isinstance(bounds, tuple) and not bounds[0] <= len(value) <= bounds[1]:
            raise error(f"{_at(where, path)} must hold {bounds[0]} to {bounds[1]} values, got {len(value)}")
        for i, item in enumerate(value):
            _check(item, schema[0], where, f"{path}[{i}]", error)
    elif not _fits(value, schema):
        raise error(f"{_at(where, path)} must be {_words(schema)}, got {short_repr(value)}")


def maybe(leaf: Any) -> Check:
    """`leaf`, or null."""
    return Check(lambda v: v is None or _fits(v, leaf), f"{_words(leaf)} or null")


def check_rows(path: Path | str, rows: list[dict[str, float]], columns: dict[str, Range]) -> list[dict[str, float]]:
    """A CSV's rows (numbers as read_csv gives them), each known column in its Range; a whole column's
    values become ints. Else a ResultFileError naming the line and the column."""
    for line, row in enumerate(rows, start=2):
        for column, value in row.items():
            r = columns.get(column)
            if r is None:
                continue
            if not r.holds(value):
                raise ResultFileError(f"{path}: line {line}: {column} must be {r.words()}, got {value!r}")
            if r.whole:
                row[column] = int(value)
    return rows


class Result(Protocol):
    """A typed measurement result: it names its file and reads itself back, validated."""

    FILE: ClassVar[str]

    def to_dict(self) -> dict[str, Any]: ...


R = TypeVar("R")


def read_result(cls: type[R], folder: Path | str) -> R:
    """`folder / cls.FILE`, validated by `cls.from_dict` (a damaged or old file: one line naming it)."""
    from mnistlab.core.rundir import read_json_object

    path = Path(folder) / cls.FILE  # type: ignore[attr-defined]
    return cls.from_dict(read_json_object(path), str(path))  # type: ignore[attr-defined]
