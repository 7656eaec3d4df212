"""Row validation, column mapping and duplicate keys across chunks."""

from __future__ import annotations

import heapq
import random
import re
from datetime import UTC, date, datetime
from itertools import repeat
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import csvformat, validation
from core.csvformat import Dialect, read_records
from core.errors import Invalid
from core.mapping import ColumnMapping, map_columns, normalise_header
from core.patterns import PatternTooSlow, is_linear
from core.tableschema import (
    DURATION_RE,
    EMAIL_RE,
    INTEGER_RE,
    NUMBER_RE,
    URI_RE,
    UUID_RE,
    YEARMONTH_RE,
    TableSchema,
    compile_pattern,
    parse_table_schema,
)
from core.validation import (
    _ASCII_SPACE,
    _ASCII_TWINS,
    _INTEGER_EXTRAS,
    _NUMBER_EXTRAS,
    VALUE_CHARS,
    ChunkResult,
    KeyDigests,
    KeyRun,
    PatternTime,
    RowError,
    Validator,
    _duplicates,
    _FieldRule,
    _line_safe,
    _parsed,
    _positions_of,
    _row_error,
    _unmatched,
    find_duplicates,
    merge_keys,
)


def schema_of(*fields: dict[str, Any], **extra: Any) -> TableSchema:
    return parse_table_schema({"fields": list(fields), **extra})


def validator_for(schema: TableSchema, *, batch_rows: int = 128) -> Validator:
    return Validator(schema, map_columns(schema, list(schema.field_names)), batch_rows=batch_rows)


def check_cells(field: dict[str, Any], cells: list[str], **extra: Any) -> ChunkResult:
    schema = schema_of({"name": "f", **field}, **extra)
    return validator_for(schema).validate_chunk([[cell] for cell in cells], first_row=1)


CASES: list[tuple[dict[str, Any], str, object]] = [
    # (field descriptor, cell, typed value or error code)
    ({"type": "string"}, "hello", "hello"),
    ({"type": "string", "format": "email"}, "ann@example.org", "ann@example.org"),
    ({"type": "string", "format": "email"}, "ann at example.org", "type"),
    ({"type": "string", "format": "uri"}, "mailto:ann@example.org", "mailto:ann@example.org"),
    ({"type": "string", "format": "uri"}, "no scheme", "type"),
    (
        {"type": "string", "format": "uuid"},
        "123E4567-E89B-12D3-A456-426614174000",
        "123E4567-E89B-12D3-A456-426614174000",
    ),
    ({"type": "string", "format": "uuid"}, "123e4567", "type"),
    ({"type": "string", "constraints": {"minLength": 3}}, "ab", "minLength"),
    ({"type": "string", "constraints": {"maxLength": 3}}, "abcd", "maxLength"),
    ({"type": "string", "constraints": {"maxLength": 3}}, "abc", "abc"),
    ({"type": "string", "constraints": {"pattern": "[A-Z]{2}[0-9]"}}, "AB1", "AB1"),
    ({"type": "string", "constraints": {"pattern": "[A-Z]{2}[0-9]"}}, "AB12", "pattern"),
    ({"type": "string", "constraints": {"pattern": "^[a-z]+$"}}, "abc", "abc"),
    ({"type": "string", "constraints": {"pattern": "a|b"}}, "ab", "pattern"),
    ({"type": "string", "constraints": {"enum": ["x", "y"]}}, "z", "enum"),
    ({"type": "integer"}, "12", 12),
    ({"type": "integer"}, "-12", -12),
    ({"type": "integer"}, "007", 7),
    ({"type": "integer"}, "1.5", "type"),
    ({"type": "integer"}, " 1", "type"),
    ({"type": "integer"}, "1_000", "type"),
    ({"type": "integer"}, "abc", "type"),
    ({"type": "integer"}, "99999999999999999999", "type"),
    ({"type": "integer", "constraints": {"minimum": 10}}, "9", "minimum"),
    ({"type": "integer", "constraints": {"maximum": 10}}, "11", "maximum"),
    ({"type": "integer", "constraints": {"exclusiveMinimum": 10}}, "10", "exclusiveMinimum"),
    ({"type": "integer", "constraints": {"exclusiveMaximum": 10}}, "10", "exclusiveMaximum"),
    ({"type": "integer", "constraints": {"enum": [1, 2]}}, "3", "enum"),
    ({"type": "integer", "constraints": {"enum": [1, 2]}}, "02", 2),
    ({"type": "number"}, "3.25", 3.25),
    ({"type": "number"}, "-1e3", -1000.0),
    ({"type": "number"}, "INF", float("inf")),
    ({"type": "number"}, "infinity", "type"),
    ({"type": "number"}, "1e400", "type"),
    ({"type": "number"}, "1 000", "type"),
    ({"type": "number", "constraints": {"minimum": 0}}, "-0.5", "minimum"),
    ({"type": "number", "constraints": {"maximum": 1.5}}, "1.5", 1.5),
    ({"type": "number", "decimalChar": ","}, "2,5", 2.5),
    ({"type": "number", "decimalChar": ","}, "2.5", "type"),
    ({"type": "boolean"}, "1", True),
    ({"type": "boolean"}, "False", False),
    ({"type": "boolean"}, "no", "type"),
    ({"type": "boolean", "trueValues": ["Y"], "falseValues": ["N"]}, "true", "type"),
    ({"type": "date"}, "2024-02-29", date(2024, 2, 29)),
    ({"type": "date"}, "2023-02-29", "type"),
    ({"type": "date"}, "2024/02/28", "type"),
    ({"type": "date", "constraints": {"minimum": "2024-01-01"}}, "2023-12-31", "minimum"),
    ({"type": "date", "format": "%d/%m/%Y"}, "31/12/2024", date(2024, 12, 31)),
    ({"type": "date", "format": "%d/%m/%Y"}, "2024-12-31", "type"),
    ({"type": "datetime"}, "2024-05-06T07:08:09+02:00", datetime(2024, 5, 6, 5, 8, 9, tzinfo=UTC)),
    ({"type": "datetime"}, "2024-05-06 07:08:09", datetime(2024, 5, 6, 7, 8, 9)),
    ({"type": "datetime"}, "2024-05-06", "type"),
    ({"type": "datetime"}, "20240506T070809", "type"),
    (
        {"type": "datetime", "constraints": {"maximum": "2024-01-01T00:00:00Z"}},
        "2024-01-01T00:30:00+01:00",
        datetime(2023, 12, 31, 23, 30, tzinfo=UTC),
    ),
    (
        {"type": "datetime", "constraints": {"maximum": "2024-01-01T00:00:00Z"}},
        "2024-01-01T00:00:01",
        "maximum",
    ),
    ({"type": "time"}, "07:08:09", datetime(2000, 1, 1, 7, 8, 9).time()),
    ({"type": "time"}, "7:08:09", "type"),
    ({"type": "time", "constraints": {"minimum": "08:00:00"}}, "07:59:59", "minimum"),
    ({"type": "year"}, "2024", 2024),
    ({"type": "year"}, "24", "type"),
    ({"type": "year", "constraints": {"maximum": 2000}}, "2001", "maximum"),
    ({"type": "yearmonth"}, "2024-02", "2024-02"),
    ({"type": "yearmonth"}, "2024-2", "type"),
    ({"type": "duration"}, "PT1H", "PT1H"),
    ({"type": "duration"}, "1H", "type"),
    ({"type": "any"}, "whatever", "whatever"),
]


