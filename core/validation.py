"""Validate CSV rows against a Table Schema, chunk by chunk, and find duplicate keys across chunks.

``Validator(schema, mapping).validate_chunk(rows, first_row=...)`` reads each mapped cell as its field's
type (see ``core.tableschema`` for the typed values), checks the constraints on the typed value, and
returns the valid rows as ``{field name: typed value}``, one ``RowError`` per bad cell (the first
constraint it breaks), and the chunk's key digests. A chunk needs nothing from other chunks, so chunks
can be validated in parallel and in any order; memory is bounded by the chunk, not the file.

Rules a person may ask about:

- A cell equal to one of ``missingValues`` is ``None``; a required (or primary-key) field reports
  ``required`` for it. Every other value is checked.
- A row with fewer cells than the header reports ``missingCell`` for each mapped field whose column is
  absent (a short row whose absent columns feed no field is accepted). A row with more cells than the
  header reports one ``extraCell`` error (column ``""``) when an extra cell holds something; empty extra
  cells, as left by a trailing delimiter, are ignored. CSV columns that feed no field are ignored.
- Error values are the cell text cut to ``VALUE_CHARS`` characters; messages quote at most
  ``MESSAGE_VALUE_CHARS``.

Uniqueness (``unique`` fields and the primary key) across the whole file. Each chunk returns, per key
constraint, a ``KeyRun``: the canonical key of every row whose key cells are present and valid, sorted,
with the row number, the cell text and whether the row was otherwise valid. ``merge_keys`` (or
``find_duplicates``) merges the sorted runs of all chunks, in any order, as a k-way merge, and reports
every later row with a key seen before: the first occurrence in file order is kept, whichever chunk was
validated first. Canonical keys are the typed value as text (``007`` and ``7`` are the same integer;
datetimes in UTC; ``-0.0`` is ``0.0``); a composite key joins its parts length-prefixed, so no two
different keys share a text. Keys of up to ``MAX_PLAIN_KEY_CHARS`` (40) characters are kept as they are,
so the merge compares real values and is exact (integers, codes, UUIDs, most emails). Longer keys are
replaced by ``#`` and a 160-bit BLAKE2b digest: two different long keys would be reported as duplicates
only if their digests collide, which for n long keys has probability below n²/2¹⁶¹ (under 10⁻³⁰ for a
billion rows; and BLAKE2b collisions cannot be crafted), far below the odds of a memory error.
Memory of the merge: the runs it is given (about 60 bytes per key held in Python) plus O(chunks).
"""

from __future__ import annotations

import hashlib
import heapq
import math
import operator
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from itertools import accumulate, compress, count, islice, repeat
from operator import attrgetter, is_not, itemgetter
from typing import Any, Final

from core.mapping import ColumnMapping
from core.tableschema import (
    DATE_RE,
    DATETIME_RE,
    DURATION_RE,
    EMAIL_RE,
    INT64_MAX,
    INT64_MIN,
    TIME_RE,
    URI_RE,
    UUID_RE,
    YEAR_RE,
    YEARMONTH_RE,
    Field,
    OutOfRange,
    TableSchema,
    cell_reader,
    compile_pattern,
    order_key,
)

VALUE_CHARS: Final = 200
MESSAGE_VALUE_CHARS: Final = 60
MAX_PLAIN_KEY_CHARS: Final = 40
BATCH_ROWS: Final = 128
DEFAULT_CHUNK_ROWS: Final = 10_000

Problem = tuple[int, str, str]  # offset in the batch, error code, message text after the value


@dataclass(frozen=True, slots=True)
class RowError:
    """One bad cell (or row): where it is, what rule it breaks, and a message a person understands."""

    row: int
    column: str
    code: str
    message: str
    value: str

    def to_json(self) -> dict[str, Any]:
        """Return the error as API JSON."""
        return {
            "row": self.row,
            "column": self.column,
            "code": self.code,
            "message": self.message,
            "value": self.value,
        }


