"""Profile an uploaded CSV in one streaming pass: encoding, dialect, header, column types and statistics.

Types are inferred from every row (``sampled_rows == row_count``): each column keeps a shrinking set of
candidate types, so a column already known to be a string costs little per cell. Preference order is
integer, number, boolean, date, datetime, time, then string. Deliberate choices:

- Codes are strings: leading zeros (``007``), a leading ``+`` (phone numbers) and integers of more than
  15 digits (they would lose precision as JSON numbers or Table Storage doubles) are not numbers.
- ``0``/``1`` count as boolean values (Frictionless defaults) but integer is preferred, so a 0/1 column
  is integer; ``year`` is never inferred (a column of 4-digit numbers is called integer).
- Missing cells of short rows count as nulls; extra cells of long rows are ignored; both count as ragged.
- ``distinct`` counts non-null values, exactly up to ``EXACT_DISTINCT_CAP`` (10,000) per column, or
  ``DISTINCT_BUDGET // columns`` when that is smaller but never under ``SKETCH_SIZE``, so memory stays
  bounded however wide the file; beyond that a K-minimum-values sketch of ``SKETCH_SIZE`` BLAKE2b hashes
  estimates it (standard error about 1.6 %; deterministic, so a retried profile gives the same figure).
- The header is decided at the end, from whole-file types, so the first row is profiled last. It is a
  header when most typed columns disagree with their first cell; when every column is text, when its
  cells are distinct names (with a letter, not typed) that never recur below them. One row of such
  names is a header-only file.
- A file is empty when it has nothing but whitespace, or no cell holds anything.
- Preview cells are cut to ``PREVIEW_CELL_CHARS``; statistics use whole values.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from hashlib import blake2b
from typing import Final

from core.csvformat import Columns, CsvFormatError, DecodedText, Dialect, Records, read_records, sniff_dialect

__all__ = ["ColumnProfile", "Dialect", "Profile", "ProfileFailed", "profile_stream"]

EXACT_DISTINCT_CAP: Final = 10_000
DISTINCT_BUDGET: Final = 1_000_000
SKETCH_SIZE: Final = 4_096
PREVIEW_CELL_CHARS: Final = 1_000
_SHORT_VALUE_CHARS: Final = 64
SCAN_ROWS: Final = 512  # records profiled together, column by column

INTEGER, NUMBER, BOOLEAN, DATE, DATETIME, TIME = 1, 2, 4, 8, 16, 32
_ALL_TYPES: Final = INTEGER | NUMBER | BOOLEAN | DATE | DATETIME | TIME
_TYPE_NAMES: Final = (
    (INTEGER, "integer"),
    (NUMBER, "number"),
    (BOOLEAN, "boolean"),
    (DATE, "date"),
    (DATETIME, "datetime"),
    (TIME, "time"),
)
_TYPE_BITS: Final = {name: bit for bit, name in _TYPE_NAMES}
UUID, EMAIL, URI = 1, 2, 4
_ALL_FORMATS: Final = UUID | EMAIL | URI
_FORMAT_NAMES: Final = ((UUID, "uuid"), (EMAIL, "email"), (URI, "uri"))

TRUE_VALUES: Final = ("true", "True", "TRUE", "1")
FALSE_VALUES: Final = ("false", "False", "FALSE", "0")
_BOOLEAN_MASKS: Final = {
    value: (INTEGER | NUMBER | BOOLEAN if value in "01" else BOOLEAN) for value in TRUE_VALUES + FALSE_VALUES
}
_TYPED = re.compile(
    r"(?P<integer>-?(?:0|[1-9][0-9]{0,14}))"
    r"|(?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+))"
    r"|(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"|(?P<datetime>[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})?)"
    r"|(?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?)",
    re.ASCII,
)


def _moment(value: str) -> datetime:
    """Read an ISO 8601 datetime as naive UTC: naive values are taken as UTC, so one column may mix both.

    Raises ValueError for a moment outside years 1 to 9999 once in UTC (0001-01-01T00:00:00+01:00), as
    validation does: such a cell is not a datetime.
    """
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        return moment
    try:
        return moment.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise ValueError(value) from None


_PARSERS: Final[dict[str, Callable[[str], object]]] = {
    "date": date.fromisoformat,
    "datetime": _moment,
    "time": time.fromisoformat,
}
_FORMATS: Final = (
    (UUID, re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")),
    (EMAIL, re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")),
    (URI, re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#]+[^\s]*|(?:mailto|urn|tel):[^\s]+")),
)


class ProfileFailed(Exception):
    """The upload cannot be profiled; ``reason`` tells a person why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ColumnProfile:
    """What one column holds, as inferred from every row."""

    name: str
    type: str
    format: str | None
    null_count: int
    distinct: int
    distinct_exact: bool
    min: str | int | float | None
    max: str | int | float | None

    def to_json(self) -> dict[str, object]:
        """Return the column profile as camelCase JSON."""
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "nullCount": self.null_count,
            "distinct": self.distinct,
            "distinctExact": self.distinct_exact,
            "min": self.min,
            "max": self.max,
        }