@pytest.mark.parametrize(("field", "cell", "expected"), CASES)
def test_cells_are_typed_or_refused(field: dict[str, Any], cell: str, expected: object) -> None:
    result = check_cells(field, [cell])
    if isinstance(expected, str) and expected in _CODES:
        assert [error.code for error in result.errors] == [expected]
        assert result.valid_rows == []
        assert result.invalid_count == 1
    else:
        assert result.errors == []
        assert result.valid_rows == [{"f": expected}]
        assert type(result.valid_rows[0]["f"]) is type(expected)


_CODES = {
    "type",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "enum",
}


@pytest.mark.parametrize(("field", "cell", "expected"), CASES)
def test_a_cell_gets_the_same_verdict_among_many(field: dict[str, Any], cell: str, expected: object) -> None:
    # Whole-column fast paths must agree with the cell-by-cell reading, wherever the cell sits.
    invalid = isinstance(expected, str) and expected in _CODES
    result = check_cells(field, [cell] * 130)
    assert [(error.row, error.code) for error in result.errors] == (
        [(row, expected) for row in range(1, 131)] if invalid else []
    )
    neighbours = [c for f, c, e in CASES if f == field and e not in _CODES and c != cell]
    if not neighbours:
        return
    result = check_cells(field, [*(neighbours * 100)[:77], cell, *(neighbours * 100)[:50]])
    codes = [(error.row, error.code) for error in result.errors]
    if invalid:
        assert codes == [(78, expected)]
    else:
        assert codes == []
        assert result.valid_rows[77] == {"f": expected}


def test_messages_say_where_and_what() -> None:
    schema = schema_of(
        {"name": "age", "type": "integer", "constraints": {"maximum": 120}},
        {"name": "email", "type": "string", "format": "email", "constraints": {"required": True}},
        {"name": "status", "constraints": {"enum": ["new", "done"]}},
    )
    rows = [["30", "a@b.co", "new"], ["abc", "", "old"], ["130", "a@b.co", "done"]]
    result = validator_for(schema).validate_chunk(rows, first_row=11)
    assert [error.message for error in result.errors] == [
        'Row 12, column "age": "abc" is not an integer.',
        'Row 12, column "email": a value is required.',
        'Row 12, column "status": "old" is not one of the allowed values: "new", "done".',
        'Row 13, column "age": "130" is greater than the maximum, 120.',
    ]
    assert result.errors[0] == RowError(
        12, "age", "type", 'Row 12, column "age": "abc" is not an integer.', "abc"
    )
    assert result.errors[0].to_json()["row"] == 12
    assert result.valid_row_numbers == [11]
    assert (result.row_count, result.invalid_count, result.valid_count) == (3, 2, 1)


def test_long_values_are_truncated() -> None:
    result = check_cells({"type": "integer"}, ["9" * 300 + "x"])
    error = result.errors[0]
    assert len(error.value) == VALUE_CHARS
    assert '"' + "9" * 59 + '…" is not an integer.' in error.message


def test_missing_values_are_none_and_required_fields_refuse_them() -> None:
    schema = schema_of(
        {"name": "a", "type": "integer"},
        {"name": "b", "type": "integer", "constraints": {"required": True}},
        missingValues=["", "NA", "-"],
    )
    result = validator_for(schema).validate_chunk([["NA", "1"], ["-", "NA"], ["", "2"]], first_row=1)
    assert result.valid_rows == [{"a": None, "b": 1}, {"a": None, "b": 2}]
    assert [(error.row, error.column, error.code) for error in result.errors] == [(2, "b", "required")]


def test_an_empty_string_is_a_value_when_not_a_missing_value() -> None:
    result = check_cells({"type": "integer"}, ["", "1"], missingValues=["NA"])
    assert [(error.row, error.code) for error in result.errors] == [(1, "type")]
    result = check_cells({"type": "string"}, ["", "NA"], missingValues=["NA"])
    assert result.valid_rows == [{"f": ""}, {"f": None}]


def test_primary_key_cells_are_required() -> None:
    schema = schema_of({"name": "id", "type": "integer"}, primaryKey="id")
    result = validator_for(schema).validate_chunk([[""], ["1"]], first_row=1)
    assert [(error.row, error.code) for error in result.errors] == [(1, "required")]


