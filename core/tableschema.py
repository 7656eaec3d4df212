"""Frictionless Table Schema: parse and check a descriptor, and read one cell as its field's type.

A descriptor is checked as a whole: every problem found is listed in one ``Invalid`` (a 422 answer), each
as ``{"field": name or None, "code": ..., "message": ...}``, so a person fixes them in one go.

Supported (Table Schema v1 with the Frictionless v2 additions people use):

- types ``string`` (formats ``default``, ``email``, ``uri``, ``uuid``, ``binary``), ``integer``, ``number``,
  ``boolean``, ``date``, ``datetime``, ``time`` (formats ``default`` or a ``strptime`` pattern, with or
  without the old ``fmt:`` prefix), ``year``, ``yearmonth``, ``duration`` and ``any``. A field without a
  type is a string. Format ``any`` (guess the layout) is refused: it needs a guessing parser and its
  results are ambiguous (``01/02/2024``).
- constraints ``required``, ``unique``, ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``,
  ``minLength``, ``maxLength``, ``pattern`` and ``enum``, on the types Frictionless allows them for.
  Bounds and enum items are read as the field's type (``"2024-01-01"`` for a date, ``5`` or ``"5"`` for
  an integer).
- ``trueValues``/``falseValues``, ``bareNumber``, ``decimalChar``, ``groupChar``; ``missingValues``
  (default ``[""]``); ``primaryKey`` (a name or a list of names; its fields are required).
  ``foreignKeys`` and unknown properties are ignored.

Typed values: integer and year are ``int`` (integers must fit Table Storage's signed 64 bits); number is
``float`` (an IEEE double, what Table Storage and JSON store; ``NaN``, ``INF`` and ``-INF``, in any case, are
allowed as the spec says, a finite text that overflows is not); boolean ``bool``; date ``date``; datetime
``datetime``, aware ones converted to UTC; time ``time`` (an offset is kept); string, yearmonth,
duration, any and binary (base64 text, checked) stay ``str``.

``pattern`` is an XML Schema regular expression, matched against the whole value. XML Schema has no
anchors, but people write ``^...$`` (and Frictionless accepts it), so a leading ``^`` and trailing ``$``
are dropped. Constructs Python's ``re`` cannot express (``\\p{..}``, ``\\i``, ``\\c``, class subtraction)
are refused as schema problems rather than silently read differently.

Field names are kept as given; each also gets a Table Storage property name (see ``property_names``).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from core.errors import Invalid

MAX_FIELDS: Final = 250
MAX_PROPERTY_CHARS: Final = 255
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
DEFAULT_TRUE_VALUES: Final = ("true", "True", "TRUE", "1")
DEFAULT_FALSE_VALUES: Final = ("false", "False", "FALSE", "0")
DEFAULT_MISSING_VALUES: Final = ("",)

_ORDERED: Final = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_LENGTHS: Final = ("minLength", "maxLength")
_BASIC: Final = ("required", "unique", "enum")
CONSTRAINTS_BY_TYPE: Final[Mapping[str, frozenset[str]]] = {
    "string": frozenset((*_BASIC, *_LENGTHS, "pattern")),
    "integer": frozenset((*_BASIC, *_ORDERED)),
    "number": frozenset((*_BASIC, *_ORDERED)),
    "boolean": frozenset(_BASIC),
    "date": frozenset((*_BASIC, *_ORDERED)),
    "datetime": frozenset((*_BASIC, *_ORDERED)),
    "time": frozenset((*_BASIC, *_ORDERED)),
    "year": frozenset((*_BASIC, *_ORDERED)),
    "yearmonth": frozenset((*_BASIC, *_ORDERED)),
    "duration": frozenset(_BASIC),
    "any": frozenset(_BASIC),
}
ALL_CONSTRAINTS: Final = frozenset().union(*CONSTRAINTS_BY_TYPE.values())
STRING_FORMATS: Final = ("default", "email", "uri", "uuid", "binary")
_PATTERN_FORMAT_TYPES: Final = ("date", "datetime", "time")
# Table Storage's own names, and the stamps Loadbay puts on every row (core.rows).
_RESERVED_PROPERTIES: Final = frozenset(
    ("partitionkey", "rowkey", "timestamp", "etag", "loadbayjob", "loadbayop", "loadbaykey")
)

# The same languages as core.profiling's inference, so an inferred schema accepts the file it came from.
# Possessive quantifiers do not change what these match (the repeated classes exclude the next separator);
# they only stop the engine from backtracking.
EMAIL_RE: Final = re.compile(r"[^@\s]++@[^@\s.]++(?:\.[^@\s.]++)++")
URI_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*+:\S+")
UUID_RE: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
INTEGER_RE: Final = re.compile(r"[+-]?[0-9]+")
NUMBER_RE: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
DATE_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Seconds have at most 6 decimals: Python's datetime keeps microseconds, and would cut a 7th digit off
# silently. A datetime may leave its seconds out (2024-03-01 10:00, as spreadsheets write it); a time may not.
_FRACTION: Final = r"(?:\.[0-9]{1,6})?"
_OFFSET: Final = r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?"
TIME_RE: Final = re.compile(rf"[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}{_FRACTION}{_OFFSET}")
DATETIME_RE: Final = re.compile(
    rf"[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}[T ][0-9]{{2}}:[0-9]{{2}}(?::[0-9]{{2}}{_FRACTION})?{_OFFSET}"
)
# XML Schema's end of the day, in a time already of TIME_RE's shape: fromisoformat refuses hour 24.
END_OF_DAY: Final = re.compile(r"24:00:00(?:\.0+)?(?![.0-9])")
YEAR_RE: Final = re.compile(r"[0-9]{4}")
YEARMONTH_RE: Final = re.compile(r"[0-9]{4}-(?:0[1-9]|1[0-2])")
_DURATION_NUMBER: Final = r"[0-9]+(?:[.,][0-9]+)?"
DURATION_RE: Final = re.compile(
    rf"P(?=[0-9T])(?:{_DURATION_NUMBER}Y)?(?:{_DURATION_NUMBER}M)?(?:{_DURATION_NUMBER}W)?"
    rf"(?:{_DURATION_NUMBER}D)?(?:T(?=[0-9])(?:{_DURATION_NUMBER}H)?(?:{_DURATION_NUMBER}M)?"
    rf"(?:{_DURATION_NUMBER}S)?)?"
)
_NON_BARE_EDGES: Final = re.compile(r"^[^\-0-9.]+|[^0-9.]+$")
# The spec's special numbers, in any case ("nan", "Inf"): keyed by their upper-case ASCII text.
SPECIAL_NUMBERS: Final = {"NAN": math.nan, "INF": math.inf, "-INF": -math.inf}
_UNSUPPORTED_ESCAPES: Final = frozenset("pPiIcC")

Reader = Callable[[str], Any]


class OutOfRange(ValueError):
    """The cell is a number, but too large to store."""


@dataclass(frozen=True)
class Constraints:
    """A field's constraints, with bounds and enum items already read as the field's type."""

    required: bool = False
    unique: bool = False
    minimum: Any = None
    maximum: Any = None
    exclusive_minimum: Any = None
    exclusive_maximum: Any = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    enum: tuple[Any, ...] | None = None
    # The constraints as written, so to_json gives back what the person wrote (a date in its own format).
    source: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """Return the constraints as Table Schema JSON."""
        return dict(self.source)


@dataclass(frozen=True)
class Field:
    """One Table Schema field; ``property_name`` is its safe Table Storage property name."""

    name: str
    type: str = "string"
    format: str = "default"
    constraints: Constraints = field(default_factory=Constraints)
    property_name: str = ""
    title: str | None = None
    description: str | None = None
    true_values: tuple[str, ...] = DEFAULT_TRUE_VALUES
    false_values: tuple[str, ...] = DEFAULT_FALSE_VALUES
    bare_number: bool = True
    decimal_char: str = "."
    group_char: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return the field as Table Schema JSON (defaults left out)."""
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.format != "default":
            out["format"] = self.format
        for key, text in (("title", self.title), ("description", self.description)):
            if text is not None:
                out[key] = text
        if self.type == "boolean":
            if self.true_values != DEFAULT_TRUE_VALUES:
                out["trueValues"] = list(self.true_values)
            if self.false_values != DEFAULT_FALSE_VALUES:
                out["falseValues"] = list(self.false_values)
        if self.type in ("integer", "number"):
            for key, value, default in (
                ("bareNumber", self.bare_number, True),
                ("decimalChar", self.decimal_char, "."),
                ("groupChar", self.group_char, ""),
            ):
                if value != default:
                    out[key] = value
        if self.constraints.source:
            out["constraints"] = self.constraints.to_json()
        return out