@dataclass(frozen=True)
class KeyRun:
    """One chunk's keys for one constraint, sorted by key then row (see the module docstring)."""

    code: str  # "primaryKey" or "unique"
    columns: tuple[str, ...]
    keys: list[str]
    rows: list[int]
    values: list[str]
    valid: bytes  # 1 where the row had no other error in its chunk

    def to_json(self) -> dict[str, Any]:
        """Return the run as JSON (for an activity result or a blob)."""
        return {
            "code": self.code,
            "columns": list(self.columns),
            "keys": self.keys,
            "rows": self.rows,
            "values": self.values,
            "valid": self.valid.hex(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyRun:
        """Rebuild a run from to_json's output."""
        return cls(
            code=data["code"],
            columns=tuple(data["columns"]),
            keys=list(data["keys"]),
            rows=list(data["rows"]),
            values=list(data["values"]),
            valid=bytes.fromhex(data["valid"]),
        )


@dataclass(frozen=True)
class KeyDigests:
    """A chunk's key runs, one per key constraint of the schema."""

    runs: tuple[KeyRun, ...] = ()

    def to_json(self) -> list[dict[str, Any]]:
        """Return the runs as JSON."""
        return [run.to_json() for run in self.runs]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> KeyDigests:
        """Rebuild the digests from to_json's output."""
        return cls(tuple(KeyRun.from_json(item) for item in data))


@dataclass(frozen=True)
class ChunkResult:
    """What validating one chunk found; duplicates across chunks come later, from merge_keys."""

    first_row: int
    row_count: int
    invalid_count: int
    errors: list[RowError]
    valid_rows: list[dict[str, Any]]
    valid_row_numbers: list[int]
    keys: KeyDigests

    @property
    def valid_count(self) -> int:
        """Return the number of rows without errors in this chunk."""
        return self.row_count - self.invalid_count


@dataclass(frozen=True)
class KeyMerge:
    """Duplicate keys across all chunks: their errors, and the rows they make invalid for the first time."""

    errors: list[RowError]
    newly_invalid_rows: list[int]


def _shown(value: str) -> str:
    if len(value) <= MESSAGE_VALUE_CHARS:
        return value
    return value[: MESSAGE_VALUE_CHARS - 1] + "…"


def _positions(items: list[Any], target: object) -> list[int]:
    """Return the offsets of `target` (None or True) in items, scanning in C."""
    positions: list[int] = []
    index = -1
    try:
        while True:
            index = items.index(target, index + 1)
            positions.append(index)
    except ValueError:
        return positions


def _joined(pattern: re.Pattern[str]) -> Callable[[Sequence[str]], bool]:
    """Return a test that every cell fully matches pattern, with one regex call for the whole column.

    Only for patterns that cannot match a line break; the line count guard rejects cells holding one.
    """
    body = pattern.pattern
    whole = re.compile(rf"(?:{body})(?:\n(?:{body}))*").fullmatch

    def all_match(cells: Sequence[str]) -> bool:
        text = "\n".join(cells)
        return text.count("\n") == len(cells) - 1 and whole(text) is not None

    return all_match


def _resumed(parse: Callable[[str], Any], cells: Sequence[str]) -> list[Any]:
    """Return parse mapped over cells in C, with None where it raised ValueError.

    map() stops at the first exception; list.extend keeps what it had appended, so reading goes on after
    the failing cell. A bad cell costs one exception, not a slow path for the whole column.
    """
    values: list[Any] = []
    rest = iter(cells)
    while True:
        try:
            values.extend(map(parse, rest))
        except ValueError:
            values.append(None)
        else:
            return values


def _parsed_flags(values: list[Any]) -> list[bool]:
    return list(map(is_not, values, repeat(None)))


def _cells_holding(
    text: str, cells: Sequence[str], finder: Callable[[str], Iterator[re.Match[str]]]
) -> set[int]:
    """Return the offsets of the cells of text ("\n"-joined cells) where finder finds something."""
    ends = list(map(operator.add, accumulate(map(len, cells)), count()))
    return {bisect_right(ends, match.start()) for match in finder(text)}


def _strict_only(
    values: list[Any], cells: Sequence[str], allowed: str, odd: Callable[[str], Iterator[re.Match[str]]]
) -> list[Any]:
    """Null the values of cells with characters the strict grammar forbids (int() and float() allow some)."""
    text = "\n".join(cells)
    if text.count("\n") != len(cells) - 1:  # a cell holds a line break: check cell by cell
        return [
            value if "\n" not in cell and next(odd(cell), None) is None else None
            for cell, value in zip(cells, values, strict=True)
        ]
    bare = text
    for char in allowed:  # str.replace and isdigit run in C, far faster than a regex scan
        bare = bare.replace(char, "")
    if (bare.isdigit() and bare.isascii()) or not bare:
        return values
    for offset in _cells_holding(text, cells, odd):
        values[offset] = None
    return values


_INTEGER_ODD: Final = re.compile(r"[^0-9+\-\n]+").finditer
_NUMBER_ODD: Final = re.compile(r"[^0-9+\-.eE\n]+").finditer


def _integer_column(cells: Sequence[str]) -> list[Any] | None:
    # int() also takes spaces, underscores and non-ASCII digits; a cell made of [0-9+-] that int() reads
    # is exactly one INTEGER_RE matches.
    values = _strict_only(_resumed(int, cells), cells, "\n+-", _INTEGER_ODD)
    present = list(compress(values, _parsed_flags(values))) if None in values else values
    if present and not (min(present) >= INT64_MIN and max(present) <= INT64_MAX):
        return [value if value is None or INT64_MIN <= value <= INT64_MAX else None for value in values]
    return values


def _number_column(cells: Sequence[str]) -> list[Any] | None:
    # Made of [0-9+-.eE], what float() reads is exactly what NUMBER_RE matches; NaN and INF go the slow way.
    values = _strict_only(_resumed(float, cells), cells, "\n+-.eE", _NUMBER_ODD)
    present = list(compress(values, _parsed_flags(values))) if None in values else values
    if present and (min(present) == -math.inf or max(present) == math.inf):
        return [value if value is None or math.isfinite(value) else None for value in values]
    return values


def _shaped_column(
    pattern: re.Pattern[str], parse: Callable[[str], Any]
) -> Callable[[Sequence[str]], list[Any] | None]:
    """Parse in C, then check the layout of the parsed cells with one regex (fromisoformat takes more)."""
    all_match = _joined(pattern)
    fullmatch = pattern.fullmatch

    def read(cells: Sequence[str]) -> list[Any] | None:
        values = _resumed(parse, cells)
        parsed = list(compress(cells, _parsed_flags(values))) if None in values else cells
        if all_match(parsed):
            return values
        return [
            value if value is not None and fullmatch(cell) is not None else None
            for cell, value in zip(cells, values, strict=True)
        ]

    return read


_BLOCK_CELLS: Final = 32


def _matching_column(pattern: re.Pattern[str]) -> Callable[[Sequence[str]], list[Any] | None]:
    """Check cells against a pattern a block at a time: one regex call per clean block."""
    all_match = _joined(pattern)
    fullmatch = pattern.fullmatch

    def read(cells: Sequence[str]) -> list[Any]:
        values: list[Any] = []
        for start in range(0, len(cells), _BLOCK_CELLS):
            block = cells[start : start + _BLOCK_CELLS]
            if all_match(block):
                values.extend(block)
            else:
                values.extend([cell if fullmatch(cell) is not None else None for cell in block])
        return values

    return read


_date_column = _shaped_column(DATE_RE, date.fromisoformat)
_time_column = _shaped_column(TIME_RE, time.fromisoformat)
_datetimes = _shaped_column(DATETIME_RE, datetime.fromisoformat)
_year_column = _shaped_column(YEAR_RE, int)
_tzinfo = attrgetter("tzinfo")


def _datetime_column(cells: Sequence[str]) -> list[Any] | None:
    moments = _datetimes(cells)
    if moments is None or set(map(_tzinfo, compress(moments, _parsed_flags(moments)))) <= {None, UTC}:
        return moments
    return [m.astimezone(UTC) if m is not None and m.tzinfo is not None else m for m in moments]


def _boolean_column(table: dict[str, bool]) -> Callable[[Sequence[str]], list[Any] | None]:
    get = table.get

    def read(cells: Sequence[str]) -> list[Any]:
        return list(map(get, cells))

    return read


def _identity_column(cells: Sequence[str]) -> list[Any]:
    return list(cells)


_STRING_COLUMNS: Final = {
    "default": _identity_column,
    "email": _matching_column(EMAIL_RE),
    "uri": _matching_column(URI_RE),
    "uuid": _matching_column(UUID_RE),
}
_TYPE_COLUMNS: Final = {
    "date": _date_column,
    "datetime": _datetime_column,
    "time": _time_column,
    "year": _year_column,
    "yearmonth": _matching_column(YEARMONTH_RE),
    "duration": _matching_column(DURATION_RE),
    "any": _identity_column,
}


def _column_reader(item: Field) -> Callable[[Sequence[str]], list[Any] | None] | None:
    """Return a whole-column reader for the field (None entries = cells to read one by one), if any."""
    plain_number = item.bare_number and item.group_char == "" and item.decimal_char == "."
    if item.type == "integer":
        return _integer_column if plain_number else None
    if item.type == "number":
        return _number_column if plain_number else None
    if item.type == "boolean":
        table = {**dict.fromkeys(item.false_values, False), **dict.fromkeys(item.true_values, True)}
        return _boolean_column(table)
    if item.format != "default":
        return _STRING_COLUMNS.get(item.format) if item.type == "string" else None
    if item.type == "string":
        return _identity_column
    return _TYPE_COLUMNS.get(item.type)


_TYPE_DETAILS: Final = {
    ("string", "email"): "is not an email address",
    ("string", "uri"): "is not a URI (it needs a scheme, such as https:)",
    ("string", "uuid"): "is not a UUID",
    ("string", "binary"): "is not base64 data",
    ("integer", "default"): "is not an integer",
    ("number", "default"): "is not a number",
    ("date", "default"): "is not a date in the form YYYY-MM-DD",
    (
        "datetime",
        "default",
    ): "is not a date and time in the form YYYY-MM-DDThh:mm:ss (optionally with Z or an offset)",
    ("time", "default"): "is not a time in the form hh:mm:ss",
    ("year", "default"): "is not a year (four digits)",
    ("yearmonth", "default"): "is not a year and month in the form YYYY-MM",
    ("duration", "default"): "is not an ISO 8601 duration, such as P1DT2H",
}
_OVERFLOW_DETAILS: Final = {
    "integer": "is outside the range of a 64-bit integer",
    "number": "is too large a number",
}


def _type_detail(item: Field) -> str:
    if item.type == "boolean":
        accepted = ", ".join(f'"{value}"' for value in (*item.true_values, *item.false_values))
        return f"is not a boolean (use one of {accepted})"
    if item.type in ("date", "datetime", "time") and item.format != "default":
        return f"is not a {item.type} in the format {item.format.removeprefix('fmt:')}"
    if item.type in ("integer", "number") and item.format == "default":
        detail = _TYPE_DETAILS[(item.type, "default")]
        if item.group_char or item.decimal_char != ".":
            detail += f" (decimal mark {item.decimal_char!r}, thousands separator {item.group_char!r})"
        return detail
    return _TYPE_DETAILS.get((item.type, item.format), f"is not a valid {item.type}")


def _written(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# A constraint on typed values: the code, a whole-column check, a one-value test and the message detail.
# Column checks get the present values and returns the offsets (in the present values) that break it.
ColumnCheck = Callable[[list[Any]], list[int]]
ValueTest = Callable[[Any], bool]


@dataclass(frozen=True)
class _Constraint:
    code: str
    column_check: ColumnCheck
    test: ValueTest
    detail: Callable[[Any], str]


def _fixed(text: str) -> Callable[[Any], str]:
    def detail(_value: Any) -> str:
        return text

    return detail


def _bound_constraints(item: Field) -> list[_Constraint]:
    key = order_key(item.type)
    # Naive and aware datetimes (and times) only compare through their order key.
    keyed = item.type in ("datetime", "time")
    source = item.constraints.source
    found: list[_Constraint] = []
    bounds: list[tuple[str, Any, Callable[[Any, Any], bool], Callable[[Any, Any], bool], str]] = [
        ("minimum", item.constraints.minimum, operator.ge, operator.lt, "is less than the minimum, {}"),
        ("maximum", item.constraints.maximum, operator.le, operator.gt, "is greater than the maximum, {}"),
        (
            "exclusiveMinimum",
            item.constraints.exclusive_minimum,
            operator.gt,
            operator.le,
            "must be greater than {}",
        ),
        (
            "exclusiveMaximum",
            item.constraints.exclusive_maximum,
            operator.lt,
            operator.ge,
            "must be less than {}",
        ),
    ]
    for code, bound, holds, breaks, template in bounds:
        if bound is None:
            continue
        limit = key(bound)
        extreme = min if code in ("minimum", "exclusiveMinimum") else max
        check = _bound_check(extreme, holds, breaks, limit, key if keyed else None)
        text = template.format(_written(source[code]))
        found.append(_Constraint(code, check, _bound_test(holds, key, limit), _fixed(text)))
    return found


def _bound_test(holds: Callable[[Any, Any], bool], key: Callable[[Any], Any], limit: Any) -> ValueTest:
    def test(value: Any) -> bool:
        return holds(key(value), limit)

    return test


def _bound_check(
    extreme: Callable[[list[Any]], Any],
    holds: Callable[[Any, Any], bool],
    breaks: Callable[[Any, Any], bool],
    limit: Any,
    key: Callable[[Any], Any] | None,
) -> ColumnCheck:
    def check(values: list[Any]) -> list[int]:
        if key is not None:
            values = list(map(key, values))
        if holds(extreme(values), limit):
            return []
        return _positions(list(map(breaks, values, repeat(limit))), True)

    return check


def _length_constraints(item: Field) -> list[_Constraint]:
    found: list[_Constraint] = []
    low, high = item.constraints.min_length, item.constraints.max_length
    if low is not None:
        found.append(
            _Constraint(
                "minLength",
                _length_check(min, operator.lt, low),
                lambda value: len(value) >= low,
                lambda value: f"is {len(value)} characters long; the minimum length is {low}",
            )
        )
    if high is not None:
        found.append(
            _Constraint(
                "maxLength",
                _length_check(max, operator.gt, high),
                lambda value: len(value) <= high,
                lambda value: f"is {len(value)} characters long; the maximum length is {high}",
            )
        )
    return found


def _length_check(
    extreme: Callable[[list[int]], int], breaks: Callable[[int, int], bool], limit: int
) -> ColumnCheck:
    def check(values: list[Any]) -> list[int]:
        lengths = list(map(len, values))
        if not breaks(extreme(lengths), limit):
            return []
        return _positions(list(map(breaks, lengths, repeat(limit))), True)

    return check


def _pattern_constraint(item: Field) -> list[_Constraint]:
    pattern = item.constraints.pattern
    if pattern is None:
        return []
    fullmatch = compile_pattern(pattern).fullmatch

    def check(values: list[Any]) -> list[int]:
        matches = list(map(fullmatch, values))
        return _positions(matches, None) if None in matches else []

    text = f'does not match the pattern "{pattern}"'
    return [_Constraint("pattern", check, lambda value: fullmatch(value) is not None, _fixed(text))]


def _enum_constraint(item: Field) -> list[_Constraint]:
    items = item.constraints.enum
    if items is None:
        return []
    allowed = frozenset(items)
    listed = ", ".join(_written(value) for value in item.constraints.source["enum"][:10])
    if len(items) > 10:
        listed += f" and {len(items) - 10} more"

    def check(values: list[Any]) -> list[int]:
        if allowed.issuperset(values):
            return []
        return _positions(list(map(allowed.isdisjoint, map(_single, values))), True)

    text = f"is not one of the allowed values: {listed}"
    return [_Constraint("enum", check, allowed.__contains__, _fixed(text))]


def _single(value: Any) -> tuple[Any]:
    return (value,)


class _FieldRule:
    """How to read and check one field's column; built once per Validator."""

    def __init__(self, item: Field, source: int | None, missing: frozenset[str]) -> None:
        self.name = item.name
        self.source = source
        self.missing = missing
        self.only_empty_missing = missing == frozenset(("",))
        self.required = item.constraints.required
        self.reader = cell_reader(item)
        self.column_reader = _column_reader(item)
        self.identity = self.column_reader is _identity_column
        self.type_detail = _type_detail(item)
        self.overflow_detail = _OVERFLOW_DETAILS.get(item.type, self.type_detail)
        self.constraints = (
            _bound_constraints(item)
            + _length_constraints(item)
            + _pattern_constraint(item)
            + _enum_constraint(item)
        )
        self.safe_reader = self._make_safe_reader()

    def _make_safe_reader(self) -> Callable[[str], Any]:
        reader = self.reader

        def read(value: str) -> Any:
            try:
                return reader(value)
            except ValueError:
                return None

        return read

    def read_one(self, cell: str) -> tuple[Any, str | None, str]:
        """Read and check one present cell: (typed value or None, error code or None, detail)."""
        try:
            value = self.reader(cell)
        except OutOfRange:
            return None, "type", self.overflow_detail
        except ValueError:
            return None, "type", self.type_detail
        for constraint in self.constraints:
            if not constraint.test(value):
                return None, constraint.code, constraint.detail(value)
        return value, None, ""

    def check(self, cells: Sequence[str]) -> tuple[list[Any], list[Problem]]:
        """Read and check a column of cells: typed values (None if missing or bad) and problems."""
        has_missing = "" in cells if self.only_empty_missing else not self.missing.isdisjoint(cells)
        if not has_missing:
            return self._check_present(cells)
        flags = list(map(bool, cells)) if self.only_empty_missing else [c not in self.missing for c in cells]
        typed, problems = self._check_present(list(compress(cells, flags)))
        if self.identity and self.only_empty_missing and not problems:
            full: list[Any] = [cell or None for cell in cells]
        else:
            present = iter(typed)
            full = [next(present) if flag else None for flag in flags]
            positions = list(compress(range(len(cells)), flags))
            problems = [(positions[offset], code, detail) for offset, code, detail in problems]
        if self.required:
            problems.extend(
                (offset, "required", "") for offset in _positions(list(map(operator.not_, flags)), True)
            )
        return full, problems

    def _check_present(self, cells: Sequence[str]) -> tuple[list[Any], list[Problem]]:
        if not cells:
            return [], []
        typed = self.column_reader(cells) if self.column_reader is not None else None
        if typed is None:
            typed = list(map(self.safe_reader, cells))
        if None in typed:
            suspects = _positions(typed, None)
            flags = _parsed_flags(typed)
            positions = list(compress(range(len(typed)), flags))
            present = list(compress(typed, flags))
            for constraint in self.constraints if present else ():
                suspects.extend(map(positions.__getitem__, constraint.column_check(present)))
        else:
            suspects = []
            for constraint in self.constraints:
                suspects.extend(constraint.column_check(typed))
        if not suspects:
            return typed, []
        problems: list[Problem] = []
        for offset in sorted(set(suspects)):
            value, code, detail = self.read_one(cells[offset])
            typed[offset] = value
            if code is not None:
                problems.append((offset, code, detail))
        return typed, problems


def _canonical_keys(item: Field) -> Callable[[list[Any]], list[Any]]:
    """Return a function giving the canonical key of each typed value (see the module docstring)."""
    if item.type in ("integer", "year"):
        return _same_values
    if item.type == "boolean":
        return lambda values: list(map(int, values))
    if item.type == "number":
        return lambda values: [repr(value) if value else "0.0" for value in values]
    if item.type == "datetime":
        return lambda values: list(map(datetime.isoformat, values))
    if item.type == "date" and item.format == "default":
        return lambda values: list(map(date.isoformat, values))
    if item.type in ("date", "time"):
        return lambda values: [value.isoformat() for value in values]
    return _same_values


def _same_values(values: list[Any]) -> list[Any]:
    return values


def _key_text(key: Any) -> Any:
    if not isinstance(key, str) or len(key) <= MAX_PLAIN_KEY_CHARS:
        return key
    return "#" + hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


def _composite_key(parts: tuple[Any, ...]) -> str:
    texts = [str(part) for part in parts]
    return "\x1f".join(f"{len(text)}:{text}" for text in texts)


class _KeyCollector:
    """Gathers one key constraint's keys over a chunk and sorts them into a KeyRun."""

    def __init__(self, code: str, positions: list[int], fields: list[Field]) -> None:
        self.code = code
        self.positions = positions
        self.columns = tuple(item.name for item in fields)
        self.canonical = [_canonical_keys(item) for item in fields]
        self.keys: list[Any] = []
        self.rows: list[int] = []
        self.values: list[str] = []
        self.valid = bytearray()

    def add(self, typed: list[list[Any]], cells: list[Sequence[str]], first_row: int, bad: set[int]) -> None:
        """Add the keys of one batch; typed is indexed by field position, cells by key part."""
        parts = [typed[position] for position in self.positions]
        count = len(parts[0])
        flags = bytearray(b"\x01") * count
        for offset in bad:
            flags[offset] = 0
        if any(None in part for part in parts):
            keep = [all(part[offset] is not None for part in parts) for offset in range(count)]
            offsets: Sequence[int] = list(compress(range(count), keep))
            parts = [list(compress(part, keep)) for part in parts]
            cells = [list(compress(column, keep)) for column in cells]
            flags = bytearray(compress(flags, keep))
        else:
            offsets = range(count)
        if not offsets:
            return
        canonical = [make(part) for make, part in zip(self.canonical, parts, strict=True)]
        if len(canonical) == 1:
            self.keys.extend(canonical[0])
            self.values.extend(cells[0])
        else:
            self.keys.extend(map(_composite_key, zip(*canonical, strict=True)))
            self.values.extend(", ".join(shown) for shown in zip(*cells, strict=True))
        self.rows.extend(map(operator.add, offsets, repeat(first_row)))
        self.valid.extend(flags)

    def run(self) -> KeyRun:
        """Return this chunk's keys sorted by key, then row (the sort is stable and rows ascend)."""
        keys = self.keys
        if keys and isinstance(keys[0], str) and max(map(len, keys)) > MAX_PLAIN_KEY_CHARS:
            keys = list(map(_key_text, keys))
        order = sorted(range(len(keys)), key=keys.__getitem__)
        values = self.values
        if values and max(map(len, values)) > VALUE_CHARS:
            values = [value[:VALUE_CHARS] for value in values]
        return KeyRun(
            code=self.code,
            columns=self.columns,
            keys=list(map(keys.__getitem__, order)),
            rows=list(map(self.rows.__getitem__, order)),
            values=list(map(values.__getitem__, order)),
            valid=bytes(map(self.valid.__getitem__, order)),
        )


@dataclass
class _Chunk:
    errors: list[tuple[int, int, RowError]] = field(default_factory=list)
    invalid: int = 0
    valid_rows: list[dict[str, Any]] = field(default_factory=list)
    valid_row_numbers: list[int] = field(default_factory=list)


class Validator:
    """Validates chunks of CSV records (lists of cell strings) against a schema through a column mapping."""

    def __init__(self, schema: TableSchema, mapping: ColumnMapping, *, batch_rows: int = BATCH_ROWS) -> None:
        if mapping.field_names != schema.field_names:
            raise ValueError("the column mapping was made for another schema")
        self.schema = schema
        self.mapping = mapping
        self.width = len(mapping.header)
        self.batch_rows = batch_rows
        missing = frozenset(schema.missing_values)
        self._rules = [
            _FieldRule(item, source, missing)
            for item, source in zip(schema.fields, mapping.sources, strict=True)
        ]
        self._names = [item.name for item in schema.fields]
        self._key_specs = self._key_constraints()

    def _key_constraints(self) -> list[tuple[str, list[int]]]:
        positions = {item.name: position for position, item in enumerate(self.schema.fields)}
        specs: list[tuple[str, list[int]]] = []
        if self.schema.primary_key:
            specs.append(("primaryKey", [positions[name] for name in self.schema.primary_key]))
        for position, item in enumerate(self.schema.fields):
            if item.constraints.unique and (item.name,) != self.schema.primary_key:
                specs.append(("unique", [position]))
        return specs

    def validate_stream(
        self,
        rows: Iterable[Sequence[str]],
        *,
        first_row: int = 1,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        keep_rows: bool = False,
    ) -> Iterator[ChunkResult]:
        """Validate rows in consecutive chunks of chunk_rows, yielding each chunk's result."""
        iterator = iter(rows)
        while True:
            # Rows stream through in batches; a chunk is never held as a whole.
            result = self.validate_chunk(
                islice(iterator, chunk_rows), first_row=first_row, keep_rows=keep_rows
            )
            if result.row_count == 0:
                return
            yield result
            first_row += result.row_count

    def validate_chunk(
        self, rows: Iterable[Sequence[str]], *, first_row: int, keep_rows: bool = True
    ) -> ChunkResult:
        """Validate one chunk whose first row has the 1-based data row number first_row."""
        collectors = [
            _KeyCollector(code, positions, [self.schema.fields[p] for p in positions])
            for code, positions in self._key_specs
        ]
        chunk = _Chunk()
        iterator = iter(rows)
        row = first_row
        while batch := list(islice(iterator, self.batch_rows)):
            self._batch(batch, row, chunk, collectors, keep_rows)
            row += len(batch)
        chunk.errors.sort(key=itemgetter(0, 1))
        return ChunkResult(
            first_row=first_row,
            row_count=row - first_row,
            invalid_count=chunk.invalid,
            errors=[error for _, _, error in chunk.errors],
            valid_rows=chunk.valid_rows,
            valid_row_numbers=chunk.valid_row_numbers,
            keys=KeyDigests(tuple(collector.run() for collector in collectors)),
        )

    def _batch(
        self,
        batch: list[Sequence[str]],
        first_row: int,
        chunk: _Chunk,
        collectors: list[_KeyCollector],
        keep_rows: bool,
    ) -> None:
        width = self.width
        if set(map(len, batch)) == {width}:
            self._rows(batch, first_row, chunk, collectors, keep_rows, ())
            return
        # Ragged rows are rare: runs of regular rows go through as usual, each ragged row on its own.
        start = 0
        for offset, record in enumerate(batch):
            if len(record) != width:
                if start < offset:
                    self._rows(batch[start:offset], first_row + start, chunk, collectors, keep_rows, ())
                self._ragged(record, first_row + offset, chunk, collectors, keep_rows)
                start = offset + 1
        if start < len(batch):
            self._rows(batch[start:], first_row + start, chunk, collectors, keep_rows, ())

    def _ragged(
        self,
        record: Sequence[str],
        row: int,
        chunk: _Chunk,
        collectors: list[_KeyCollector],
        keep_rows: bool,
    ) -> None:
        width = self.width
        extra: list[tuple[int, str, str, str, str]] = []
        if len(record) > width and any(record[width:]):
            detail = f"Row {row} has {len(record)} cells, but the header has {width} columns."
            extra.append((len(self._rules), "", "extraCell", detail, ",".join(record[width:])))
        fitted = list(record[:width]) + [""] * (width - len(record))
        absent = [
            position
            for position, rule in enumerate(self._rules)
            if rule.source is not None and rule.source >= len(record)
        ]
        for position in absent:
            name = self._names[position]
            detail = (
                f'Row {row}, column "{name}": the row ends before this column '
                f"({len(record)} cells; the header has {width} columns)."
            )
            extra.append((position, name, "missingCell", detail, ""))
        self._rows([fitted], row, chunk, collectors, keep_rows, tuple(extra))

    def _rows(
        self,
        batch: Sequence[Sequence[str]],
        first_row: int,
        chunk: _Chunk,
        collectors: list[_KeyCollector],
        keep_rows: bool,
        structural: tuple[tuple[int, str, str, str, str], ...],
    ) -> None:
        count = len(batch)
        columns = list(zip(*batch, strict=True))
        absent = {entry[0] for entry in structural if entry[2] == "missingCell"}
        typed_columns: list[list[Any]] = []
        problems: list[tuple[int, int, str, str]] = []
        for position, rule in enumerate(self._rules):
            if rule.source is None or position in absent:
                typed_columns.append([None] * count)
                continue
            typed, found = rule.check(columns[rule.source])
            typed_columns.append(typed)
            problems.extend((offset, position, code, detail) for offset, code, detail in found)
        bad = {offset for offset, _, _, _ in problems}
        if structural:
            bad.add(0)
        for collector in collectors:
            cells = [self._cells(columns, position, count) for position in collector.positions]
            collector.add(typed_columns, cells, first_row, bad)
        self._record_errors(batch, first_row, problems, structural, chunk)
        chunk.invalid += len(bad)
        if keep_rows:
            self._keep(typed_columns, first_row, bad, chunk)

    def _cells(self, columns: list[tuple[str, ...]], position: int, count: int) -> Sequence[str]:
        source = self._rules[position].source
        return columns[source] if source is not None else ("",) * count

    def _record_errors(
        self,
        batch: Sequence[Sequence[str]],
        first_row: int,
        problems: list[tuple[int, int, str, str]],
        structural: tuple[tuple[int, str, str, str, str], ...],
        chunk: _Chunk,
    ) -> None:
        for offset, position, code, detail in problems:
            rule = self._rules[position]
            cell = batch[offset][rule.source] if rule.source is not None else ""
            row = first_row + offset
            if code == "required":
                message = f'Row {row}, column "{rule.name}": a value is required.'
            else:
                message = f'Row {row}, column "{rule.name}": "{_shown(cell)}" {detail}.'
            chunk.errors.append((row, position, RowError(row, rule.name, code, message, cell[:VALUE_CHARS])))
        for position, column, code, message, value in structural:
            error = RowError(first_row, column, code, message, value[:VALUE_CHARS])
            chunk.errors.append((first_row, position, error))

    def _keep(self, typed_columns: list[list[Any]], first_row: int, bad: set[int], chunk: _Chunk) -> None:
        names = self._names
        if not bad:
            chunk.valid_rows.extend(
                [dict(zip(names, values, strict=True)) for values in zip(*typed_columns, strict=True)]
            )
            chunk.valid_row_numbers.extend(range(first_row, first_row + len(typed_columns[0])))
            return
        for offset, values in enumerate(zip(*typed_columns, strict=True)):
            if offset not in bad:
                chunk.valid_rows.append(dict(zip(names, values, strict=True)))
                chunk.valid_row_numbers.append(first_row + offset)


def merge_keys(chunk_digests: Iterable[KeyDigests]) -> KeyMerge:
    """Find keys used by more than one row across all chunks, given in any order (first occurrence wins)."""
    groups: dict[tuple[str, tuple[str, ...]], list[KeyRun]] = {}
    for digests in chunk_digests:
        for run in digests.runs:
            groups.setdefault((run.code, run.columns), []).append(run)
    errors: list[RowError] = []
    newly_invalid: set[int] = set()
    for (code, columns), runs in groups.items():
        streams = [
            zip(run.keys, run.rows, repeat(index), range(len(run.keys))) for index, run in enumerate(runs)
        ]
        previous: str | None = None
        first = 0
        for key, row, index, position in heapq.merge(*streams):
            if key != previous:
                previous, first = key, row
                continue
            if row == first:  # the same row handed in twice (overlapping chunks): not a duplicate
                continue
            run = runs[index]
            errors.append(_duplicate_error(code, columns, row, first, run.values[position]))
            if run.valid[position]:
                newly_invalid.add(row)
    errors.sort(key=lambda error: (error.row, error.column))
    return KeyMerge(errors=errors, newly_invalid_rows=sorted(newly_invalid))


def find_duplicates(chunk_digests: Iterable[KeyDigests]) -> list[RowError]:
    """Return a RowError for every row whose key an earlier row of the file already has."""
    return merge_keys(chunk_digests).errors


def _duplicate_error(code: str, columns: tuple[str, ...], row: int, first: int, value: str) -> RowError:
    column = ", ".join(columns)
    if code == "primaryKey":
        what = "the primary key must be unique"
    else:
        what = "values in this column must be unique"
    label = "column" if len(columns) == 1 else "columns"
    message = f'Row {row}, {label} "{column}": "{_shown(value)}" is already used by row {first}; {what}.'
    return RowError(row, column, code, message, value)