def test_short_and_long_rows() -> None:
    schema = schema_of({"name": "a"}, {"name": "b"}, {"name": "c"})
    mapping = map_columns(schema, ["a", "b", "c", "unused"])
    rows = [
        ["1", "2", "3", "x"],
        ["1"],
        ["1", "2", "3", "x", "extra"],
        ["1", "2", "3"],
        ["1", "2", "3", "x", "", ""],
    ]
    result = Validator(schema, mapping).validate_chunk(rows, first_row=1)
    assert [(error.row, error.column, error.code) for error in result.errors] == [
        (2, "b", "missingCell"),
        (2, "c", "missingCell"),
        (3, "", "extraCell"),
    ]
    assert result.errors[2].value == "extra"
    assert result.errors[2].message == "Row 3 has 5 cells, but the header has 4 columns."
    # Row 4 lacks only the ignored column; row 5 has empty extra cells (a trailing delimiter).
    assert result.valid_row_numbers == [1, 4, 5]


@pytest.mark.parametrize("as_columns", [True, False], ids=["columns", "records"])
def test_a_row_of_empty_cells_is_one_blank_row_error(as_columns: bool) -> None:
    schema = schema_of({"name": "id", "type": "integer", "constraints": {"required": True}}, {"name": "v"})
    text = "id,v,ignored\n1,a,x\n,,\n2,,\n,,\n,,x\n"  # rows 2 and 4 blank; 3 and 5 are not
    records = read_records(iter([text]), Dialect(",", '"', header=True), max_columns=5, max_field_chars=50)
    header = next(records)
    validator = Validator(schema, map_columns(schema, header), batch_rows=2)
    result = validator.validate_chunk(records if as_columns else list(records), first_row=1, keep_rows=True)
    assert [(error.row, error.column, error.code) for error in result.errors] == [
        (2, "", "blankRow"),
        (4, "", "blankRow"),
        (5, "id", "required"),
    ]
    assert result.errors[0].message == "Row 2 is blank: every cell is empty."
    assert (result.row_count, result.invalid_count, result.valid_row_numbers) == (5, 3, [1, 3])


def test_unmapped_optional_fields_are_none() -> None:
    schema = schema_of({"name": "a"}, {"name": "b", "type": "integer"})
    mapping = map_columns(schema, ["a"])
    assert mapping.sources == (0, None)
    result = Validator(schema, mapping).validate_chunk([["x"]], first_row=1)
    assert result.valid_rows == [{"a": "x", "b": None}]


def test_validator_refuses_a_mapping_for_another_schema() -> None:
    schema = schema_of({"name": "a"})
    with pytest.raises(ValueError, match="another schema"):
        Validator(schema, ColumnMapping(header=("b",), field_names=("b",), sources=(0,)))


def test_parsing_a_column_keeps_going_after_a_failure() -> None:
    assert _parsed(int, ["1", "x", "3", "", "5"]) == ([1, None, 3, None, 5], [1, 3])
    assert _parsed(int, []) == ([], [])


# Column mapping


def test_automatic_mapping_folds_case_spaces_hyphens_and_accents() -> None:
    schema = schema_of({"name": "firstName"}, {"name": "e_mail"}, {"name": "Größe"}, {"name": "note"})
    mapping = map_columns(schema, ["FIRST NAME", "E-Mail", "GROSSE", "extra"])
    assert mapping.to_json() == {
        "fields": {"firstName": "FIRST NAME", "e_mail": "E-Mail", "Größe": "GROSSE", "note": None},
        "ignored": ["extra"],
    }
    assert mapping_problems(schema, ["Grösse", "grosse"]) == [("Größe", "ambiguousColumn")]
    assert normalise_header("  Ünit_Price-EUR ") == "unitpriceeur"


def test_exact_names_win_over_normalised_ones() -> None:
    schema = schema_of({"name": "a-b"}, {"name": "a_b"})
    assert map_columns(schema, ["a_b", "a-b"]).sources == (1, 0)


def test_explicit_mapping_wins_and_the_rest_is_automatic() -> None:
    schema = schema_of({"name": "id", "type": "integer"}, {"name": "name"}, {"name": "city"}, primaryKey="id")
    mapping = map_columns(schema, ["Number", "name", "town", "city"], {"id": "Number", "city": "town"})
    assert mapping.sources == (0, 1, 2)
    assert mapping.ignored == ("city",)
    assert map_columns(schema, ["id", "name", "city"], {"city": None}).sources == (0, 1, None)


def test_a_header_an_export_neutralised_maps_to_its_field() -> None:
    schema = schema_of({"name": "id"}, {"name": "+/- change", "type": "number"}, {"name": "@handle"})
    assert map_columns(schema, ["id", "'+/- change", "'@handle"]).sources == (0, 1, 2)
    assert map_columns(schema, ["id", "'+/- Change", "'@HANDLE"]).sources == (0, 1, 2)  # normalised too
    # The name itself wins over one that only reads as it; a ' before other text is part of the name.
    assert map_columns(schema, ["'@handle", "@handle", "id"]).sources == (2, None, 1)
    assert map_columns(schema_of({"name": "x"}), ["'x"]).sources == (None,)


def mapping_problems(
    schema: TableSchema, header: list[str], mapping: Any = None
) -> list[tuple[str | None, str]]:
    with pytest.raises(Invalid) as caught:
        map_columns(schema, header, mapping)
    return [(problem["field"], problem["code"]) for problem in caught.value.problems]