@dataclass(frozen=True)
class TableSchema:
    """A checked Table Schema; build one with ``parse_table_schema``."""

    fields: tuple[Field, ...]
    missing_values: tuple[str, ...] = DEFAULT_MISSING_VALUES
    primary_key: tuple[str, ...] = ()

    @property
    def field_names(self) -> tuple[str, ...]:
        """Return the field names in schema order."""
        return tuple(item.name for item in self.fields)

    def field(self, name: str) -> Field:
        """Return the field called name; raise KeyError if there is none."""
        for item in self.fields:
            if item.name == name:
                return item
        raise KeyError(name)

    def property_names(self) -> dict[str, str]:
        """Return {field name: Table Storage property name}."""
        return {item.name: item.property_name for item in self.fields}

    def to_json(self) -> dict[str, Any]:
        """Return the schema as Table Schema JSON; parsing it again gives an equal schema."""
        out: dict[str, Any] = {
            "fields": [item.to_json() for item in self.fields],
            "missingValues": list(self.missing_values),
        }
        if self.primary_key:
            out["primaryKey"] = list(self.primary_key)
        return out


class _Problems:
    """Collects schema problems so all of them are reported at once.

    `new` is false for a schema read back from storage: rules added after it was written do not apply
    to it, so a dataset stored earlier stays readable.
    """

    def __init__(self, *, new: bool) -> None:
        self.items: list[dict[str, Any]] = []
        self.new = new

    def add(self, field_name: str | None, code: str, message: str) -> None:
        self.items.append({"field": field_name, "code": code, "message": message})


