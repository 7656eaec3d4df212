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
Memory of the merge: the runs it is given (about 60 bytes per key held in Python) plus a sorted list of
their keys (about 16 bytes per key).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import operator
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from itertools import compress, islice, repeat
from operator import attrgetter, itemgetter
from time import monotonic as time_monotonic
from typing import Any, Final

from core.csvformat import Columns, Records
from core.mapping import ColumnMapping
from core.patterns import PatternTooSlow, is_linear, unmatched_offsets
from core.patterns import re_constants as _sre
from core.patterns import re_parser as _sre_parse
from core.tableschema import (
    DATE_RE,
    DATETIME_RE,
    DURATION_RE,
    EMAIL_RE,
    END_OF_DAY,
    INT64_MAX,
    INT64_MIN,
    SPECIAL_NUMBERS,
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
BATCH_ROWS: Final = 512
PATTERN_BATCH_SECONDS: Final = 5.0  # for a pattern matched in a child process (see _GuardedPattern)
PATTERN_CHUNK_SECONDS: Final = 60.0
JOINED_CHARS: Final = 65_536  # of line-joined cells matched in one call (see _unmatched)
PATTERN_LEAST_SECONDS: Final = 0.5  # a batch given less would fail a fast pattern: the chunk's time is up
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


class _RowErrorDraft:
    """RowError's layout without its frozen __setattr__, to build errors fast (see _row_error)."""

    __slots__ = RowError.__slots__
    row: int
    column: str
    code: str
    message: str
    value: str


def _row_error(row: int, column: str, code: str, message: str, value: str) -> RowError:
    """Return RowError(row, column, code, message, value), built three times faster.

    A frozen dataclass sets each field through object.__setattr__, the slowest way to set an attribute, and
    errors come by the thousand; a draft with the same slots is filled and then given RowError's class.
    """
    draft = _RowErrorDraft()
    draft.row = row
    draft.column = column
    draft.code = code
    draft.message = message
    draft.value = value
    draft.__class__ = RowError  # type: ignore[assignment]
    return draft  # type: ignore[return-value]


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


def _where(flags: Iterable[object]) -> list[int]:
    """Return the offsets of the true flags, in C."""
    return list(compress(itertools.count(), flags))


def _positions(items: list[Any], target: object) -> list[int]:
    """Return the offsets of `target` (None, True, False or a sentinel) in items, scanning in C.

    target is put at the end for the time of the scan, so the last look finds it instead of raising.
    """
    positions: list[int] = []
    end = len(items)
    items.append(target)
    index = items.index(target)
    while index < end:
        positions.append(index)
        index = items.index(target, index + 1)
    items.pop()
    return positions


# A column reader returns the cells' typed values, the offsets of the cells that are certainly not of the
# field's type (the plain "type" error) and the offsets of the cells it cannot vouch for, which are read
# again one by one: a reader may doubt a good cell, never pass a bad one. Both kinds have None as value.
# Constraint checks work the same way on the typed values.
ColumnRead = tuple[list[Any], list[int], list[int]]
ColumnReader = Callable[[Sequence[str]], ColumnRead]
Finder = Callable[[str], Iterator[re.Match[str]]]


def _parsed(parse: Callable[[str], Any], cells: Sequence[str]) -> tuple[list[Any], list[int]]:
    """Return parse mapped over cells in C, with None where it raised ValueError, and those offsets.

    map() stops at the first exception; list.extend keeps what it had appended, so reading goes on after
    the failing cell. A bad cell costs one exception, not a slow path for the whole column.
    """
    values: list[Any] = []
    failed: list[int] = []
    rest = iter(cells)
    while True:
        try:
            values.extend(map(parse, rest))
        except ValueError:
            failed.append(len(values))
            values.append(None)
        else:
            return values, failed


def _cells_at(text: str, positions: Iterable[int]) -> list[int]:
    """Return the offsets of the cells of text (","-joined cells) holding the (ascending) positions."""
    offsets: list[int] = []
    offset = last = 0
    for position in positions:
        offset += text.count(",", last, position)
        last = position
        if not offsets or offsets[-1] != offset:
            offsets.append(offset)
    return offsets


def _strays(
    cells: Sequence[str], failed: list[int], grammar: dict[int, int | None], odd: Finder, extras: str
) -> list[int]:
    """Return the offsets, beyond failed, of cells holding a character outside a grammar.

    extras are the ASCII characters outside the grammar that the parser (int, float) takes. Text without
    them nor non-ASCII characters needs no further look: substring tests (memchr) are cheaper still than
    str.translate. The cells are joined with commas, which the parsers refuse: a cell holding one is among
    the failed. grammar deletes the characters the grammar is made of and the comma; odd finds the others.
    """
    text = ",".join(cells)
    if text.isascii() and not any(char in text for char in extras):
        return []
    strays = text.translate(grammar)  # str.translate runs in C, far faster than a regex scan
    if not strays or len(strays) == sum(len(cells[offset].translate(grammar)) for offset in failed):
        return []  # every stray character is in a cell the parser refused already
    refused = set(failed)
    if text.count(",") != len(cells) - 1:  # a refused cell holds a comma: look cell by cell
        return [
            offset for offset, cell in enumerate(cells) if offset not in refused and cell.translate(grammar)
        ]
    return [
        offset for offset in _cells_at(text, (found.start() for found in odd(text))) if offset not in refused
    ]


# int() and float() also take whitespace around and "_" between digits; float() also takes inf, nan and
# infinity in any case, all of which hold an "n".
_INTEGER_EXTRAS: Final = " \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f_"
_NUMBER_EXTRAS: Final = _INTEGER_EXTRAS + "nN"
_INTEGER_GRAMMAR: Final = str.maketrans("", "", "0123456789+-,")
_NUMBER_GRAMMAR: Final = str.maketrans("", "", "0123456789+-.eE,")
_INTEGER_ODD: Final = re.compile(r"[^0-9+\-,]+").finditer
_NUMBER_ODD: Final = re.compile(r"[^0-9+\-.eE,]+").finditer


def _integer_column(cells: Sequence[str]) -> ColumnRead:
    # int() also takes spaces, underscores and non-ASCII digits; a cell made of [0-9+-] that int() reads
    # is exactly one INTEGER_RE matches. The 64-bit range is checked on the typed column (_int64_check).
    values, failed = _parsed(int, cells)
    strays = _strays(cells, failed, _INTEGER_GRAMMAR, _INTEGER_ODD, _INTEGER_EXTRAS)
    for offset in strays:
        values[offset] = None
    return values, failed + strays, []


def _special_number(cell: str) -> bool:
    """Say whether cell is NaN, INF or -INF in some case (read_number reads them)."""
    return cell.isascii() and cell.upper() in SPECIAL_NUMBERS


def _number_column(cells: Sequence[str]) -> ColumnRead:
    # Made of [0-9+-.eE], what float() reads is exactly what NUMBER_RE matches. NaN and INF, which float()
    # reads too, are read again (they are numbers); what float() refuses is no number.
    values, failed = _parsed(float, cells)
    strays = _strays(cells, failed, _NUMBER_GRAMMAR, _NUMBER_ODD, _NUMBER_EXTRAS)
    for offset in strays:
        values[offset] = None
    special = [offset for offset in strays if _special_number(cells[offset])]
    if special:
        strays = [offset for offset in strays if not _special_number(cells[offset])]
    return values, failed + strays, special


_DIGITS_AS_ZERO: Final = str.maketrans("123456789", "000000000")


def _misshapen(
    cells: Sequence[str], failed: list[int], fullmatch: Callable[[str], object]
) -> tuple[list[int], set[str] | None]:
    """Return the offsets, beyond failed, of cells that fullmatch refuses, and the shapes of the others.

    Only for patterns that treat every ASCII digit alike ([0-9], never a digit literal): then a cell
    matches exactly when its shape (each digit written 0) does, and a column has a handful of shapes.
    The shapes are None when a cell holds a line break (the cells are then checked one by one).
    """
    count = len(cells)
    if len(failed) == count:
        return [], set()
    if failed:  # refused cells are left out anyway: give them a good cell's shape
        refused = set(failed)
        good = cells[next(offset for offset in range(count) if offset not in refused)]
        cells = list(cells)
        for offset in failed:
            cells[offset] = good
    shapes = "\n".join(cells).translate(_DIGITS_AS_ZERO)
    first = shapes.partition("\n")[0]
    if shapes == "\n".join(repeat(first, count)) and fullmatch(first) is not None:
        return [], {first}
    refused = set(failed)
    if shapes.count("\n") != count - 1:  # a cell holds a line break: check cell by cell
        found = [
            offset for offset, cell in enumerate(cells) if offset not in refused and fullmatch(cell) is None
        ]
        return found, None
    each = shapes.split("\n")
    distinct = set(each)
    wrong = {shape for shape in distinct if fullmatch(shape) is None}
    if not wrong:
        return [], distinct
    found = [offset for offset, shape in enumerate(each) if shape in wrong and offset not in refused]
    return found, distinct - wrong


def _shaped(
    pattern: re.Pattern[str], parse: Callable[[str], Any], cells: Sequence[str]
) -> tuple[list[Any], list[int], set[str] | None]:
    """Parse in C, then check the layout of the parsed cells (fromisoformat and int() take more).

    Return the values, the refused offsets and the shapes of the good cells (see _misshapen).
    """
    values, failed = _parsed(parse, cells)
    misshapen, shapes = _misshapen(cells, failed, pattern.fullmatch)
    for offset in misshapen:
        values[offset] = None
    return values, failed + misshapen, shapes


def _shaped_column(pattern: re.Pattern[str], parse: Callable[[str], Any]) -> ColumnReader:
    """Return a reader that parses in C and checks the layout of the parsed cells (see _shaped)."""

    def read(cells: Sequence[str]) -> ColumnRead:
        values, refused, _shapes = _shaped(pattern, parse, cells)
        return values, refused, []

    return read


def _unmatched(pattern: re.Pattern[str]) -> Callable[[Sequence[str]], list[int]]:
    """Return a function giving the offsets of cells that may not fully match pattern.

    The cells are joined with line breaks and matched as one text, so a run of good cells costs one regex
    call; after a cell that stops the match, matching resumes at the next cell. Only for patterns that
    cannot match a line break (see _line_safe); a cell holding one sends the column cell by cell.
    """
    unicode = _joined_prefix(pattern.pattern)
    ascii_only = _joined_prefix(_ASCII_TWINS.get(pattern.pattern, pattern.pattern))
    fullmatch = pattern.fullmatch

    def unmatched(cells: Sequence[str]) -> list[int]:
        text = "\n".join(cells)
        if text.count("\n") != len(cells) - 1:
            return [offset for offset, cell in enumerate(cells) if fullmatch(cell) is None]
        prefix = ascii_only if text.isascii() else unicode
        suspects: list[int] = []
        position, offset, end = 0, 0, len(text)
        while True:
            # One call covers whole cells of about JOINED_CHARS: re holds the GIL for a call, and a pattern
            # may take dozens of steps per character even on cells that match.
            stop = text.find("\n", position + JOINED_CHARS)
            stop = end if stop < 0 else stop
            found = prefix(text, position, stop)
            scan = position
            if found is not None:
                scan = found.end()
                if scan == stop:  # every cell up to stop matched
                    if stop == end:
                        return suspects
                    offset += text.count("\n", position, stop) + 1
                    position = stop + 1
                    continue
                offset += text.count("\n", position, scan)
                if text[scan] == "\n":  # the match took that cell whole and stopped at the next one
                    offset, scan = offset + 1, scan + 1
            suspects.append(offset)
            position = text.find("\n", scan) + 1
            if position == 0:
                return suspects
            offset += 1

    return unmatched


def _joined_prefix(body: str) -> Callable[[str, int, int], re.Match[str] | None]:
    """Return the match method of body, then body again after each line break, as often as it goes."""
    return re.compile(rf"(?:{body})(?:\n(?:{body}))*").match


# On ASCII text the class \s is these characters. Spelled out, re tests a class with a bitmap, not
# character by character: same matches, fewer steps.
_ASCII_SPACE: Final = r"\t\n\x0b\x0c\r\x1c-\x1f "
_ASCII_TWINS: Final = {
    EMAIL_RE.pattern: rf"[^@{_ASCII_SPACE}]++@[^@{_ASCII_SPACE}.]++(?:\.[^@{_ASCII_SPACE}.]++)++",
    URI_RE.pattern: rf"[A-Za-z][A-Za-z0-9+.\-]*+:[^{_ASCII_SPACE}]+",
}


def _matching_column(pattern: re.Pattern[str]) -> ColumnReader:
    """Check that cells match a pattern that cannot match a line break; the values are the cells."""
    unmatched = _unmatched(pattern)
    fullmatch = pattern.fullmatch

    def read(cells: Sequence[str]) -> ColumnRead:
        values: list[Any] = list(cells)
        refused = [offset for offset in unmatched(cells) if fullmatch(cells[offset]) is None]
        for offset in refused:
            values[offset] = None
        return values, refused, []

    return read


_date_column = _shaped_column(DATE_RE, date.fromisoformat)
_year_column = _shaped_column(YEAR_RE, int)
_tzinfo = attrgetter("tzinfo")


def _end_of_day(cells: Sequence[str], refused: list[int], at: int) -> tuple[list[int], list[int]]:
    """Split refused offsets into the sure ones and those at 24:00:00, to read again (see END_OF_DAY).

    fromisoformat refuses hour 24; read_time and read_datetime read it. at is where a cell's time starts.
    """
    match = END_OF_DAY.match
    again = [offset for offset in refused if match(cells[offset], at) is not None]
    if not again:
        return refused, []
    return [offset for offset in refused if match(cells[offset], at) is None], again


def _time_column(cells: Sequence[str]) -> ColumnRead:
    values, refused, _shapes = _shaped(TIME_RE, time.fromisoformat, cells)
    return values, *_end_of_day(cells, refused, 0)


def _datetime_column(cells: Sequence[str]) -> ColumnRead:
    moments, refused, unsure = _datetime_moments(cells)
    refused, again = _end_of_day(cells, refused, 11)
    return moments, refused, unsure + again


def _datetime_moments(cells: Sequence[str]) -> ColumnRead:
    moments, refused, shapes = _shaped(DATETIME_RE, datetime.fromisoformat, cells)
    # Without an offset (a "+", or a "-" past the date) a moment is naive or in UTC ("Z"): nothing to convert.
    if shapes is not None and not any("+" in shape or shape.count("-") > 2 for shape in shapes):
        return moments, refused, []
    if set(map(_tzinfo, filter(None, moments))) <= {None, UTC}:
        return moments, refused, []
    try:
        moments = [m.astimezone(UTC) if m is not None and m.tzinfo is not None else m for m in moments]
    except OverflowError:  # a moment before year 1 or after 9999 once in UTC: not a datetime
        for offset, moment in enumerate(moments):
            if moment is not None and moment.tzinfo is not None:
                try:
                    moments[offset] = moment.astimezone(UTC)
                except OverflowError:
                    moments[offset] = None
                    refused.append(offset)
    return moments, refused, []


def _boolean_column(table: dict[str, bool]) -> ColumnReader:
    get = table.get

    def read(cells: Sequence[str]) -> ColumnRead:
        values = list(map(get, cells))
        return values, _positions(values, None), []

    return read


def _identity_column(cells: Sequence[str]) -> ColumnRead:
    return list(cells), [], []


def _generic_column(reader: Callable[[str], Any]) -> ColumnReader:
    """Read cell by cell with the field's reader (in C's map); cells it refuses are read again, for why."""

    def read(cells: Sequence[str]) -> ColumnRead:
        values, failed = _parsed(reader, cells)
        return values, [], failed

    return read


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


def _column_reader(item: Field) -> ColumnReader | None:
    """Return the field's whole-column reader, if it has one (else cells are parsed with cell_reader)."""
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


# Which patterns may be matched against line-joined cells (see _unmatched): those that cannot match a line
# break, nor look past the cell. Decided on the parsed pattern; anything not known to be safe is not.
_LINE_BREAK: Final = ord("\n")
# \b sees a line break as it sees a cell's edge (no word character); ^, $, \A and \Z see them differently,
# and \B does not match an empty cell alone.
_SAFE_ASSERTIONS: Final = frozenset((_sre.AT_BOUNDARY,))
_CATEGORIES_WITHOUT_LINE_BREAK: Final = frozenset(
    (_sre.CATEGORY_DIGIT, _sre.CATEGORY_WORD, _sre.CATEGORY_NOT_SPACE)
)
_CATEGORIES_WITH_LINE_BREAK: Final = frozenset(
    (_sre.CATEGORY_NOT_DIGIT, _sre.CATEGORY_SPACE, _sre.CATEGORY_NOT_WORD)
)


def _line_safe(pattern: re.Pattern[str]) -> bool:
    """Say whether pattern can be checked on line-joined cells (_unmatched)."""
    if pattern.flags & ~re.UNICODE:
        return False
    try:
        parsed = _sre_parse.parse(pattern.pattern)
    except re.error:
        return False
    return not (parsed.state.flags & ~re.UNICODE or _may_take_line_break(parsed))


def _may_take_line_break(items: Any) -> bool:
    """Say whether a parsed pattern may match a line break or see past a cell (an unknown node may)."""
    return any(_node_may_take_line_break(op, argument) for op, argument in items)


def _node_may_take_line_break(op: Any, argument: Any) -> bool:
    if op is _sre.LITERAL:
        return bool(argument == _LINE_BREAK)
    if op is _sre.IN:
        return _class_takes_line_break(argument)
    if op is _sre.AT:
        return argument not in _SAFE_ASSERTIONS
    if op is _sre.ANY:
        return False  # "." does not match a line break
    if op is _sre.SUBPATTERN and (argument[1] or argument[2]):
        return True  # it sets flags, such as DOTALL
    parts = _SUBPATTERNS.get(op)
    return parts is None or any(_may_take_line_break(part) for part in parts(argument))


# The parts of the nodes holding patterns. A lookaround that cannot match a line break sees the same inside
# a cell whether the cell stands alone or between line breaks.
_SUBPATTERNS: Final[dict[Any, Callable[[Any], list[Any]]]] = {
    _sre.MAX_REPEAT: lambda argument: [argument[2]],
    _sre.MIN_REPEAT: lambda argument: [argument[2]],
    _sre.POSSESSIVE_REPEAT: lambda argument: [argument[2]],
    _sre.SUBPATTERN: lambda argument: [argument[3]],
    _sre.ATOMIC_GROUP: lambda argument: [argument],
    _sre.BRANCH: lambda argument: list(argument[1]),
    _sre.ASSERT: lambda argument: [argument[1]],
    _sre.ASSERT_NOT: lambda argument: [argument[1]],
}


def _class_takes_line_break(items: list[tuple[Any, Any]]) -> bool:
    negated = False
    covered = False
    for op, argument in items:
        if op is _sre.NEGATE:
            negated = True
        elif op is _sre.LITERAL:
            covered = covered or argument == _LINE_BREAK
        elif op is _sre.RANGE:
            covered = covered or argument[0] <= _LINE_BREAK <= argument[1]
        elif op is _sre.CATEGORY and argument in _CATEGORIES_WITH_LINE_BREAK:
            covered = True
        elif not (op is _sre.CATEGORY and argument in _CATEGORIES_WITHOUT_LINE_BREAK):
            return True
    return covered != negated


_TYPE_DETAILS: Final = {
    ("string", "email"): "is not an email address",
    ("string", "uri"): "is not a URI (it needs a scheme, such as https:)",
    ("string", "uuid"): "is not a UUID",
    ("string", "binary"): "is not base64 data",
    ("integer", "default"): "is not an integer",
    ("number", "default"): "is not a number",
    ("date", "default"): "is not a date in the form YYYY-MM-DD",
    ("datetime", "default"): (
        "is not a date and time in the form YYYY-MM-DDThh:mm:ss (seconds optional, with at most 6 "
        "decimals; optionally with Z or an offset)"
    ),
    ("time", "default"): "is not a time in the form hh:mm:ss (with at most 6 decimals of a second)",
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
        if item.type == "integer" and item.group_char:
            detail += f" (thousands separator {item.group_char!r})"
        elif item.group_char or item.decimal_char != ".":
            detail += f" (decimal mark {item.decimal_char!r}, thousands separator {item.group_char!r})"
        return detail
    return _TYPE_DETAILS.get((item.type, item.format), f"is not a valid {item.type}")


def _written(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Span:
    """A typed column (by its order key) with its least and greatest value, each computed once if asked."""

    __slots__ = ("_high", "_low", "keyed")

    def __init__(self, values: list[Any], key: Callable[[Any], Any] | None) -> None:
        self.keyed = values if key is None else list(map(key, values))
        self._low: Any = _UNSET
        self._high: Any = _UNSET

    @property
    def low(self) -> Any:
        """Return the least value."""
        if self._low is _UNSET:
            self._low = min(self.keyed)
        return self._low

    @property
    def high(self) -> Any:
        """Return the greatest value."""
        if self._high is _UNSET:
            self._high = max(self.keyed)
        return self._high


_UNSET: Final = object()

# A constraint on typed values: the code, a whole-column check, a one-value test and the message detail.
# Column checks get the typed column (every value present and of the field's type) and return the offsets
# that may break the constraint; the test decides each of those.
ColumnCheck = Callable[[list[Any], _Span], list[int]]
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
        check = _bound_check(code in ("minimum", "exclusiveMinimum"), holds, breaks, limit)
        text = template.format(_written(source[code]))
        found.append(_Constraint(code, check, _bound_test(holds, key, limit), _fixed(text)))
    return found


def _bound_test(holds: Callable[[Any, Any], bool], key: Callable[[Any], Any], limit: Any) -> ValueTest:
    def test(value: Any) -> bool:
        return holds(key(value), limit)

    return test


def _bound_check(
    lower: bool, holds: Callable[[Any, Any], bool], breaks: Callable[[Any, Any], bool], limit: Any
) -> ColumnCheck:
    # Naive and aware datetimes (and times) only compare through their order key: the span holds keys.
    def check(_values: list[Any], span: _Span) -> list[int]:
        if holds(span.low if lower else span.high, limit):
            return []
        return _where(map(breaks, span.keyed, repeat(limit)))

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
    def check(values: list[Any], _span: _Span) -> list[int]:
        lengths = list(map(len, values))
        if not breaks(extreme(lengths), limit):
            return []
        return _where(map(breaks, lengths, repeat(limit)))

    return check


def _pattern_constraint(item: Field, time_left: PatternTime) -> list[_Constraint]:
    pattern = item.constraints.pattern
    if pattern is None:
        return []
    compiled = compile_pattern(pattern)
    text = f'does not match the pattern "{pattern}"'
    # In-process only when cheap per character and checkable on line-joined cells: each failing cell then
    # ends one short regex call, so the GIL is let go between them.
    if not (is_linear(compiled.pattern) and _line_safe(compiled)):
        guarded = _GuardedPattern(item.name, pattern, compiled.pattern, time_left)
        return [_Constraint("pattern", guarded.check, guarded.test, _fixed(text))]
    unmatched = _unmatched(compiled)
    fullmatch = compiled.fullmatch
    return [
        _Constraint(
            "pattern",
            lambda values, _span: unmatched(values),
            lambda value: fullmatch(value) is not None,
            _fixed(text),
        )
    ]


@dataclass
class PatternTime:
    """The time patterns matched in a child process may take: per batch of cells, and per chunk in all.

    One per Validator, shared by its fields. `patience` multiplies both: applying checks the rows again
    and gives them more time than validating did, so rows that passed in time do not fail on a busy host.
    """

    patience: float = 1.0
    spent: dict[tuple[str, str], float] = field(default_factory=dict)  # per (field, pattern), this chunk

    def next_batch(self) -> float:
        """Return the seconds the next batch may take; PatternTooSlow when the chunk has too little left."""
        left = PATTERN_CHUNK_SECONDS * self.patience - sum(self.spent.values())
        if left < PATTERN_LEAST_SECONDS * self.patience:
            raise self.used_up()
        return min(PATTERN_BATCH_SECONDS * self.patience, left)

    def cut_short(self, seconds: float) -> bool:
        """Say whether a batch got less than its usual time, because the chunk had no more left."""
        return seconds < PATTERN_BATCH_SECONDS * self.patience

    def used_up(self) -> PatternTooSlow:
        """Return the error of a chunk whose patterns used up its time, naming the pattern that took most."""
        message = (
            f"Patterns used up the {PATTERN_CHUNK_SECONDS * self.patience:g} seconds one chunk of rows gets"
        )
        if self.spent:
            (name, pattern), seconds = max(self.spent.items(), key=itemgetter(1))
            message += f'; the pattern of field "{name}" ("{pattern}") took {seconds:.1f} of them'
        return PatternTooSlow(f"{message}. {_PATTERN_ADVICE}")


_PATTERN_ADVICE: Final = (
    "Nested or adjacent repeats that can match the same text, such as (a+)+ or \\d+\\d+, take time that "
    "grows steeply with a cell's length: rewrite the pattern without them."
)


class _GuardedPattern:
    """A pattern not known to be fast (see core.patterns), matched in a child process within a PatternTime."""

    def __init__(self, field_name: str, pattern: str, source: str, time_left: PatternTime) -> None:
        self.name, self.source = (field_name, pattern), source
        self.time_left = time_left
        self.verdicts: dict[Any, bool] = {}  # the last batch's cells: whether each matches

    def check(self, values: list[Any], _span: _Span) -> list[int]:
        """Return the offsets of the values that do not match (exact: no suspects)."""
        offsets = self._unmatched(values)
        self.verdicts = dict.fromkeys(values, True)
        self.verdicts.update((values[offset], False) for offset in offsets)
        return offsets

    def test(self, value: Any) -> bool:
        """Say whether one value matches (the last batch's verdict when it was in it)."""
        verdict = self.verdicts.get(value)
        return not self._unmatched([value]) if verdict is None else verdict

    def _unmatched(self, cells: list[Any]) -> list[int]:
        time_left = self.time_left
        seconds = time_left.next_batch()
        started = time_monotonic()
        try:
            return unmatched_offsets(self.source, cells, seconds=seconds)
        except PatternTooSlow as error:
            reason = str(error)
        finally:
            time_left.spent[self.name] = time_left.spent.get(self.name, 0.0) + time_monotonic() - started
        if time_left.cut_short(seconds):  # the chunk's time ran out, whichever pattern ran last
            raise time_left.used_up()
        cells_text = "1 cell" if len(cells) == 1 else f"{len(cells):,} cells"
        raise PatternTooSlow(
            f'The pattern of field "{self.name[0]}" ("{self.name[1]}") {reason} (checking {cells_text}). '
            + _PATTERN_ADVICE
        )


def _enum_constraint(item: Field) -> list[_Constraint]:
    items = item.constraints.enum
    if items is None:
        return []
    allowed = frozenset(items)
    outside = dict.fromkeys(allowed, False).get  # True for a value not allowed
    listed = ", ".join(_written(value) for value in item.constraints.source["enum"][:10])
    if len(items) > 10:
        listed += f" and {len(items) - 10} more"

    def check(values: list[Any], _span: _Span) -> list[int]:
        if allowed.issuperset(values):
            return []
        return _where(map(outside, values, repeat(True)))

    text = f"is not one of the allowed values: {listed}"
    return [_Constraint("enum", check, allowed.__contains__, _fixed(text))]


def _int64_check(values: list[Any], span: _Span) -> list[int]:
    # No value is larger than the sum of all of them in magnitude, which sum() adds in C while it fits in 64
    # bits: one pass, where min and max are two.
    if sum(map(abs, values)) <= INT64_MAX or (span.low >= INT64_MIN and span.high <= INT64_MAX):
        return []
    return [offset for offset, value in enumerate(values) if not INT64_MIN <= value <= INT64_MAX]


def _finite_check(values: list[Any], _span: _Span) -> list[int]:
    # The sum of finite numbers is finite unless it overflows, which only costs this slower look.
    if math.isfinite(sum(values)):
        return []
    return _where(map(operator.not_, map(math.isfinite, values)))


def _type_range_check(item: Field, column_reader: ColumnReader | None) -> ColumnCheck | None:
    """Return the check of values the type's reader refuses though the column reader took them, if any."""
    if item.type == "integer" and column_reader is _integer_column:
        return _int64_check  # read_integer refuses integers beyond 64 bits
    if item.type == "number":
        return _finite_check  # read_number refuses overflow to infinity; NaN breaks every bound
    return None


def _fill(values: list[Any], suspects: list[int]) -> None:
    """Put a good value at the suspects' offsets, so column checks see one type (suspects are read again)."""
    refused = set(suspects)
    good = values[next(offset for offset in range(len(values)) if offset not in refused)]
    for offset in refused:
        values[offset] = good


class _FieldRule:
    """How to read and check one field's column; built once per Validator."""

    def __init__(
        self,
        item: Field,
        source: int | None,
        missing: frozenset[str],
        pattern_time: PatternTime | None = None,
    ) -> None:
        self.name = item.name
        self.source = source
        self.missing = missing
        self.only_empty_missing = missing == frozenset(("",))
        self.none_if_missing = dict.fromkeys(missing).get
        self.required = item.constraints.required
        self.reader = cell_reader(item)
        column_reader = _column_reader(item)
        self.identity = column_reader is _identity_column
        self.column_reader = column_reader or _generic_column(self.reader)
        self.type_range = _type_range_check(item, column_reader)
        # Naive and aware datetimes (and times) only compare through their order key.
        self.order = order_key(item.type) if item.type in ("datetime", "time") else None
        self.type_detail = _type_detail(item)
        self.overflow_detail = _OVERFLOW_DETAILS.get(item.type, self.type_detail)
        self.constraints = (
            _bound_constraints(item)
            + _length_constraints(item)
            + _pattern_constraint(item, pattern_time or PatternTime())
            + _enum_constraint(item)
        )
        cheap = self.identity or item.type == "boolean"  # remembering costs as much as reading these
        self._remembered = None if cheap and not self.constraints else _Remembered(self._check)
        # Where the field refuses every missing value, missing cells come out among the refused ones: no
        # scan for them first, while they are few (each costs a refusal).
        try:
            self.missing_refused = all(self.read_one(value)[1] is not None for value in missing)
        except PatternTooSlow as error:
            listed = ", ".join(json.dumps(value, ensure_ascii=False) for value in sorted(missing))
            raise PatternTooSlow(f"Checking the schema's missing values ({listed}): {error}") from None
        self.look_for_missing = not self.missing_refused

    def read_one(self, cell: str) -> tuple[Any, str | None, str]:
        """Read and check one present cell: (typed value or None, error code or None, detail)."""
        try:
            value = self.reader(cell)
        except OutOfRange:
            return None, "type", self.overflow_detail
        except ValueError:
            return None, "type", self.type_detail
        code, detail = self._broken(value)
        return (value if code is None else None), code, detail

    def _broken(self, value: Any) -> tuple[str | None, str]:
        for constraint in self.constraints:
            if not constraint.test(value):
                return constraint.code, constraint.detail(value)
        return None, ""

    def check(self, cells: Sequence[str]) -> tuple[list[Any], list[Problem]]:
        """Read and check a column of cells: typed values (None if missing or bad) and problems."""
        remembered = self._remembered
        if remembered is not None:
            if remembered.on:
                return remembered.check(cells)
            self._remembered = None
        return self._check(cells)

    def _check(self, cells: Sequence[str]) -> tuple[list[Any], list[Problem]]:
        if not self.look_for_missing:
            typed, problems = self._check_present(cells)
            if problems:
                problems = self._sort_out_missing(cells, problems)
            return typed, problems
        has_missing = "" in cells if self.only_empty_missing else not self.missing.isdisjoint(cells)
        if self.missing_refused and not has_missing:
            self.look_for_missing = False
        if not has_missing:
            return self._check_present(cells)
        if self.only_empty_missing:
            flags = list(map(bool, cells))
        else:
            flags = list(map(operator.not_, map(self.missing.__contains__, cells)))
        typed, problems = self._check_present(list(compress(cells, flags)))
        if problems:
            positions = list(compress(range(len(cells)), flags))
            problems = [(positions[offset], code, detail) for offset, code, detail in problems]
        if self.identity:
            full: list[Any] = list(map(self.none_if_missing, cells, cells))
            for offset, _code, _detail in problems:
                full[offset] = None
            if self.required:
                problems.extend((offset, "required", "") for offset in _positions(flags, False))
            return full, problems
        gaps = _positions(flags, False)
        if self.required:
            problems.extend((offset, "required", "") for offset in gaps)
        return _spread(typed, flags, gaps), problems

    def _sort_out_missing(self, cells: Sequence[str], problems: list[Problem]) -> list[Problem]:
        """Turn the refusals of missing cells into what a missing cell gets: nothing, or "required"."""
        missing = self.missing
        gaps = [offset for offset, _code, _detail in problems if cells[offset] in missing]
        if not gaps:
            return problems
        self.look_for_missing = len(gaps) * _MANY_MISSING_SHARE > len(cells)
        if self.required:
            gap_set = set(gaps)
            return [
                (offset, "required", "") if offset in gap_set else (offset, code, detail)
                for offset, code, detail in problems
            ]
        return [problem for problem in problems if cells[problem[0]] not in missing]

    def _check_present(self, cells: Sequence[str]) -> tuple[list[Any], list[Problem]]:
        if not cells:
            return [], []
        typed, refused, unsure = self.column_reader(cells)
        judged: list[int] = []
        if len(refused) + len(unsure) < len(typed) and (self.type_range is not None or self.constraints):
            if refused or unsure:
                _fill(typed, refused + unsure)
            span = _Span(typed, self.order)
            if self.type_range is not None:
                unsure = unsure + self.type_range(typed, span)
            for constraint in self.constraints:
                judged.extend(constraint.column_check(typed, span))
        if not refused and not unsure and not judged:
            return typed, []
        return typed, self._decide(cells, typed, refused, set(unsure).difference(refused), judged)

    def _decide(
        self, cells: Sequence[str], typed: list[Any], refused: list[int], unsure: set[int], judged: list[int]
    ) -> list[Problem]:
        """Settle the doubtful cells: refused ones, re-read ones, tested values; set typed accordingly."""
        problems: list[Problem] = [(offset, "type", self.type_detail) for offset in refused]
        for offset in refused:
            typed[offset] = None
        for offset in unsure:
            typed[offset], code, detail = self.read_one(cells[offset])
            if code is not None:
                problems.append((offset, code, detail))
        for offset in set(judged).difference(refused, unsure):
            code, detail = self._broken(typed[offset])
            if code is not None:
                typed[offset] = None
                problems.append((offset, code, detail))
        problems.sort()
        return problems


_MANY_MISSING_SHARE: Final = 16  # more than 1 cell in 16 missing: look for missing cells first
_MEMO_ENTRIES: Final = 512
_MEMO_CELL_CHARS: Final = 64
_OTHER: Final = object()


class _Verdicts(dict[str, Any]):
    """The typed value of each cell known good, _OTHER for a cell known bad or unknown.

    d[cell] is cheaper than d.get(cell, default); known bad cells are in it, so only unknown ones cost a
    __missing__ call.
    """

    __slots__ = ()

    def __missing__(self, cell: str) -> Any:
        return _OTHER


class _Remembered:
    """Verdicts on a field's distinct short cells, for columns that repeat a few values (codes, dates, flags).

    A cell seen before costs one dict lookup instead of parsing and checking. A column is read through it
    only while that pays: a first batch of nearly all distinct cells (more than 7 in 8), or a full memory
    (_MEMO_ENTRIES cells of at most _MEMO_CELL_CHARS characters) that knows less than half a batch, turns it
    off for good. A few hundred distinct values (the days of a year) fill the memory over a few batches.
    """

    def __init__(self, check: Callable[[Sequence[str]], tuple[list[Any], list[Problem]]]) -> None:
        self.check_cells = check
        self.values: dict[str, Any] = _Verdicts()  # every cell remembered
        self.faults: dict[str, tuple[str, str]] = {}  # the bad ones: (code, detail)
        self.on = True

    def check(self, cells: Sequence[str]) -> tuple[list[Any], list[Problem]]:
        """Read and check a column as check_cells does, from memory where the cell is known."""
        if not self.values:  # nothing known yet: no look-ups, only learning
            first_typed, first_problems = self.check_cells(cells)
            self._remember(cells, first_typed, first_problems, len(cells))
            return first_typed, first_problems
        typed = list(map(self.values.__getitem__, cells))
        problems: list[Problem] = []
        unknown: list[int] = []
        faults = self.faults
        for offset in _positions(typed, _OTHER):
            fault = faults.get(cells[offset])
            if fault is None:
                unknown.append(offset)
            else:
                typed[offset] = None
                problems.append((offset, *fault))
        if unknown:
            self._learn(list(map(cells.__getitem__, unknown)), unknown, typed, problems)
        return typed, problems

    def _learn(self, cells: list[str], offsets: list[int], typed: list[Any], problems: list[Problem]) -> None:
        """Check the cells new to the memory (at offsets in the batch), fill in their verdicts, remember."""
        values, found = self.check_cells(cells)
        for offset, value in zip(offsets, values, strict=True):
            typed[offset] = value
        problems.extend((offsets[index], code, detail) for index, code, detail in found)
        self._remember(cells, values, found, len(typed))

    def _remember(self, cells: Sequence[str], values: list[Any], found: list[Problem], batch: int) -> None:
        """Remember the verdicts on cells (new to the memory, from a batch of batch cells), if that pays."""
        known = len(self.values)
        if (known == 0 and len(set(cells)) * 8 > batch * 7) or (
            known >= _MEMO_ENTRIES and len(cells) * 2 > batch
        ):
            self.on = False
            self.values, self.faults = {}, {}
            return
        faulty = {index: (code, detail) for index, code, detail in found}
        for index, cell in enumerate(cells):
            if known >= _MEMO_ENTRIES:
                return
            if len(cell) > _MEMO_CELL_CHARS or cell in self.values:
                continue
            fault = faulty.get(index)
            if fault is None:
                self.values[cell] = values[index]
            else:
                self.values[cell] = _OTHER
                self.faults[cell] = fault
            known += 1


def _spread(values: list[Any], flags: list[bool], gaps: list[int]) -> list[Any]:
    """Return values (those of the cells flagged true) with None put at the gaps (where flags are false)."""
    if len(gaps) * 4 < len(values):  # a few gaps: open them in place
        for gap in gaps:
            values.insert(gap, None)
        return values
    present = iter(values)
    return [next(present) if flag else None for flag in flags]


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
        # all() is a quick look for a None (a bad or missing key part); a false value (0, "") only costs the
        # exact look.
        if not all(map(all, parts)) and any(None in part for part in parts):
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
        if isinstance(offsets, range):
            self.rows.extend(range(first_row, first_row + count))
        else:
            self.rows.extend(map(operator.add, offsets, repeat(first_row)))
        self.valid.extend(flags)

    def run(self) -> KeyRun:
        """Return this chunk's keys sorted by key, then row (the sort is stable and rows ascend)."""
        keys = self.keys
        if keys and isinstance(keys[0], str) and max(map(len, keys)) > MAX_PLAIN_KEY_CHARS:
            keys = list(map(_key_text, keys))
        values = self.values
        if values and len(max(values, key=len)) > VALUE_CHARS:
            values = [value[:VALUE_CHARS] for value in values]
        ordered = sorted(keys)
        if ordered == keys:  # keys often come in order (ascending ids): nothing to move
            return KeyRun(self.code, self.columns, keys, self.rows, values, bytes(self.valid))
        gather = _gatherer(sorted(range(len(keys)), key=keys.__getitem__))
        return KeyRun(
            code=self.code,
            columns=self.columns,
            keys=ordered,
            rows=gather(self.rows),
            values=gather(values),
            valid=bytes(gather(self.valid)),
        )


def _gatherer(order: list[int]) -> Callable[[Sequence[Any]], list[Any]]:
    """Return a function giving [items[index] for index in order], in C."""
    if len(order) < 2:
        return lambda items: [items[index] for index in order]
    getter = itemgetter(*order)
    return lambda items: list(getter(items))


# Errors of a ragged row: (field position, column, code, message, value).
Structural = tuple[tuple[int, str, str, str, str], ...]
Taker = Callable[[int], Sequence[Sequence[str]] | Columns]


def _taker(rows: Iterable[Sequence[str]]) -> Taker:
    """Return a function giving the next rows, up to a count; [] at the end.

    read_records' stream gives runs of lines without quotes as Columns, which skip the transposing.
    """
    if isinstance(rows, Records):
        return rows.take
    iterator = iter(rows)
    return lambda count: list(islice(iterator, count))


@dataclass
class _Chunk:
    errors: list[RowError] = field(default_factory=list)  # in row order, then field order
    invalid: int = 0
    valid_rows: list[dict[str, Any]] = field(default_factory=list)
    valid_row_numbers: list[int] = field(default_factory=list)


class Validator:
    """Validates chunks of CSV records (lists of cell strings) against a schema through a column mapping."""

    def __init__(
        self,
        schema: TableSchema,
        mapping: ColumnMapping,
        *,
        batch_rows: int = BATCH_ROWS,
        pattern_patience: float = 1.0,
    ) -> None:
        """Prepare the checks; pattern_patience multiplies the time patterns get (see PatternTime).

        Raises PatternTooSlow (as validating does) when a pattern cannot judge a missing value in time.
        """
        if mapping.field_names != schema.field_names:
            raise ValueError("the column mapping was made for another schema")
        self.schema = schema
        self.mapping = mapping
        self.width = len(mapping.header)
        self.batch_rows = batch_rows
        missing = frozenset(schema.missing_values)
        # A record of several cells, all empty (",,", as spreadsheets leave them), is a blank row: unless
        # "" is a value of the schema. One empty cell alone is a missing value like any other.
        self._finds_blank_rows = self.width > 1 and "" in missing
        self.pattern_time = PatternTime(patience=pattern_patience)
        self._rules = [
            _FieldRule(item, source, missing, self.pattern_time)
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
        take = _taker(rows)
        while True:
            # Rows stream through in batches; a chunk is never held as a whole.
            result = self._validate(take, chunk_rows, first_row, keep_rows)
            if result.row_count == 0:
                return
            yield result
            first_row += result.row_count

    def validate_chunk(
        self, rows: Iterable[Sequence[str]], *, first_row: int, keep_rows: bool = True
    ) -> ChunkResult:
        """Validate one chunk whose first row has the 1-based data row number first_row."""
        return self._validate(_taker(rows), None, first_row, keep_rows)

    def _validate(self, take: Taker, limit: int | None, first_row: int, keep_rows: bool) -> ChunkResult:
        """Validate the next rows from take, up to limit (all if None), as one chunk."""
        self.pattern_time.spent.clear()  # each chunk gets its own time
        collectors = [
            _KeyCollector(code, positions, [self.schema.fields[p] for p in positions])
            for code, positions in self._key_specs
        ]
        chunk = _Chunk()
        row = first_row
        left = limit
        while left is None or left > 0:
            part = take(self.batch_rows if left is None else min(self.batch_rows, left))
            if not part:
                break
            if isinstance(part, Columns) and part.width == self.width:
                self._rows(part.cells, part.count, row, chunk, collectors, keep_rows, ())
            else:
                self._batch(
                    part.records() if isinstance(part, Columns) else part, row, chunk, collectors, keep_rows
                )
            row += len(part)
            left = None if left is None else left - len(part)
        return ChunkResult(
            first_row=first_row,
            row_count=row - first_row,
            invalid_count=chunk.invalid,
            errors=chunk.errors,
            valid_rows=chunk.valid_rows,
            valid_row_numbers=chunk.valid_row_numbers,
            keys=KeyDigests(tuple(collector.run() for collector in collectors)),
        )

    def _batch(
        self,
        batch: Sequence[Sequence[str]],
        first_row: int,
        chunk: _Chunk,
        collectors: list[_KeyCollector],
        keep_rows: bool,
    ) -> None:
        width = self.width
        if set(map(len, batch)) == {width}:
            self._record_rows(batch, first_row, chunk, collectors, keep_rows, ())
            return
        # Ragged rows are rare: runs of regular rows go through as usual, each ragged row on its own.
        start = 0
        for offset, record in enumerate(batch):
            if len(record) != width:
                if start < offset:
                    self._record_rows(
                        batch[start:offset], first_row + start, chunk, collectors, keep_rows, ()
                    )
                self._ragged(record, first_row + offset, chunk, collectors, keep_rows)
                start = offset + 1
        if start < len(batch):
            self._record_rows(batch[start:], first_row + start, chunk, collectors, keep_rows, ())

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
        self._record_rows([fitted], row, chunk, collectors, keep_rows, tuple(extra))

    def _record_rows(
        self,
        batch: Sequence[Sequence[str]],
        first_row: int,
        chunk: _Chunk,
        collectors: list[_KeyCollector],
        keep_rows: bool,
        structural: Structural,
    ) -> None:
        columns = list(zip(*batch, strict=True))
        self._rows(columns, len(batch), first_row, chunk, collectors, keep_rows, structural)

    def _rows(
        self,
        columns: Sequence[Sequence[str]],
        count: int,
        first_row: int,
        chunk: _Chunk,
        collectors: list[_KeyCollector],
        keep_rows: bool,
        structural: Structural,
    ) -> None:
        absent = {entry[0] for entry in structural if entry[2] == "missingCell"}
        typed_columns: list[list[Any]] = []
        problems: list[tuple[int, list[Problem]]] = []  # (field position, its column's problems)
        bad: set[int] = set()
        for position, rule in enumerate(self._rules):
            if rule.source is None or position in absent:
                typed_columns.append([None] * count)
                continue
            try:
                typed, found = rule.check(columns[rule.source])
            except PatternTooSlow as error:  # say where in the file, so the person can look at those rows
                last = first_row + count - 1
                rows = f"Row {first_row:,}" if count == 1 else f"Rows {first_row:,} to {last:,}"
                raise PatternTooSlow(f"{rows}: {error}") from None
            typed_columns.append(typed)
            if found:
                problems.append((position, found))
                bad.update(map(itemgetter(0), found))
        if structural:
            bad.add(0)
        blank = _blank_offsets(columns) if self._finds_blank_rows and not structural else set()
        if blank:  # a blank row gets one error that says so, not one per required field
            problems = [(position, [p for p in listed if p[0] not in blank]) for position, listed in problems]
            problems.append((len(self._rules), [(offset, "blankRow", "") for offset in sorted(blank)]))
            bad |= blank
        for collector in collectors:
            cells = [self._cells(columns, position, count) for position in collector.positions]
            collector.add(typed_columns, cells, first_row, bad)
        self._record_errors(columns, first_row, problems, structural, chunk)
        chunk.invalid += len(bad)
        if keep_rows:
            self._keep(typed_columns, first_row, bad, chunk)

    def _cells(self, columns: Sequence[Sequence[str]], position: int, count: int) -> Sequence[str]:
        source = self._rules[position].source
        return columns[source] if source is not None else ("",) * count

    def _record_errors(
        self,
        columns: Sequence[Sequence[str]],
        first_row: int,
        problems: list[tuple[int, list[Problem]]],
        structural: Structural,
        chunk: _Chunk,
    ) -> None:
        """Add the batch's errors to the chunk in row order, then field order (a cell has one problem)."""
        found = [
            (offset, position, code, detail)
            for position, column_problems in problems
            for offset, code, detail in column_problems
        ]
        found.sort()
        rules = self._rules
        errors: list[RowError] = []
        for offset, position, code, detail in found:  # by the thousand: no call but _row_error
            row = first_row + offset
            if code == "blankRow":
                message = f"Row {row} is blank: every cell is empty."
                errors.append(_row_error(row, "", code, message, ""))
                continue
            rule = rules[position]
            name = rule.name
            cell = columns[rule.source][offset] if rule.source is not None else ""
            if code == "required":
                message = f'Row {row}, column "{name}": a value is required.'
            else:
                shown = cell if len(cell) <= MESSAGE_VALUE_CHARS else _shown(cell)
                message = f'Row {row}, column "{name}": "{shown}" {detail}.'
            errors.append(_row_error(row, name, code, message, cell[:VALUE_CHARS]))
        if structural:  # one ragged row: its structural errors go among its cells' errors, by field
            errors.extend(
                _row_error(first_row, column, code, message, value[:VALUE_CHARS])
                for _position, column, code, message, value in structural
            )
            positions = [position for _offset, position, _code, _detail in found]
            positions.extend(entry[0] for entry in structural)
            errors = [
                error for _position, error in sorted(zip(positions, errors, strict=True), key=itemgetter(0))
            ]
        chunk.errors.extend(errors)

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


def _blank_offsets(columns: Sequence[Sequence[str]]) -> set[int]:
    """Return the offsets of the rows whose every cell is empty (",,," as spreadsheets leave them)."""
    if not columns or any(map(all, columns)):  # a column without an empty cell: no blank row (the usual)
        return set()
    return {offset for offset, cells in enumerate(zip(*columns, strict=True)) if not any(cells)}


def merge_keys(chunk_digests: Iterable[KeyDigests]) -> KeyMerge:
    """Find keys used by more than one row across all chunks, given in any order (first occurrence wins)."""
    groups: dict[tuple[str, tuple[str, ...]], list[KeyRun]] = {}
    for digests in chunk_digests:
        for run in digests.runs:
            groups.setdefault((run.code, run.columns), []).append(run)
    errors: list[RowError] = []
    newly_invalid: set[int] = set()
    for (code, columns), runs in groups.items():
        for row, first, run, position in _duplicates(runs):
            errors.append(_duplicate_error(code, columns, row, first, run.values[position]))
            if run.valid[position]:
                newly_invalid.add(row)
    errors.sort(key=lambda error: (error.row, error.column))
    return KeyMerge(errors=errors, newly_invalid_rows=sorted(newly_invalid))


# A later row with a key seen before: (its row, the first row with the key, its run, its offset in the run).
Duplicate = tuple[int, int, KeyRun, int]


def _duplicates(runs: list[KeyRun]) -> list[Duplicate]:
    """Return every later row with a key seen before, in the order a k-way merge of the runs meets them.

    Sorting all keys at once merges the sorted runs in C and shows which keys repeat; only those are looked
    up in the runs, and their occurrences put in merge order: key, row, run, offset in the run.
    """
    keys: list[Any] = []
    for run in runs:
        keys += run.keys
    keys.sort()
    # Sorted, a key's occurrences stand together; two or more take an even and an odd place.
    repeated = set(keys[::2]).intersection(keys[1::2])
    if not repeated:
        return []
    seen: list[tuple[Any, int, int, int]] = []
    for index, run in enumerate(runs):
        for position in _positions_of(run.keys, repeated):
            seen.append((run.keys[position], run.rows[position], index, position))
    seen.sort()
    found: list[Duplicate] = []
    previous: Any = _UNSET
    first = 0
    for key, row, index, position in seen:
        if key != previous:
            previous, first = key, row
        elif row != first:  # the same row handed in twice (overlapping chunks) is not a duplicate
            found.append((row, first, runs[index], position))
    return found


def _positions_of(keys: list[Any], wanted: set[Any]) -> Iterable[int]:
    """Return the positions of the wanted keys in sorted keys, ascending.

    A run holds each of its keys together, so the positions come from bisection: a look-up per wanted
    key the run holds, not per key of the run.
    """
    held = wanted.intersection(keys)
    if len(held) * _BISECTIONS_PER_SCAN > len(keys):
        return compress(range(len(keys)), map(wanted.__contains__, keys))
    positions: list[int] = []
    for key in sorted(held):
        start = bisect_left(keys, key)
        positions.extend(range(start, bisect_right(keys, key, start)))
    return positions


_BISECTIONS_PER_SCAN: Final = 8  # a bisection costs about what 8 keys of a scan cost


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
    return _row_error(row, column, code, message, value)