def test_every_mapping_problem_is_listed() -> None:
    schema = schema_of(
        {"name": "id", "type": "integer"},
        {"name": "name", "constraints": {"required": True}},
        {"name": "city"},
        {"name": "zip"},
        primaryKey="id",
    )
    header = ["ID", "town", "town", "zip", "Zip"]
    problems = mapping_problems(schema, header, {"nope": "ID", "city": "town", "name": "missing"})
    assert problems == [
        ("nope", "unknownField"),
        ("city", "ambiguousColumn"),
        ("name", "unknownColumn"),
        ("name", "unmappedRequiredField"),
    ]
    assert mapping_problems(schema_of({"name": "a"}, {"name": "b"}), ["x"], {"a": "x", "b": "x"}) == [
        ("b", "columnMappedTwice")
    ]
    assert mapping_problems(schema_of({"name": "ab"}), ["A B", "a-b"]) == [("ab", "ambiguousColumn")]
    assert mapping_problems(schema, ["name"]) == [("id", "unmappedRequiredField")]
    assert mapping_problems(schema_of({"name": "a"}), ["a"], {"a": 3}) == [("a", "badMapping")]


def test_unmapped_primary_key_message() -> None:
    schema = schema_of({"name": "id", "type": "integer"}, primaryKey="id")
    with pytest.raises(Invalid) as caught:
        map_columns(schema, ["other"])
    assert caught.value.status == 422
    assert caught.value.problems[0]["message"] == (
        'Field "id" is a primary key field, but no column of the file is mapped to it.'
    )


# Uniqueness across chunks

KEYED = schema_of(
    {"name": "id", "type": "integer"},
    {"name": "email", "type": "string", "constraints": {"unique": True}},
    {"name": "n", "type": "integer", "constraints": {"maximum": 5}},
    primaryKey="id",
)


def chunks_of(rows: list[list[str]], sizes: list[int], schema: TableSchema = KEYED) -> list[ChunkResult]:
    validator = validator_for(schema, batch_rows=3)
    results, start = [], 0
    for size in sizes:
        results.append(validator.validate_chunk(rows[start : start + size], first_row=start + 1))
        start += size
    assert start == len(rows)
    return results


DUPLICATED = [
    ["1", "a@x.io", "1"],
    ["2", "b@x.io", "9"],  # invalid (n), but its keys still count
    ["3", "c@x.io", "1"],
    ["02", "d@x.io", "1"],  # 02 is the integer 2: a duplicate of row 2
    ["4", "A@x.io", "1"],
    ["5", "a@x.io", "1"],  # email duplicate of row 1
    ["1", "a@x.io", "1"],  # both keys duplicated
    ["x", "e@x.io", "1"],  # a bad key takes no part
    ["x", "f@x.io", "1"],
]


def test_duplicates_are_found_across_chunks_in_any_order() -> None:
    results = chunks_of(DUPLICATED, [2, 3, 4])
    unique = "values in this column must be unique"
    expected = [
        (
            4,
            "id",
            "primaryKey",
            'Row 4, column "id": "02" is already used by row 2; the primary key must be unique.',
        ),
        (6, "email", "unique", f'Row 6, column "email": "a@x.io" is already used by row 1; {unique}.'),
        (7, "email", "unique", f'Row 7, column "email": "a@x.io" is already used by row 1; {unique}.'),
        (
            7,
            "id",
            "primaryKey",
            'Row 7, column "id": "1" is already used by row 1; the primary key must be unique.',
        ),
    ]
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        errors = find_duplicates(results[index].keys for index in order)
        assert [(error.row, error.column, error.code, error.message) for error in errors] == expected
    merged = merge_keys(result.keys for result in results)
    assert merged.newly_invalid_rows == [4, 6, 7]  # row 2's own error is not counted again


def test_digests_survive_json() -> None:
    results = chunks_of(DUPLICATED, [5, 4])
    rebuilt = [KeyDigests.from_json(result.keys.to_json()) for result in results]
    assert rebuilt == [result.keys for result in results]
    assert find_duplicates(rebuilt) == find_duplicates(result.keys for result in results)


def test_the_same_chunk_given_twice_is_not_a_duplicate_of_itself() -> None:
    results = chunks_of(DUPLICATED[:3], [3])
    assert find_duplicates([results[0].keys, results[0].keys]) == []


def test_composite_and_typed_keys() -> None:
    schema = schema_of(
        {"name": "day", "type": "date"},
        {"name": "at", "type": "datetime"},
        {"name": "code"},
        primaryKey=["day", "at", "code"],
    )
    rows = [
        ["2024-01-01", "2024-01-01T10:00:00Z", "a"],
        ["2024-01-01", "2024-01-01T11:00:00+01:00", "a"],  # the same instant
        ["2024-01-01", "2024-01-01T10:00:00", "a"],  # naive: another key
        ["2024-01-01", "2024-01-01T10:00:00Z", "a\x1fb"],
    ]
    errors = find_duplicates(result.keys for result in chunks_of(rows, [1, 3], schema))
    assert [(error.row, error.column, error.value) for error in errors] == [
        (2, "day, at, code", "2024-01-01, 2024-01-01T11:00:00+01:00, a")
    ]
    assert errors[0].message.startswith('Row 2, columns "day, at, code": ')


def test_long_keys_are_digested_and_still_compared() -> None:
    schema = schema_of({"name": "k"}, primaryKey="k")
    long_a, long_b = "a" * 100, "a" * 99 + "b"
    results = chunks_of([[long_a], [long_b], [long_a]], [2, 1], schema)
    assert all(len(str(key)) <= 41 for result in results for key in result.keys.runs[0].keys)
    assert [error.row for error in find_duplicates(result.keys for result in results)] == [3]


ROW_VALUES = st.lists(
    st.tuples(
        st.sampled_from(["1", "2", "3", "03", "x", "", "-4"]),
        st.sampled_from(["a", "b", "", "toolong"]),
        st.sampled_from(["1", "5", "6", "y", ""]),
    ).map(list),
    max_size=40,
)
KEYED_SMALL = schema_of(
    {"name": "id", "type": "integer"},
    {"name": "s", "constraints": {"unique": True, "maxLength": 3}},
    {"name": "n", "type": "integer", "constraints": {"maximum": 5}},
    primaryKey="id",
)