def parse_table_schema(descriptor: object, *, stored: bool = False) -> TableSchema:
    """Check a Table Schema descriptor and return it as a TableSchema; raise Invalid listing every problem.

    `stored`: the descriptor was checked when it was stored (see _Problems).
    """
    problems = _Problems(new=not stored)
    if not isinstance(descriptor, Mapping):
        problems.add(None, "schemaNotObject", "The schema must be a JSON object with a list of fields.")
        raise _invalid(problems)
    missing_values = _missing_values(descriptor.get("missingValues", list(DEFAULT_MISSING_VALUES)), problems)
    fields = _fields(descriptor.get("fields"), problems)
    primary_key = _primary_key(descriptor.get("primaryKey"), [item.name for item in fields], problems)
    if problems.items:
        raise _invalid(problems)
    if primary_key:
        fields = [_required(item) if item.name in primary_key else item for item in fields]
    names = property_names([item.name for item in fields])
    fields = [_with_property(item, names[index]) for index, item in enumerate(fields)]
    return TableSchema(fields=tuple(fields), missing_values=missing_values, primary_key=primary_key)


def _invalid(problems: _Problems) -> Invalid:
    count = len(problems.items)
    noun = "problem" if count == 1 else "problems"
    return Invalid(f"The table schema has {count} {noun}.", problems=problems.items)


def _with_property(item: Field, property_name: str) -> Field:
    return replace(item, property_name=property_name)


def _required(item: Field) -> Field:
    if item.constraints.required:
        return item
    return replace(item, constraints=replace(item.constraints, required=True))


def _missing_values(value: object, problems: _Problems) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    problems.add(None, "badMissingValues", 'missingValues must be a list of strings, such as ["", "NA"].')
    return DEFAULT_MISSING_VALUES


def _fields(value: object, problems: _Problems) -> list[Field]:
    if not isinstance(value, list):
        problems.add(None, "fieldsMissing", 'The schema needs "fields": a list of field descriptors.')
        return []
    if not value:
        problems.add(None, "fieldsEmpty", "The schema has no fields; it needs at least one.")
    if len(value) > MAX_FIELDS:
        problems.add(None, "tooManyFields", f"The schema has {len(value)} fields; the limit is {MAX_FIELDS}.")
    fields: list[Field] = []
    seen: set[str] = set()
    for position, item in enumerate(value, 1):
        parsed = _field(item, position, problems)
        if parsed is None:
            continue
        if parsed.name in seen:
            problems.add(parsed.name, "duplicateFieldName", f'Two fields are called "{parsed.name}".')
            continue
        seen.add(parsed.name)
        fields.append(parsed)
    return fields