@dataclass(frozen=True)
class Profile:
    """What an uploaded CSV file holds: how to read it and what its columns look like."""

    encoding: str
    dialect: Dialect
    row_count: int
    columns: list[ColumnProfile]
    preview: list[list[str]]
    sampled_rows: int
    inferred_schema: dict[str, object]
    ragged_rows: int = 0

    def to_json(self) -> dict[str, object]:
        """Return the profile as camelCase JSON."""
        return {
            "encoding": self.encoding,
            "dialect": self.dialect.to_json(),
            "rowCount": self.row_count,
            "raggedRows": self.ragged_rows,
            "sampledRows": self.sampled_rows,
            "columns": [column.to_json() for column in self.columns],
            "preview": self.preview,
            "inferredSchema": self.inferred_schema,
        }


def classify(value: str) -> int:
    """Return the bit set of inferable types a non-empty cell value can be read as."""
    mask = _BOOLEAN_MASKS.get(value)
    if mask is not None:
        return mask
    match = _TYPED.fullmatch(value)
    if match is None:
        return 0
    kind = match.lastgroup
    if kind == "integer":
        return INTEGER | NUMBER
    if kind == "number":  # 1e999 is no number a column could hold (and no JSON answer could show)
        number = float(value)
        return NUMBER if math.isfinite(number) and _exact(value, number) else 0
    try:
        _PARSERS[kind or ""](value)
    except ValueError:  # e.g. 2023-02-30 or 25:00:00
        return 0
    return _TYPE_BITS[kind or ""]


def _exact(text: str, number: float) -> bool:
    """Whether a double holds the decimal `text` exactly enough to write it back: any 15 significant
    digits do; more only if the double's shortest text is the same number (0.1000000000000000000 is,
    0.123456789012345678 is not). As integers of more than 15 digits, such a column is text."""
    mantissa = text.lstrip("-").partition("e")[0].partition("E")[0].replace(".", "").strip("0")
    return len(mantissa) <= 15 or Decimal(text) == Decimal(repr(number))