@settings(max_examples=150, deadline=None)
@given(ROW_VALUES, st.lists(st.integers(min_value=1, max_value=7), max_size=40), st.randoms())
def test_any_split_into_chunks_gives_the_same_errors(
    rows: list[list[str]], sizes: list[int], rng: random.Random
) -> None:
    validator = Validator(KEYED_SMALL, map_columns(KEYED_SMALL, ["id", "s", "n"]), batch_rows=4)
    whole = validator.validate_chunk(rows, first_row=1)
    whole_errors = whole.errors + find_duplicates([whole.keys])
    pieces: list[ChunkResult] = []
    start = 0
    for size in [*sizes, len(rows)]:
        if start >= len(rows):
            break
        pieces.append(validator.validate_chunk(rows[start : start + size], first_row=start + 1))
        start += size
    rng.shuffle(pieces)
    split_errors = [error for piece in pieces for error in piece.errors] + find_duplicates(
        piece.keys for piece in pieces
    )

    def key(error: RowError) -> tuple[int, str, str]:
        return error.row, error.column, error.code

    assert sorted(split_errors, key=key) == sorted(whole_errors, key=key)
    assert sum(piece.invalid_count for piece in pieces) == whole.invalid_count
    assert sorted(row for piece in pieces for row in piece.valid_row_numbers) == whole.valid_row_numbers


def heap_merge(runs: list[KeyRun]) -> list[tuple[int, int, KeyRun, int]]:
    """The k-way merge merge_keys did before it sorted all keys at once, holding one key per run."""
    streams = [zip(run.keys, run.rows, repeat(index), range(len(run.keys))) for index, run in enumerate(runs)]
    found = []
    previous: Any = None
    first = 0
    for key, row, index, position in heapq.merge(*streams):
        if key != previous:
            previous, first = key, row
            continue
        if row == first:
            continue
        found.append((row, first, runs[index], position))
    return found


@settings(max_examples=200, deadline=None)
@given(ROW_VALUES, st.lists(st.integers(min_value=1, max_value=7), max_size=40), st.randoms(), st.booleans())
def test_merging_by_one_sort_finds_what_the_k_way_merge_finds(
    rows: list[list[str]], sizes: list[int], rng: random.Random, twice: bool
) -> None:
    validator = Validator(KEYED_SMALL, map_columns(KEYED_SMALL, ["id", "s", "n"]), batch_rows=4)
    runs_by_key: dict[tuple[str, tuple[str, ...]], list[KeyRun]] = {}
    start = 0
    for size in [*sizes, len(rows)]:
        if start >= len(rows):
            break
        result = validator.validate_chunk(rows[start : start + size], first_row=start + 1)
        for run in result.keys.runs:
            runs_by_key.setdefault((run.code, run.columns), []).append(run)
        start += size
    for runs in runs_by_key.values():
        rng.shuffle(runs)
        if twice:  # a chunk handed in twice: its rows are no duplicates of themselves
            runs.append(runs[0])
        assert _duplicates(runs) == heap_merge(runs)


CELL_TEXT = st.text(alphabet="0123456789+-.eE:TZ _/@a x\n\u0661,", max_size=12) | st.sampled_from(
    ["2024-02-29", "2024-02-30", "2024-01-01T00:00:00Z", "12:30:00", "1e999", "NaN", "INF", "a@b.co", "true"]
)
FIELDS = [
    {"name": "f", "type": "integer", "constraints": {"minimum": -5, "maximum": 500}},
    {"name": "f", "type": "number", "constraints": {"exclusiveMaximum": 1000}},
    {"name": "f", "type": "date", "constraints": {"maximum": "2024-02-29"}},
    {"name": "f", "type": "datetime"},
    {"name": "f", "type": "time"},
    {"name": "f", "type": "year"},
    {"name": "f", "type": "boolean"},
    {"name": "f", "type": "string", "format": "email", "constraints": {"maxLength": 8}},
    {"name": "f", "type": "string", "constraints": {"pattern": "[0-9]+", "enum": ["1", "12", "123"]}},
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIELDS), st.lists(CELL_TEXT, max_size=60))
def test_column_reading_agrees_with_reading_cell_by_cell(field: dict[str, Any], cells: list[str]) -> None:
    schema = schema_of(field)
    rule = _FieldRule(schema.fields[0], 0, frozenset(schema.missing_values))
    typed, problems = rule.check(cells)
    expected_typed, expected_problems = [], []
    for offset, cell in enumerate(cells):
        if cell == "":
            expected_typed.append(None)
            continue
        value, code, detail = rule.read_one(cell)
        expected_typed.append(value)
        if code is not None:
            expected_problems.append((offset, code, detail))
    assert sorted(problems) == expected_problems
    assert [repr(value) for value in typed] == [repr(value) for value in expected_typed]