def _field(item: object, position: int, problems: _Problems) -> Field | None:
    if not isinstance(item, Mapping):
        problems.add(None, "fieldNotObject", f"Field {position} must be a JSON object.")
        return None
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.add(None, "fieldNameMissing", f'Field {position} needs a non-empty "name".')
        return None
    kind = item.get("type", "string")
    if not isinstance(kind, str) or kind not in CONSTRAINTS_BY_TYPE:
        known = ", ".join(CONSTRAINTS_BY_TYPE)
        problems.add(name, "unknownType", f'Field "{name}": unknown type {kind!r}; use one of {known}.')
        return Field(name=name)  # kept for the name checks; the schema is refused anyway
    start = len(problems.items)
    fmt = _format(name, kind, item.get("format", "default"), problems)
    options = _options(name, kind, item, problems)
    draft = Field(name=name, type=kind, format=fmt, **options)
    constraints = _constraints(draft, item.get("constraints", {}), problems)
    if len(problems.items) > start:
        return draft
    return replace(draft, constraints=constraints)


def _format(name: str, kind: str, value: object, problems: _Problems) -> str:
    if value == "default":
        return "default"
    if kind == "string" and isinstance(value, str) and value in STRING_FORMATS:
        return str(value)
    if kind in _PATTERN_FORMAT_TYPES and isinstance(value, str) and "%" in value:
        if _strptime_format_works(value.removeprefix("fmt:")):
            return value
        problems.add(name, "unknownFormat", f'Field "{name}": {value!r} is not a usable strptime pattern.')
        return "default"
    if kind in _PATTERN_FORMAT_TYPES:
        hint = 'use "default" (ISO 8601) or a strptime pattern such as "%d/%m/%Y"'
    elif kind == "string":
        hint = "use one of " + ", ".join(STRING_FORMATS)
    else:
        hint = 'this type only has the "default" format'
    problems.add(name, "unknownFormat", f'Field "{name}": unknown format {value!r} for type {kind}; {hint}.')
    return "default"


def _strptime_format_works(pattern: str) -> bool:
    """Say whether strptime reads back what the pattern writes.

    Only that: a pattern may leave parts out ("%H:%M" has no seconds, "%Y-%m" no day; strptime fills
    them in as Frictionless does) and may carry an offset ("%z"), so the sample is aware.
    """
    sample = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
    try:
        datetime.strptime(sample.strftime(pattern), pattern)
    except (ValueError, re.error):  # strptime compiles "%Y %Y" to a regex naming one group twice
        return False
    return True


def _options(name: str, kind: str, item: Mapping[str, Any], problems: _Problems) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key in ("title", "description"):
        if isinstance(item.get(key), str):
            options[key] = item[key]
    if kind == "boolean":
        options.update(_boolean_values(name, item, problems))
    if kind in ("integer", "number"):
        options.update(_number_options(name, kind, item, problems))
    return options


def _boolean_values(name: str, item: Mapping[str, Any], problems: _Problems) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, attribute, default in (
        ("trueValues", "true_values", DEFAULT_TRUE_VALUES),
        ("falseValues", "false_values", DEFAULT_FALSE_VALUES),
    ):
        value = item.get(key, list(default))
        if isinstance(value, list) and value and all(isinstance(entry, str) for entry in value):
            options[attribute] = tuple(value)
        else:
            problems.add(name, "badOption", f'Field "{name}": {key} must be a non-empty list of strings.')
    both = set(options.get("true_values", ())) & set(options.get("false_values", ()))
    if both:
        listed = ", ".join(repr(value) for value in sorted(both))
        problems.add(name, "badOption", f'Field "{name}": {listed} is in both trueValues and falseValues.')
    return options


_NUMBER_CHARS: Final = frozenset("0123456789+-eE")