def _digest(value: str) -> bytes:
    return blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class _DistinctCounter:
    """Count distinct values exactly up to a cap, then estimate them with a K-minimum-values sketch."""

    __slots__ = ("_cap", "_exact", "_heap", "_members")

    def __init__(self, cap: int) -> None:
        self._cap = cap
        # Short values are kept as they are; long ones as a 128-bit digest, to bound memory.
        self._exact: set[str | bytes] | None = set()
        self._heap: list[int] = []  # negated hashes: a max-heap of the SKETCH_SIZE smallest
        self._members: set[int] = set()

    def add(self, value: str) -> None:
        exact = self._exact
        if exact is None:
            self._add_hash(int.from_bytes(_digest(value)[:8]))
            return
        exact.add(value if len(value) <= _SHORT_VALUE_CHARS else _digest(value))
        if len(exact) > self._cap:
            self._exact = None
            for item in exact:
                self._add_hash(int.from_bytes((_digest(item) if isinstance(item, str) else item)[:8]))

    def add_many(self, values: list[str]) -> None:
        """Count a run of values: the same result as adding them one by one, at C speed while exact."""
        exact = self._exact
        if exact is None:
            heap = self._heap
            for value in dict.fromkeys(values):
                hashed = int.from_bytes(
                    blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).digest()[:8]
                )
                if len(heap) < SKETCH_SIZE or hashed < -heap[0]:  # most values of a big column fall here
                    self._add_hash(hashed)
            return
        if max(map(len, values)) <= _SHORT_VALUE_CHARS:
            exact.update(values)
        else:
            exact.update(value if len(value) <= _SHORT_VALUE_CHARS else _digest(value) for value in values)
        if len(exact) > self._cap:
            self._exact = None
            for item in exact:
                self._add_hash(int.from_bytes((_digest(item) if isinstance(item, str) else item)[:8]))

    def _add_hash(self, hashed: int) -> None:
        heap = self._heap
        if len(heap) < SKETCH_SIZE:
            if hashed not in self._members:
                self._members.add(hashed)
                heapq.heappush(heap, -hashed)
        elif hashed < -heap[0] and hashed not in self._members:
            self._members.discard(-heapq.heapreplace(heap, -hashed))
            self._members.add(hashed)

    def contains(self, value: str) -> bool | None:
        """Say whether value was counted, or None once only an estimate is kept."""
        if self._exact is None:
            return None
        return (value if len(value) <= _SHORT_VALUE_CHARS else _digest(value)) in self._exact

    def count(self) -> tuple[int, bool]:
        """Return the number of distinct values and whether it is exact."""
        if self._exact is not None:
            return len(self._exact), True
        if len(self._heap) < SKETCH_SIZE:
            return len(self._heap), True
        kth_smallest = (-self._heap[0] + 1) / 2**64
        return round((SKETCH_SIZE - 1) / kth_smallest), False


class _ColumnStats:
    """Running statistics of one column: nulls, candidate types and formats, min/max, distinct values."""

    __slots__ = (
        "distinct",
        "formats",
        "moment_bounds",
        "nulls",
        "number_bounds",
        "text_bounds",
        "types",
        "values",
    )

    def __init__(self, distinct_cap: int) -> None:
        self.nulls = 0
        self.values = 0  # non-empty cells: an estimate of distinct values never says more
        self.types = _ALL_TYPES
        self.formats = _ALL_FORMATS
        self.distinct = _DistinctCounter(distinct_cap)
        # Extremes of the values seen while a candidate type survived; one pair per kind of ordering.
        self.number_bounds: tuple[int | float, int | float] | None = None
        self.text_bounds: tuple[str, str] | None = None
        self.moment_bounds: tuple[tuple[datetime, str], tuple[datetime, str]] | None = None

    def observe(self, value: str) -> None:
        """Account for one non-empty cell."""
        self.values += 1
        self.distinct.add(value)
        if self.types:
            self._observe_type(value)
        if self.formats:
            self._observe_format(value)

    def observe_many(self, cells: Sequence[str]) -> None:
        """Account for a run of cells, empty ones as nulls: the same result as observing them one by one.

        A value's type and format verdicts and the bounds it moves depend on the value alone, and
        candidate types only ever shrink, so each distinct value of the run is looked at once, in the
        order it first appears.
        """
        values = list(filter(None, cells))
        self.nulls += len(cells) - len(values)
        self.values += len(values)
        if not values:
            return
        self.distinct.add_many(values)
        if not (self.types or self.formats):
            return
        for value in dict.fromkeys(values):
            if self.types:
                self._observe_type(value)
            if self.formats:
                self._observe_format(value)
            if not (self.types or self.formats):
                return

    def _observe_type(self, value: str) -> None:
        mask = classify(value)
        types = self.types & mask
        self.types = types
        if types & NUMBER:
            number = int(value) if mask & INTEGER else float(value)
            bounds = self.number_bounds
            if bounds is None:
                self.number_bounds = (number, number)
            elif number < bounds[0] or number > bounds[1]:
                self.number_bounds = (min(number, bounds[0]), max(number, bounds[1]))
        elif types & (DATE | TIME):
            # Fixed-width ISO dates and times sort as text.
            text = self.text_bounds
            if text is None:
                self.text_bounds = (value, value)
            elif value < text[0] or value > text[1]:
                self.text_bounds = (min(value, text[0]), max(value, text[1]))
        elif types & DATETIME:
            moment = (_moment(value), value)
            moments = self.moment_bounds
            if moments is None:
                self.moment_bounds = (moment, moment)
            elif moment[0] < moments[0][0] or moment[0] > moments[1][0]:
                low = moment if moment[0] < moments[0][0] else moments[0]
                high = moment if moment[0] > moments[1][0] else moments[1]
                self.moment_bounds = (low, high)

    def _observe_format(self, value: str) -> None:
        formats = self.formats
        for bit, pattern in _FORMATS:
            if formats & bit and pattern.fullmatch(value) is None:
                formats &= ~bit
        self.formats = formats

    def type_bit(self) -> int:
        """Return the bit of the inferred type, or 0 for string."""
        if self.distinct.count()[0] == 0:
            return 0
        return next((bit for bit, _ in _TYPE_NAMES if self.types & bit), 0)

    def profile(self, name: str) -> ColumnProfile:
        """Return the finished profile of this column."""
        bit = self.type_bit()
        kind = dict(_TYPE_NAMES).get(bit, "string")
        text_format = None
        if bit == 0 and self.distinct.count()[0]:
            text_format = next((label for flag, label in _FORMAT_NAMES if self.formats & flag), None)
        low, high = self._bounds(bit)
        distinct, exact = self.distinct.count()
        distinct = min(distinct, self.values)
        return ColumnProfile(name, kind, text_format, self.nulls, distinct, exact, low, high)

    def _bounds(self, bit: int) -> tuple[str | int | float | None, str | int | float | None]:
        if bit in (INTEGER, NUMBER) and self.number_bounds is not None:
            low, high = self.number_bounds
            return (low, high) if bit == INTEGER else (float(low), float(high))
        if bit in (DATE, TIME) and self.text_bounds is not None:
            return self.text_bounds
        if bit == DATETIME and self.moment_bounds is not None:
            return self.moment_bounds[0][1], self.moment_bounds[1][1]
        return None, None