MORE_FIELDS = [
    *FIELDS,
    {"name": "f", "type": "integer", "constraints": {"enum": [1, 2, 30], "required": True}},
    {"name": "f", "type": "integer", "groupChar": " "},
    {"name": "f", "type": "number", "decimalChar": ",", "constraints": {"minimum": 0}},
    {"name": "f", "type": "number", "bareNumber": False, "constraints": {"maximum": 5}},
    {"name": "f", "type": "number", "constraints": {"minimum": 0, "maximum": 1e300}},
    {"name": "f", "type": "date", "format": "%d/%m/%Y"},
    {"name": "f", "type": "datetime", "constraints": {"minimum": "2024-01-01T00:00:00+01:00"}},
    {"name": "f", "type": "time", "constraints": {"maximum": "12:00:00"}},
    {"name": "f", "type": "year", "constraints": {"exclusiveMinimum": 2000}},
    {"name": "f", "type": "yearmonth"},
    {"name": "f", "type": "duration"},
    {"name": "f", "type": "boolean", "trueValues": ["Y", "1"], "falseValues": ["N"]},
    {"name": "f", "type": "string", "format": "uri"},
    {"name": "f", "type": "string", "format": "uuid", "constraints": {"unique": True}},
    {"name": "f", "type": "string", "format": "binary"},
    {"name": "f", "type": "string", "constraints": {"minLength": 2, "maxLength": 5, "required": True}},
    {"name": "f", "type": "string", "constraints": {"pattern": "^[0-9a]{1,3}(e[0-9])?$"}},
    {"name": "f", "type": "string", "constraints": {"pattern": "[^x]*"}},  # may match a line break
    {"name": "f", "type": "string", "constraints": {"pattern": "(a|1)\\1"}},  # a backreference
    {"name": "f", "type": "string", "constraints": {"pattern": "\\d+\\s?\\w*"}},
    {"name": "f", "type": "any", "constraints": {"enum": ["a", "1", ""]}},
]
MORE_CELLS = CELL_TEXT | st.sampled_from(
    [
        *("", "NA", "1", "2", "30", "1 000", "2,5", "$4", "31/12/2024", "2024-02", "P1D", "Y", "N", "aGk="),
        *("https://x.y", "123e4567-e89b-12d3-a456-426614174000", "12 a", "aa", "1a1", "99999999999999999999"),
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(MORE_FIELDS), st.lists(MORE_CELLS, max_size=80), st.sampled_from([[""], ["", "NA"]]))
def test_reading_a_column_again_and_again_agrees_with_reading_cell_by_cell(
    field: dict[str, Any], cells: list[str], missing: list[str]
) -> None:
    # The second and third reading go through what the field remembers of the first (see _Remembered).
    schema = schema_of(field, missingValues=missing)
    rule = _FieldRule(schema.fields[0], 0, frozenset(schema.missing_values))
    expected_typed, expected_problems = [], []
    for offset, cell in enumerate(cells):
        if cell in missing:
            expected_typed.append(None)
            if rule.required:
                expected_problems.append((offset, "required", ""))
            continue
        value, code, detail = rule.read_one(cell)
        expected_typed.append(value)
        if code is not None:
            expected_problems.append((offset, code, detail))
    for _ in range(3):
        typed, problems = rule.check(cells)
        assert sorted(problems) == sorted(expected_problems)
        assert [repr(value) for value in typed] == [repr(value) for value in expected_typed]


REGEX_ATOMS = st.sampled_from(
    [
        *("a", "b", "0", "\\.", ".", "[ab]", "[^a]", "[^\\n]", "[a-z]", "\\d", "\\D", "\\s", "\\S", "\\w"),
        *("\\W", "\\n", "^", "$", "\\b", "\\B", "\\A", "\\Z", "(?=a)", "(?!b)", "(?<=a)", "()", "(a)\\1"),
        *("(?=.)", "(?!\\w)", "(?<=[ab])", "(?<!0)", "(?=\\b)"),
    ]
)
REGEXES = st.recursive(
    REGEX_ATOMS,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map("".join),
        st.lists(inner, min_size=2, max_size=3).map("|".join),
        st.tuples(inner, st.sampled_from(["*", "+", "?", "{1,2}", "++", "*?", "?+"])).map(
            lambda pair: f"(?:{pair[0]}){pair[1]}"
        ),
        inner.map(lambda body: f"({body})"),
        inner.map(lambda body: f"(?>{body})"),
    ),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None)
@given(REGEXES, st.lists(st.text(alphabet="ab0.\n ", max_size=4), max_size=30))
def test_line_joined_matching_suspects_every_cell_that_does_not_match(pattern: str, cells: list[str]) -> None:
    try:
        compiled = re.compile(pattern)
    except re.error:
        return
    if not _line_safe(compiled):
        return
    bad = {offset for offset, cell in enumerate(cells) if compiled.fullmatch(cell) is None}
    assert bad <= set(_unmatched(compiled)(cells))
    with mock.patch.object(validation, "JOINED_CHARS", 3):  # one call per cell or two
        assert bad <= set(_unmatched(compiled)(cells))


def test_one_regex_call_covers_whole_cells_of_about_joined_chars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "JOINED_CHARS", 10)
    calls: list[tuple[int, int]] = []
    joined = validation._joined_prefix

    def counted(body: str) -> Any:
        match = joined(body)

        def call(text: str, position: int, stop: int) -> Any:
            calls.append((position, stop))
            return match(text, position, stop)

        return call

    monkeypatch.setattr(validation, "_joined_prefix", counted)
    unmatched = _unmatched(re.compile("a+"))
    cells = ["aaaa"] * 12
    assert unmatched(cells) == []
    assert len(calls) == 4 and all(stop - position <= 10 + 5 for position, stop in calls)
    cells[7] = "ab"
    assert unmatched(cells) == [7]


def test_the_ascii_twins_of_format_patterns_match_ascii_text_alike() -> None:
    space = re.compile(rf"[{_ASCII_SPACE}]")
    for code in range(128):
        assert (re.fullmatch(r"\s", chr(code)) is None) == (space.fullmatch(chr(code)) is None)
    assert set(_ASCII_TWINS) == {EMAIL_RE.pattern, URI_RE.pattern}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="a.@:+-\t\x1c \x7f/", max_size=8), max_size=20))
def test_ascii_and_unicode_matching_suspect_the_same_cells(cells: list[str]) -> None:
    for pattern in (EMAIL_RE, URI_RE):
        twin = re.compile(_ASCII_TWINS[pattern.pattern])
        refused = [pattern.fullmatch(cell) is None for cell in cells]
        assert [twin.fullmatch(cell) is None for cell in cells] == refused
        bad = {offset for offset, cell in enumerate(cells) if pattern.fullmatch(cell) is None}
        assert bad <= set(_unmatched(pattern)(cells))


def test_patterns_that_can_match_a_line_break_or_see_past_a_cell_are_matched_cell_by_cell() -> None:
    assert all(
        _line_safe(re.compile(p))
        for p in ["[A-Z]{2}-[0-9]{4}", "(a+)", "\\bx\\S*", "(a|b)+", ".", "P(?=[0-9])"]
    )
    assert all(_line_safe(p) for p in (EMAIL_RE, URI_RE, UUID_RE, YEARMONTH_RE, DURATION_RE))
    assert not any(
        _line_safe(re.compile(p))
        for p in ["[^x]", "\\s", "a\\n", "(a)\\1", "a(?=\\n)", "(?s:.)", "[\\x00-z]", "\\B", "^a", "a$"]
    )