def _number_options(name: str, kind: str, item: Mapping[str, Any], problems: _Problems) -> dict[str, Any]:
    options: dict[str, Any] = {}
    bare = item.get("bareNumber", True)
    if isinstance(bare, bool):
        options["bare_number"] = bare
    else:
        problems.add(name, "badOption", f'Field "{name}": bareNumber must be true or false.')
    decimal_char = item.get("decimalChar", ".")
    group_char = item.get("groupChar", "")
    if kind == "number" and not (isinstance(decimal_char, str) and len(decimal_char) == 1):
        problems.add(name, "badOption", f'Field "{name}": decimalChar must be one character.')
    elif kind == "number" and decimal_char in _NUMBER_CHARS and problems.new:
        message = f'Field "{name}": decimalChar cannot be {decimal_char!r}, which is part of numbers.'
        problems.add(name, "badOption", message)
    elif kind == "number":
        options["decimal_char"] = decimal_char
    # An integer has no decimal mark (its decimalChar is ignored): "1.000" with groupChar "." is a thousand.
    clash = kind == "number" and group_char == decimal_char
    if not (isinstance(group_char, str) and len(group_char) <= 1) or clash:
        problems.add(
            name, "badOption", f'Field "{name}": groupChar must be one character, not the decimal one.'
        )
    elif group_char and group_char in _NUMBER_CHARS and problems.new:  # "-5" would read as 5
        message = f'Field "{name}": groupChar cannot be {group_char!r}, which is part of numbers.'
        problems.add(name, "badOption", message)
    else:
        options["group_char"] = group_char
    return options


def _constraints(draft: Field, value: object, problems: _Problems) -> Constraints:
    name = draft.name
    if not isinstance(value, Mapping):
        problems.add(name, "badConstraintValue", f'Field "{name}": constraints must be a JSON object.')
        return Constraints()
    allowed = CONSTRAINTS_BY_TYPE[draft.type]
    typed: dict[str, Any] = {}
    for key, raw in value.items():
        if key not in ALL_CONSTRAINTS:
            problems.add(name, "unknownConstraint", f'Field "{name}": unknown constraint {key!r}.')
        elif key not in allowed:
            problems.add(
                name,
                "constraintNotApplicable",
                f'Field "{name}": the {key} constraint does not apply to type {draft.type}.',
            )
        else:
            _constraint(draft, key, raw, typed, problems)
    _check_bounds(draft, typed, problems)
    return Constraints(**typed, source=dict(value))


_ATTRIBUTES: Final = {
    "required": "required",
    "unique": "unique",
    "minimum": "minimum",
    "maximum": "maximum",
    "exclusiveMinimum": "exclusive_minimum",
    "exclusiveMaximum": "exclusive_maximum",
    "minLength": "min_length",
    "maxLength": "max_length",
    "pattern": "pattern",
    "enum": "enum",
}


def _constraint(draft: Field, key: str, raw: object, typed: dict[str, Any], problems: _Problems) -> None:
    name = draft.name
    attribute = _ATTRIBUTES[key]
    if key in ("required", "unique"):
        if isinstance(raw, bool):
            typed[attribute] = raw
        else:
            problems.add(name, "badConstraintValue", f'Field "{name}": {key} must be true or false.')
    elif key in _LENGTHS:
        if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
            typed[attribute] = raw
        else:
            problems.add(name, "badConstraintValue", f'Field "{name}": {key} must be a whole number ≥ 0.')
    elif key == "pattern":
        message = pattern_problem(raw)
        if message is None:
            typed[attribute] = raw
        else:
            problems.add(name, "badPattern", f'Field "{name}": {message}')
    elif key == "enum":
        _enum(draft, raw, typed, problems)
    elif draft.type == "time" and isinstance(raw, str) and END_OF_DAY.match(raw):
        # As a time 24:00:00 is 00:00:00, the least time, not the greatest a person means by it.
        problems.add(name, "badConstraintValue", f'Field "{name}": {key} cannot be 24:00:00; use 23:59:59.')
    else:
        bound = _typed_value(draft, raw)
        if bound is _BAD:
            problems.add(
                name, "badConstraintValue", f'Field "{name}": {key} {raw!r} is not a valid {draft.type}.'
            )
        elif _is_nan(bound) and problems.new:
            problems.add(
                name,
                "badConstraintValue",
                f'Field "{name}": {key} cannot be NaN: no number compares with it.',
            )
        else:
            typed[attribute] = bound


