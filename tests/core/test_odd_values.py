"""Values at the edges of what Python can hold: each is a clear problem or row error, never a crash."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.errors import Invalid
from core.mapping import map_columns
from core.profiling import profile_stream
from core.tableschema import parse_table_schema
from core.validation import Validator

BEFORE_YEAR_ONE = "0001-01-01T00:00:00+01:00"  # 31 December of year 0 in UTC
AFTER_9999 = "9999-12-31T23:59:59-01:00"


def problems_of(*fields: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(Invalid) as refused:
        parse_table_schema({"fields": list(fields)})
    return [(problem["field"], problem["code"]) for problem in refused.value.problems]


@pytest.mark.parametrize("kind", [[], {}, ["string"], 3])
def test_a_type_that_is_not_a_name_is_an_unknown_type(kind: object) -> None:
    assert problems_of({"name": "a", "type": kind}) == [("a", "unknownType")]


@pytest.mark.parametrize("fmt", [[], {"x": 1}])
def test_a_format_that_is_not_a_name_is_an_unknown_format(fmt: object) -> None:
    assert problems_of({"name": "a", "type": "string", "format": fmt}) == [("a", "unknownFormat")]


@pytest.mark.parametrize(
    "constraints",
    [
        {"minimum": 10**400},  # no float holds it
        {"maximum": float("inf")},
        {"maximum": float("nan")},
        {"enum": [1, 10**400]},
        {"minimum": "1e999"},
    ],
)
def test_number_bounds_must_be_finite_numbers(constraints: dict[str, Any]) -> None:
    assert problems_of({"name": "n", "type": "number", "constraints": constraints}) == [
        ("n", "badConstraintValue")
    ]


def test_numbers_near_the_edge_are_fine_bounds() -> None:
    schema = parse_table_schema(
        {"fields": [{"name": "n", "type": "number", "constraints": {"minimum": -1e308, "maximum": 10**300}}]}
    )
    assert schema.fields[0].constraints.minimum == -1e308
    assert schema.fields[0].constraints.maximum == 1e300


@pytest.mark.parametrize("moment", [BEFORE_YEAR_ONE, AFTER_9999])
def test_a_datetime_bound_outside_the_calendar_in_utc_is_refused(moment: str) -> None:
    assert problems_of({"name": "d", "type": "datetime", "constraints": {"minimum": moment}}) == [
        ("d", "badConstraintValue")
    ]


@pytest.mark.parametrize("pattern", ["a{4294967296}", "(" * 200 + "a" + ")" * 200 + "{99999999999}"])
def test_a_pattern_re_cannot_compile_is_a_bad_pattern(pattern: str) -> None:
    assert problems_of({"name": "s", "constraints": {"pattern": pattern}}) == [("s", "badPattern")]


def test_a_datetime_cell_outside_the_calendar_in_utc_is_a_type_error_of_its_row() -> None:
    schema = parse_table_schema({"fields": [{"name": "at", "type": "datetime"}]})
    cells = [
        "2024-05-01T10:00:00+02:00",
        BEFORE_YEAR_ONE,
        "0001-01-01T00:00:00Z",
        AFTER_9999,
        "2024-05-01T10:00:00",
    ]
    result = Validator(schema, map_columns(schema, ["at"])).validate_chunk(
        [[cell] for cell in cells], first_row=1
    )
    assert [(error.row, error.column, error.code) for error in result.errors] == [
        (2, "at", "type"),
        (4, "at", "type"),
    ]
    assert result.invalid_count == 2


def test_profiling_does_not_take_such_a_cell_for_a_datetime() -> None:
    rows = ["at", "2024-05-01T10:00:00+02:00", BEFORE_YEAR_ONE, "2024-05-02T10:00:00Z"]
    profile = profile_stream(iter(["\n".join(rows).encode() + b"\n"]))
    assert profile.columns[0].type == "string"
    clean = profile_stream(iter(["\n".join([rows[0], rows[1], rows[3]]).encode() + b"\n"]))
    assert clean.columns[0].type == "datetime"


def test_a_number_too_large_for_a_double_is_profiled_as_text() -> None:
    profile = profile_stream(iter([b"n,m\n1.5,2.5\n1e999,3.5\n"]))
    assert [(column.type, column.max) for column in profile.columns] == [("string", None), ("number", 3.5)]
    json.dumps(profile.to_json(), allow_nan=False)  # the upload's answer is valid JSON


@pytest.mark.parametrize(
    ("pattern", "repeated"),
    [
        ("(a+)+", "(a+)+"),
        ("(a*)*b", "(a*)*"),
        (r"(\w+\s?)*", r"(\w+\s?)*"),
        ("x((a{2,})*)y", "(a{2,})*"),
        ("(.*a){2,}", "(.*a){2,}"),
        ("(a[a-z]+)*", "(a[a-z]+)*"),  # starts with a, which [a-z]+ also matches
    ],
)
def test_a_pattern_that_backtracks_exponentially_is_refused(pattern: str, repeated: str) -> None:
    with pytest.raises(Invalid) as refused:
        parse_table_schema({"fields": [{"name": "s", "constraints": {"pattern": pattern}}]})
    [problem] = refused.value.problems
    assert problem["code"] == "badPattern"
    assert f"repeats {repeated!r} without bound" in problem["message"]


@pytest.mark.parametrize(
    "pattern",
    [
        r"[a-z]+(\.[a-z]+)*@[a-z]+(\.[a-z]+)+",  # each repetition starts with a dot
        r"([a-z]+\.)*[a-z]+",  # ... or ends with one
        r"(\d{3}-)*\d{4}",  # bounded parts
        "([^,]+,)*",
        "(cat|dog)+",
        "(x(a+)y)?",
        "[(a+)]+",  # a class, not a group
        r"\(a+\)+",  # escaped parentheses
        "[^]a]+(]b+)*",
    ],
)
def test_patterns_whose_repetitions_cannot_overlap_are_fine(pattern: str) -> None:
    schema = parse_table_schema({"fields": [{"name": "s", "constraints": {"pattern": pattern}}]})
    assert schema.fields[0].constraints.pattern == pattern