@settings(max_examples=200, deadline=None)
@given(REGEXES, st.lists(st.text(alphabet="ab0.\n ", max_size=4), max_size=30))
def test_patterns_in_process_or_in_a_child_give_the_verdicts_of_fullmatch(
    pattern: str, cells: list[str]
) -> None:
    try:
        schema = schema_of({"name": "f", "type": "string", "constraints": {"pattern": pattern}})
    except Invalid:
        return  # XML Schema has no such construct, or the pattern does not compile
    rule = _FieldRule(schema.fields[0], 0, frozenset())
    compiled = compile_pattern(pattern)
    _typed, problems = rule.check(cells)
    assert [offset for offset, _code, _detail in problems] == [
        offset for offset, cell in enumerate(cells) if compiled.fullmatch(cell) is None
    ]


def test_a_pattern_that_can_backtrack_steeply_is_checked_exactly_in_a_child() -> None:
    schema = schema_of({"name": "list", "type": "string", "constraints": {"pattern": "(\\d+,)*\\d+"}})
    assert not is_linear(compile_pattern("(\\d+,)*\\d+").pattern)
    result = validator_for(schema).validate_chunk(
        iter([["1,2,3"], ["12"], ["1,,2"], [""], ["x"], ["1,2,3"]]), first_row=2
    )
    assert [(error.row, error.code, error.value) for error in result.errors] == [
        (4, "pattern", "1,,2"),
        (6, "pattern", "x"),
    ]


def test_a_runaway_pattern_stops_the_chunk_naming_its_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "PATTERN_BATCH_SECONDS", 0.5)
    schema = schema_of({"name": "code", "type": "string", "constraints": {"pattern": "(a+)+"}})
    validator = validator_for(schema)
    expected = re.escape('Rows 2 to 3: The pattern of field "code" ("(a+)+") took longer than 0.5 seconds')
    with pytest.raises(PatternTooSlow, match=expected):
        validator.validate_chunk(iter([["aaa"], ["a" * 60 + "!"]]), first_row=2)