def _enum(draft: Field, raw: object, typed: dict[str, Any], problems: _Problems) -> None:
    name = draft.name
    if not isinstance(raw, list) or not raw:
        problems.add(name, "badConstraintValue", f'Field "{name}": enum must be a non-empty list.')
        return
    items = [_typed_value(draft, entry) for entry in raw]
    bad = [entry for entry, item in zip(raw, items, strict=True) if item is _BAD]
    if problems.new and any(_is_nan(item) for item in items):
        problems.add(
            name,
            "badConstraintValue",
            f'Field "{name}": enum cannot hold NaN: it equals no value, not even NaN.',
        )
        return
    if bad:
        listed = ", ".join(repr(entry) for entry in bad[:5])
        problems.add(
            name, "badConstraintValue", f'Field "{name}": enum value(s) {listed} are not valid {draft.type}s.'
        )
        return
    typed["enum"] = tuple(items)


def _check_bounds(draft: Field, typed: dict[str, Any], problems: _Problems) -> None:
    low = typed.get("minimum", typed.get("exclusive_minimum"))
    high = typed.get("maximum", typed.get("exclusive_maximum"))
    if low is not None and high is not None:
        key = order_key(draft.type)
        if key(low) > key(high):
            problems.add(
                draft.name,
                "badConstraintValue",
                f'Field "{draft.name}": the lower bound is greater than the upper bound.',
            )
    min_length, max_length = typed.get("min_length"), typed.get("max_length")
    if min_length is not None and max_length is not None and min_length > max_length:
        problems.add(
            draft.name, "badConstraintValue", f'Field "{draft.name}": minLength is greater than maxLength.'
        )


class _Bad:
    """Marks a constraint value that cannot be read as the field's type."""


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


_BAD: Final = _Bad()


def _typed_value(draft: Field, raw: object) -> Any:
    """Read a JSON constraint value (logical, or text in the field's own format) as the field's type."""
    if isinstance(raw, bool):
        return raw if draft.type in ("boolean", "any") else _BAD
    if isinstance(raw, int) and draft.type in ("integer", "year"):
        return raw
    if isinstance(raw, int | float) and draft.type == "number":
        try:
            number = float(raw)  # an integer of 400 digits does not fit
        except OverflowError:
            return _BAD
        return number  # (infinite bounds never arrive: request bodies refuse 1e999 and Infinity)
    if not isinstance(raw, str):
        return _BAD
    try:
        return cell_reader(draft)(raw)
    except (ValueError, OverflowError):
        return _BAD


def order_key(kind: str) -> Callable[[Any], Any]:
    """Return the key that orders a type's values for minimum/maximum checks.

    Naive and aware datetimes (and times) cannot be compared in Python; a naive one is taken as UTC,
    as the profiler does. Aware datetimes are already in UTC once read.
    """
    if kind == "datetime":
        return _datetime_order
    if kind == "time":
        return _time_order
    return _same


def _same(value: Any) -> Any:
    return value


def _datetime_order(value: datetime) -> datetime:
    return value.replace(tzinfo=None) if value.tzinfo is not None else value


def _time_order(value: time) -> float:
    offset = value.utcoffset()
    seconds = value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
    return seconds - (offset.total_seconds() if offset is not None else 0.0)


def pattern_problem(pattern: object) -> str | None:
    """Return why pattern is not a usable XML Schema regular expression, or None if it is."""
    if not isinstance(pattern, str):
        return "pattern must be a string."
    unsupported = _unsupported_construct(pattern)
    if unsupported is not None:
        return f"pattern {pattern!r} uses {unsupported!r}, which Loadbay does not support."
    try:
        # The pattern as written first, so error positions point into the person's text.
        re.compile(pattern)
        re.compile(_python_pattern(pattern))
    except (re.error, OverflowError, RecursionError) as exc:  # a{4294967296} overflows, deep nesting recurses
        return f"pattern {pattern!r} is not a valid regular expression ({exc})."
    return None