def profile_stream(
    chunks: Iterable[bytes], *, preview_rows: int = 20, max_columns: int = 250, max_field_chars: int = 65_536
) -> Profile:
    """Profile a CSV byte stream read once, in chunks split anywhere; raise ProfileFailed if it can't be."""
    try:
        return _profile(
            chunks, preview_rows=preview_rows, max_columns=max_columns, max_field_chars=max_field_chars
        )
    except CsvFormatError as exc:
        raise ProfileFailed(exc.reason) from exc


def _profile(
    chunks: Iterable[bytes], *, preview_rows: int, max_columns: int, max_field_chars: int
) -> Profile:
    text = DecodedText(chunks)
    dialect = sniff_dialect(text.sample, complete=text.complete)
    records = read_records(text, dialect, max_columns=max_columns, max_field_chars=max_field_chars)
    if dialect.sep_line:
        next(records, None)  # Excel's "sep=X" line: no record
    first = next(records, None)
    if first is None:
        raise ProfileFailed("The file is empty.")
    width = len(first)
    cap = max(SKETCH_SIZE, min(EXACT_DISTINCT_CAP, DISTINCT_BUDGET // width))
    columns = [_ColumnStats(cap) for _ in range(width)]
    preview: list[list[str]] = []
    rows, ragged = _scan(records, columns, preview, preview_rows)
    if not text.has_content or not (any(first) or any(column.distinct.count()[0] for column in columns)):
        raise ProfileFailed("The file is empty.")
    header = _has_header(first, columns, rows)
    if header:
        names = _unique_names(first)
    else:
        names = [f"column_{index}" for index in range(1, width + 1)]
        _observe_row(columns, first)
        rows += 1
        preview = [_preview_row(first), *preview[: max(preview_rows - 1, 0)]]
    profiles = [column.profile(name) for column, name in zip(columns, names, strict=True)]
    return Profile(
        encoding=text.encoding,
        dialect=replace(dialect, header=header),
        row_count=rows,
        columns=profiles,
        preview=preview[:preview_rows],
        sampled_rows=rows,
        inferred_schema=_schema(profiles),
        ragged_rows=ragged,
    )


def _scan(
    records: Records, columns: list[_ColumnStats], preview: list[list[str]], preview_rows: int
) -> tuple[int, int]:
    """Profile every record after the first; return the row and ragged-row counts.

    Records are accounted for column by column, up to SCAN_ROWS at a time: long runs read from lines
    without quotes come as columns already (``Records.take``); other records are gathered, fitted to
    the header's width and transposed. Every statistic is independent of the order rows come in.
    """
    width = len(columns)
    rows = ragged = 0
    gathered: list[list[str]] = []

    def account(cells: Sequence[Sequence[str]], count: int) -> None:
        nonlocal rows
        if len(preview) < preview_rows:
            wanted = min(preview_rows - len(preview), count)
            preview.extend(_preview_row([column[i] for column in cells]) for i in range(wanted))
        for column, column_cells in zip(columns, cells, strict=True):
            column.observe_many(column_cells)
        rows += count

    while part := records.take(SCAN_ROWS):
        if isinstance(part, Columns) and part.width == width and part.count >= SCAN_ROWS // 4:
            if gathered:
                account(list(zip(*gathered, strict=True)), len(gathered))
                gathered = []
            account(part.cells, part.count)
            continue
        for record in part.records() if isinstance(part, Columns) else part:
            if len(record) != width:
                ragged += 1
                record = _fit(record, width)
            gathered.append(record)
        if len(gathered) >= SCAN_ROWS:
            account(list(zip(*gathered, strict=True)), len(gathered))
            gathered = []
    if gathered:
        account(list(zip(*gathered, strict=True)), len(gathered))
    return rows, ragged


def _observe_row(columns: list[_ColumnStats], record: list[str]) -> None:
    for column, value in zip(columns, record, strict=True):
        if value:
            column.observe(value)
        else:
            column.nulls += 1


def _fit(record: list[str], width: int) -> list[str]:
    if len(record) >= width:
        return record[:width] if len(record) > width else record
    return record + [""] * (width - len(record))


def _preview_row(record: list[str]) -> list[str]:
    return [cell[:PREVIEW_CELL_CHARS] for cell in record]


def _looks_like_name(cell: str) -> bool:
    stripped = cell.strip()
    return bool(stripped) and classify(stripped) == 0 and any(char.isalpha() for char in stripped)


def _has_header(first: list[str], columns: list[_ColumnStats], data_rows: int) -> bool:
    """Decide whether the first row names the columns, knowing the types of every other row."""
    names_like = all(map(_looks_like_name, first)) and len(set(first)) == len(first)
    if data_rows == 0:
        return names_like
    matches = mismatches = blanks = 0
    for cell, column in zip(first, columns, strict=True):
        bit = column.type_bit()
        if not bit:
            continue
        if cell:
            if classify(cell) & bit:
                matches += 1
            else:
                mismatches += 1
        elif not column.nulls:  # a blank over a column with no blank value: an unnamed column (pandas' index)
            blanks += 1
    if matches or mismatches:
        return mismatches > matches  # blanks only settle a row with no other typed cell ("1,,,x" is data)
    if blanks:
        return True
    # Every column is text: names that never recur as values below them are a header.
    return names_like and not any(
        column.distinct.contains(cell) for cell, column in zip(first, columns, strict=True)
    )


def _unique_names(first: list[str]) -> list[str]:
    """Name the columns after the header: a blank cell gets column_<n>; a repeated name gets the first
    free `_2`, `_3`... that no other column is named literally (so "a,a,a_2" gives a, a_3, a_2)."""
    bases = [cell if cell.strip() else f"column_{index}" for index, cell in enumerate(first, 1)]
    used = set(bases)
    taken: set[str] = set()
    names: list[str] = []
    for base in bases:
        name, suffix = base, 2
        if name in taken:
            while (name := f"{base}_{suffix}") in used:
                suffix += 1
            used.add(name)
        taken.add(name)
        names.append(name)
    return names


def _schema(columns: list[ColumnProfile]) -> dict[str, object]:
    fields: list[dict[str, object]] = []
    for column in columns:
        entry: dict[str, object] = {"name": column.name, "type": column.type}
        if column.format:
            entry["format"] = column.format
        fields.append(entry)
    return {"fields": fields, "missingValues": [""]}