def test_a_chunk_has_a_time_for_patterns_in_all(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = schema_of({"name": "code", "type": "string", "constraints": {"pattern": "(a+)+"}})
    validator = validator_for(schema)  # it checks the missing value "" with the pattern: give it time
    monkeypatch.setattr(validation, "PATTERN_CHUNK_SECONDS", 0.0)
    expected = r"^Row 2: Patterns used up the 0 seconds one chunk of rows gets\."
    with pytest.raises(PatternTooSlow, match=expected):
        validator.validate_chunk(iter([["aaa"]]), first_row=2)


def test_a_batch_cut_short_by_the_chunk_says_the_chunk_ran_out(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = schema_of({"name": "code", "type": "string", "constraints": {"pattern": "(a+)+"}})
    validator = validator_for(schema)
    monkeypatch.setattr(validation, "PATTERN_CHUNK_SECONDS", 1.0)  # the batch gets 1 s, not 5
    expected = r'used up the 1 seconds one chunk of rows gets; the pattern of field "code" \("\(a\+\)\+"\)'
    with pytest.raises(PatternTooSlow, match=expected):
        validator.validate_chunk(iter([["a" * 60 + "!"]]), first_row=2)


def test_pattern_time_is_per_chunk_names_the_slowest_and_patience_multiplies_it() -> None:
    time_left = PatternTime(patience=3.0)
    assert time_left.next_batch() == 3 * validation.PATTERN_BATCH_SECONDS
    time_left.spent[("a", "(x|y)+")] = 3 * validation.PATTERN_CHUNK_SECONDS - 3.0
    time_left.spent[("b", "(x|z)+")] = 1.0
    assert time_left.next_batch() == 2.0
    time_left.spent[("b", "(x|z)+")] += 1.0  # less than the least a batch gets is left
    with pytest.raises(PatternTooSlow, match=r'field "a" \("\(x\|y\)\+"\) took 177\.0 of them'):
        time_left.next_batch()

    schema = schema_of(
        {"name": "a", "type": "string", "constraints": {"pattern": "(x|y)+"}},
        {"name": "b", "type": "string", "constraints": {"pattern": "(x|z)+"}},
    )
    validator = validator_for(schema)
    validator.pattern_time.spent[("a", "(x|y)+")] = validation.PATTERN_CHUNK_SECONDS  # the last chunk's
    result = validator.validate_chunk(iter([["x", "z"], ["y", "y"]]), first_row=2)
    assert [(error.row, error.column) for error in result.errors] == [(3, "b")]
    assert set(validator.pattern_time.spent) == {("a", "(x|y)+"), ("b", "(x|z)+")}  # one clock, both fields
    assert sum(validator.pattern_time.spent.values()) < validation.PATTERN_CHUNK_SECONDS


def test_a_missing_value_a_pattern_cannot_judge_in_time_stops_the_validator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(validation, "PATTERN_BATCH_SECONDS", 0.5)
    schema = schema_of(
        {"name": "code", "type": "string", "constraints": {"pattern": "(a+)+"}},
        missingValues=["", "a" * 60 + "!"],
    )
    with pytest.raises(PatternTooSlow, match='field "code"'):
        validator_for(schema)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_any_integer_formatted_with_str_validates_back(number: int) -> None:
    result = check_cells({"type": "integer"}, [str(number)])
    assert result.valid_rows == [{"f": number}]


def test_batch_size_does_not_change_the_result() -> None:
    rows = [[str(index % 17), "a" if index % 5 else "b", str(index % 9)] for index in range(200)]
    results = [
        Validator(KEYED, map_columns(KEYED, ["id", "email", "n"]), batch_rows=size).validate_chunk(
            rows, first_row=1
        )
        for size in (1, 7, 128, 1000)
    ]
    assert all(result == results[0] for result in results[1:])
    assert results[0].invalid_count > 0


def test_validate_stream_numbers_rows_across_chunks() -> None:
    schema = schema_of({"name": "n", "type": "integer", "constraints": {"maximum": 5}})
    rows = ([str(index % 8)] for index in range(25))  # a generator: the stream is read once
    results = list(validator_for(schema).validate_stream(rows, first_row=1, chunk_rows=10))
    assert [(result.first_row, result.row_count) for result in results] == [(1, 10), (11, 10), (21, 5)]
    assert [error.row for result in results for error in result.errors] == [7, 8, 15, 16, 23, 24]
    assert all(result.valid_rows == [] for result in results)  # the validation phase keeps no rows


STREAM_SCHEMA = schema_of(
    {"name": "id", "type": "integer"},
    {"name": "day", "type": "date", "constraints": {"maximum": "2024-06-30"}},
    {"name": "flag", "type": "boolean"},
    {"name": "code", "constraints": {"pattern": "[A-Z]{2}", "unique": True}},
    primaryKey="id",
)
STREAM_CELLS = st.tuples(
    st.sampled_from(["1", "2", "3", "02", "x", "", "4"]),
    st.sampled_from(["2024-01-05", "2024-07-01", "2024-02-30", "", "soon"]),
    st.sampled_from(["true", "false", "", "maybe"]),
    st.sampled_from(["AB", "CD", "ab", "", "AB"]),
).map(list)
STREAM_ROWS = st.lists(STREAM_CELLS | st.lists(st.sampled_from(["1", "AB", ""]), max_size=6), max_size=60)


@settings(max_examples=200, deadline=None)
@given(
    STREAM_ROWS,
    st.integers(min_value=1, max_value=25),
    st.integers(min_value=1, max_value=9),
    st.booleans(),
    st.integers(min_value=1, max_value=40),
)
def test_validating_the_columns_read_records_hands_out_agrees_with_validating_rows(
    rows: list[list[str]], chunk_rows: int, batch_rows: int, keep_rows: bool, piece_chars: int
) -> None:
    text = "".join(",".join(row) + "\n" for row in [list(STREAM_SCHEMA.field_names), *rows])
    dialect = Dialect(delimiter=",", quote_char='"', header=True)
    validator = Validator(
        STREAM_SCHEMA, map_columns(STREAM_SCHEMA, list(STREAM_SCHEMA.field_names)), batch_rows=batch_rows
    )

    def results(columns: bool) -> list[ChunkResult]:
        records = read_records(iter([text]), dialect, max_columns=20, max_field_chars=100)
        next(records)
        stream = records if columns else list(records)
        return list(validator.validate_stream(stream, chunk_rows=chunk_rows, keep_rows=keep_rows))

    with mock.patch.object(csvformat, "PIECE_CHARS", piece_chars):
        by_columns = results(columns=True)
    assert by_columns == results(columns=False)
    assert merge_keys(result.keys for result in by_columns).errors == find_duplicates(
        result.keys for result in results(columns=False)
    )


def test_row_errors_built_fast_are_row_errors() -> None:
    error = _row_error(3, "id", "type", "message", "x")
    assert type(error) is RowError
    assert error == RowError(3, "id", "type", "message", "x")
    assert hash(error) == hash(RowError(3, "id", "type", "message", "x"))
    with pytest.raises(AttributeError):
        error.row = 4  # type: ignore[misc]


@given(
    st.lists(st.integers(min_value=0, max_value=40), max_size=300).map(sorted),
    st.sets(st.integers(min_value=0, max_value=45), max_size=20),
)
def test_positions_of_keys_by_bisection_agree_with_a_scan(keys: list[int], wanted: set[int]) -> None:
    assert list(_positions_of(keys, wanted)) == [offset for offset, key in enumerate(keys) if key in wanted]


def test_a_column_of_a_few_hundred_values_is_read_from_memory_alike() -> None:
    schema = schema_of({"name": "f", "type": "date", "constraints": {"minimum": "2024-01-03"}})
    rule = _FieldRule(schema.fields[0], 0, frozenset(schema.missing_values))
    rng = random.Random(4)
    days = [f"2024-{month:02d}-{day:02d}" for month in range(1, 13) for day in range(1, 31)]
    for _ in range(12):
        cells = [rng.choice(days) for _ in range(256)]
        typed, problems = rule.check(cells)
        expected = [rule.read_one(cell) for cell in cells]
        assert typed == [value for value, _code, _detail in expected]
        wanted = [(offset, code, detail) for offset, (_value, code, detail) in enumerate(expected) if code]
        assert sorted(problems) == wanted
    remembered = rule._remembered
    assert remembered is not None and remembered.on  # the memory pays: 360 distinct days


NUMERIC_TEXT = st.text(alphabet=st.characters(max_codepoint=127), max_size=10) | st.sampled_from(
    ["inf", "-Infinity", "NAN", "1_000", " 5", "5\n", "1e5", ".5", "5.", "+.5e-3", "0x10", "1j"]
)


@given(NUMERIC_TEXT)
def test_what_int_and_float_take_without_their_extra_characters_is_in_the_grammar(text: str) -> None:
    for parse, extras, grammar in ((int, _INTEGER_EXTRAS, INTEGER_RE), (float, _NUMBER_EXTRAS, NUMBER_RE)):
        if any(char in text for char in extras):
            continue
        try:
            parse(text)
        except ValueError:
            continue
        assert grammar.fullmatch(text) is not None


def test_the_extra_characters_include_all_ascii_whitespace() -> None:
    spaces = {chr(code) for code in range(128) if chr(code).isspace()}
    assert spaces <= set(_INTEGER_EXTRAS) and spaces <= set(_NUMBER_EXTRAS)