def _unsupported_construct(pattern: str) -> str | None:
    """Return the first XML Schema construct Python's re reads differently, or None."""
    in_class = False
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            escaped = pattern[index + 1 : index + 2]
            if escaped in _UNSUPPORTED_ESCAPES:
                return "\\" + escaped
            index += 2
            continue
        if in_class and char == "-" and pattern.startswith("[", index + 1):
            return "-["  # character class subtraction, as in [a-z-[aeiou]]
        if char == "[" and not in_class:
            in_class = True
            # A "]" right after "[" or "[^" is a literal member, not the end of the class.
            index += 2 if pattern.startswith("^", index + 1) else 1
            if pattern.startswith("]", index):
                index += 1
            continue
        if char == "]" and in_class:
            in_class = False
        index += 1
    return None


def _python_pattern(pattern: str) -> str:
    body = pattern.removeprefix("^")
    if body.endswith("$") and not body.endswith("\\$"):
        body = body[:-1]
    return f"(?:{body})"


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile an XML Schema pattern for ``fullmatch`` (it must have passed ``pattern_problem``)."""
    return re.compile(_python_pattern(pattern))


def cell_reader(item: Field) -> Reader:
    """Return a function reading one present cell as the field's type; it raises ValueError if it can't.

    ``OutOfRange`` (a ValueError) says the cell is a number too large for Table Storage.
    """
    if item.type in ("integer", "number"):
        return _number_reader(item)
    if item.type in _PATTERN_FORMAT_TYPES and item.format != "default":
        return _strptime_reader(item.type, item.format.removeprefix("fmt:"))
    if item.type == "boolean":
        return _boolean_reader(item.true_values, item.false_values)
    if item.type == "string":
        return _STRING_READERS[item.format]
    return _READERS[item.type]


def _number_reader(item: Field) -> Reader:
    base = read_integer if item.type == "integer" else read_number
    if item.bare_number and item.group_char == "" and item.decimal_char == ".":
        return base
    group, decimal, bare = item.group_char, item.decimal_char, item.bare_number
    # Not bare: currency signs, units and the like before or after the number are dropped (Frictionless).
    edges = re.compile(rf"^[^\-+0-9{re.escape(decimal)}]+|[^0-9]+$")

    def read(value: str) -> Any:
        if not bare:
            value = edges.sub("", value)
        if group:
            value = value.replace(group, "")
        if decimal != ".":
            if "." in value:
                raise ValueError(value)
            value = value.replace(decimal, ".")
        return base(value)

    return read


def read_integer(value: str) -> int:
    """Read an integer written as optional sign and ASCII digits, within signed 64 bits."""
    if INTEGER_RE.fullmatch(value) is None:
        raise ValueError(value)
    number = int(value)
    if not INT64_MIN <= number <= INT64_MAX:
        raise OutOfRange(value)
    return number


def read_number(value: str) -> float:
    """Read a decimal number (optionally with exponent), or NaN, INF, -INF in any case."""
    if NUMBER_RE.fullmatch(value) is None:
        # isascii: "\u0131nf" (a dotless i) upper-cases to "INF" too.
        special = SPECIAL_NUMBERS.get(value.upper()) if value.isascii() else None
        if special is None:
            raise ValueError(value)
        return special
    number = float(value)
    if math.isinf(number):
        raise OutOfRange(value)
    return number


def _boolean_reader(true_values: Iterable[str], false_values: Iterable[str]) -> Reader:
    table = {**dict.fromkeys(false_values, False), **dict.fromkeys(true_values, True)}

    def read(value: str) -> bool:
        try:
            return table[value]
        except KeyError:
            raise ValueError(value) from None

    return read


def read_date(value: str) -> date:
    """Read an ISO 8601 calendar date, YYYY-MM-DD."""
    if DATE_RE.fullmatch(value) is None:
        raise ValueError(value)
    return date.fromisoformat(value)


def read_datetime(value: str) -> datetime:
    """Read an ISO 8601 date and time ('T' or space between, seconds optional); aware values become UTC.

    24:00:00 is the end of the day, the first moment of the next one (XML Schema).
    """
    if DATETIME_RE.fullmatch(value) is None:
        raise ValueError(value)
    if END_OF_DAY.match(value, 11) is None:
        return _in_utc(datetime.fromisoformat(value), value)
    try:
        moment = datetime.fromisoformat(f"{value[:11]}00{value[13:]}") + timedelta(days=1)
    except OverflowError:  # 9999-12-31T24:00:00
        raise ValueError(value) from None
    return _in_utc(moment, value)


def _in_utc(moment: datetime, value: str) -> datetime:
    """Return an aware moment in UTC (a naive one as it is); ValueError(value) if UTC has no such moment."""
    if moment.tzinfo is None or moment.tzinfo is UTC:
        return moment
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is a moment before year 1 in UTC
        raise ValueError(value) from None


def read_time(value: str) -> time:
    """Read an ISO 8601 time of day with seconds, optionally with an offset; 24:00:00 is 00:00:00."""
    if TIME_RE.fullmatch(value) is None:
        raise ValueError(value)
    if END_OF_DAY.match(value) is not None:
        value = "00" + value[2:]
    return time.fromisoformat(value)


def _strptime_reader(kind: str, pattern: str) -> Reader:
    def read(value: str) -> Any:
        moment = datetime.strptime(value, pattern)
        if kind == "date":
            return moment.date()
        if kind == "time":
            return moment.timetz()
        return _in_utc(moment, value)

    return read


def _matching(pattern: re.Pattern[str]) -> Reader:
    fullmatch = pattern.fullmatch

    def read(value: str) -> str:
        if fullmatch(value) is None:
            raise ValueError(value)
        return value

    return read


def read_year(value: str) -> int:
    """Read a four-digit year."""
    if YEAR_RE.fullmatch(value) is None:
        raise ValueError(value)
    return int(value)


def read_binary(value: str) -> str:
    """Check that value is base64 text and return it unchanged."""
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError(value) from None
    return value


def _identity(value: str) -> str:
    return value


_STRING_READERS: Final[Mapping[str, Reader]] = {
    "default": _identity,
    "email": _matching(EMAIL_RE),
    "uri": _matching(URI_RE),
    "uuid": _matching(UUID_RE),
    "binary": read_binary,
}
_READERS: Final[Mapping[str, Reader]] = {
    "date": read_date,
    "datetime": read_datetime,
    "time": read_time,
    "year": read_year,
    "yearmonth": _matching(YEARMONTH_RE),
    "duration": _matching(DURATION_RE),
    "any": _identity,
}


def _primary_key(value: object, names: Sequence[str], problems: _Problems) -> tuple[str, ...]:
    if value is None:
        return ()
    keys = [value] if isinstance(value, str) else value
    if not isinstance(keys, list) or not keys or not all(isinstance(key, str) for key in keys):
        problems.add(None, "badPrimaryKey", "primaryKey must be a field name or a non-empty list of names.")
        return ()
    for key in keys:
        if key not in names:
            message = f'The primary key names "{key}", which is not a field.'
            problems.add(key, "unknownPrimaryKeyField", message)
    if len(set(keys)) != len(keys):
        problems.add(None, "badPrimaryKey", "primaryKey names the same field twice.")
    return tuple(keys)


def property_names(names: Sequence[str]) -> list[str]:
    """Map field names to distinct, valid Table Storage property names, deterministically.

    A name that is already an ASCII identifier, not reserved, and not taken (case-insensitively: some
    Table Storage back ends compare property names that way) is kept. Others have accents folded and
    other characters replaced by ``_``, get an ``f_`` prefix when they would start with a digit or be
    reserved (PartitionKey, RowKey, Timestamp, ETag, odata...), are cut to 255 characters, and get a
    ``_2``, ``_3``... suffix until unique. Names are taken in order, so kept names win over mapped ones
    only by coming first: the result depends on the field order alone.
    """
    taken: set[str] = set()
    result: list[str] = []
    for name in names:
        base = _safe_identifier(name)
        candidate, suffix = base, 2
        while candidate.casefold() in taken:
            tail = f"_{suffix}"
            candidate = base[: MAX_PROPERTY_CHARS - len(tail)] + tail
            suffix += 1
        taken.add(candidate.casefold())
        result.append(candidate)
    return result


def _safe_identifier(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name)
    folded = "".join(char for char in folded if not unicodedata.combining(char))
    text = re.sub(r"[^A-Za-z0-9_]", "_", folded)
    if not text or text[0].isdigit():
        text = "f_" + text
    lowered = text.casefold()
    if lowered in _RESERVED_PROPERTIES or lowered.startswith("odata"):
        text = "f_" + text
    return text[:MAX_PROPERTY_CHARS]
