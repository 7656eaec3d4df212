"""Hostile JSON and cell values: each is a schema problem (422) or a row error, never a crash (500)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from core.errors import Invalid
from core.mapping import map_columns
from core.profiling import profile_stream
from core.tableschema import Field, cell_reader, parse_table_schema, pattern_problem, read_datetime
from core.validation import Validator

BEFORE_YEAR_ONE = "0001-01-01T00:00:00+01:00"  # 31 December of year 0 in UTC
AFTER_9999 = "9999-12-31T23:59:59-01:00"  # 1 January of year 10000 in UTC


def problems_of(descriptor: dict[str, Any]) -> list[tuple[str | None, str]]:
    with pytest.raises(Invalid) as refused:
        parse_table_schema(descriptor)
    assert refused.value.status == 422
    return [(problem["field"], problem["code"]) for problem in refused.value.problems]


@pytest.mark.parametrize(
    ("descriptor", "expected"),
    [
        ({"fields": [{"name": "a", "type": []}]}, [("a", "unknownType")]),
        ({"fields": [{"name": "a", "type": {"name": "string"}}]}, [("a", "unknownType")]),
        ({"fields": [{"name": "a", "type": "date", "format": ["%Y"]}]}, [("a", "unknownFormat")]),
        ({"fields": [{"name": "a", "constraints": [{"required": True}]}]}, [("a", "badConstraintValue")]),
        ({"fields": [{"name": "a", "constraints": {"required": []}}]}, [("a", "badConstraintValue")]),
        ({"fields": [{"name": "a", "constraints": {"enum": [[], {}]}}]}, [("a", "badConstraintValue")]),
        (
            {"fields": [{"name": "a", "type": "any", "constraints": {"enum": [{}]}}]},
            [("a", "badConstraintValue")],
        ),
        (
            {"fields": [{"name": "a", "type": "date", "constraints": {"minimum": {}}}]},
            [("a", "badConstraintValue")],
        ),
        ({"fields": [{"name": "a", "type": "boolean", "trueValues": [["y"]]}]}, [("a", "badOption")]),
        ({"fields": [{"name": "a", "type": "boolean", "falseValues": {"n": 0}}]}, [("a", "badOption")]),
        ({"fields": [{"name": "a"}], "missingValues": [[]]}, [(None, "badMissingValues")]),
        ({"fields": [{"name": "a"}], "primaryKey": [["a"]]}, [(None, "badPrimaryKey")]),
        ({"fields": [{"name": "a"}], "primaryKey": {"a": 1}}, [(None, "badPrimaryKey")]),
    ],
)
def test_a_list_or_object_where_a_name_or_value_belongs_is_a_problem(
    descriptor: dict[str, Any], expected: list[tuple[str | None, str]]
) -> None:
    assert problems_of(descriptor) == expected


@pytest.mark.parametrize(
    "constraints",
    [
        '{"minimum": 1' + "0" * 400 + "}",  # no double holds it
        '{"enum": [1, 1' + "0" * 400 + "]}",
    ],
)
def test_a_number_bound_no_finite_double_holds_is_a_bad_constraint_value(constraints: str) -> None:
    field = {"name": "n", "type": "number", "constraints": json.loads(constraints)}
    assert problems_of({"fields": [field]}) == [("n", "badConstraintValue")]


@pytest.mark.parametrize("moment", [BEFORE_YEAR_ONE, AFTER_9999])
def test_a_datetime_outside_years_1_to_9999_in_utc_is_no_datetime(moment: str) -> None:
    with pytest.raises(ValueError):
        read_datetime(moment)
    field = {"name": "d", "type": "datetime", "constraints": {"maximum": moment}}
    assert problems_of({"fields": [field]}) == [("d", "badConstraintValue")]
    # A strptime format with an offset reads such a cell the same way.
    reader = cell_reader(Field(name="d", type="datetime", format="%Y-%m-%dT%H:%M:%S%z"))
    with pytest.raises(ValueError):
        reader(moment)


@pytest.mark.parametrize("pattern", ["a{4294967296}", "x{1,4294967296}"])
def test_a_pattern_too_large_to_compile_is_a_bad_pattern(pattern: str) -> None:
    assert "is not a valid regular expression" in (pattern_problem(pattern) or "")
    field = {"name": "s", "constraints": {"pattern": pattern}}
    assert problems_of({"fields": [field]}) == [("s", "badPattern")]


def test_a_strptime_format_naming_a_directive_twice_is_an_unknown_format() -> None:
    field = {"name": "d", "type": "date", "format": "%Y %Y"}  # strptime's regex would name group Y twice
    assert problems_of({"fields": [field]}) == [("d", "unknownFormat")]


def test_a_datetime_cell_outside_the_calendar_in_utc_is_a_type_error_of_its_row() -> None:
    schema = parse_table_schema(
        {"fields": [{"name": "id", "type": "integer"}, {"name": "at", "type": "datetime"}]}
    )
    cells = [
        "2024-05-01T10:00:00+02:00",
        BEFORE_YEAR_ONE,
        "2024-13-01T00:00:00",
        AFTER_9999,
        "2024-05-01T10:00:00",
    ]
    rows = [[str(number), cell] for number, cell in enumerate(cells, 1)]
    result = Validator(schema, map_columns(schema, ["id", "at"])).validate_chunk(rows, first_row=1)
    assert [(error.row, error.column, error.code) for error in result.errors] == [
        (2, "at", "type"),
        (3, "at", "type"),
        (4, "at", "type"),
    ]
    # The same message a malformed datetime gets.
    details = {error.message.partition(": ")[2].replace(error.value, "<cell>") for error in result.errors}
    assert details == {
        '"<cell>" is not a date and time in the form YYYY-MM-DDThh:mm:ss (seconds optional, with at most 6 '
        "decimals; optionally with Z or an offset)."
    }
    assert result.invalid_count == 3
    assert result.valid_row_numbers == [1, 5]  # the other cells of the column are read as usual
    assert result.valid_rows[0]["at"] == datetime(2024, 5, 1, 8, tzinfo=UTC)


def test_profiling_takes_such_a_cell_for_text_without_failing() -> None:
    lines = ["at,n", "2024-05-01T10:00:00+02:00,1", f"{AFTER_9999},2", "2024-05-02T10:00:00Z,3"]
    profile = profile_stream(iter(["\n".join(lines).encode() + b"\n"]))
    assert [column.type for column in profile.columns] == ["string", "integer"]
    assert profile.inferred_schema["fields"] == [
        {"name": "at", "type": "string"},
        {"name": "n", "type": "integer"},
    ]


def test_values_just_inside_the_limits_still_work() -> None:
    schema = parse_table_schema(
        {
            "fields": [
                {
                    "name": "n",
                    "type": "number",
                    "constraints": {"minimum": 1e308, "maximum": 1.7976931348623157e308},
                },
                {"name": "at", "type": "datetime", "constraints": {"minimum": "0001-01-01T00:00:00Z"}},
                {"name": "s", "constraints": {"pattern": "a{0,65535}"}},
            ]
        }
    )
    assert schema.fields[0].constraints.minimum == 1e308
    validator = Validator(schema, map_columns(schema, ["n", "at", "s"]))
    rows = [
        ["1e308", "0001-01-01T00:00:00Z", "a"],
        ["1.7976931348623157e308", "0001-01-01T01:00:00+01:00", "aa"],  # year 1 once in UTC
        ["1e308", "9999-12-31T23:59:59+00:00", ""],
        ["1e308", "9999-12-31T22:59:59-01:00", "a"],
    ]
    result = validator.validate_chunk(rows, first_row=1)
    assert result.errors == []
    profile = profile_stream(iter([b"at\n0001-01-01T00:00:00Z\n9999-12-31T22:59:59-01:00\n"]))
    assert profile.columns[0].type == "datetime"


def test_a_number_too_large_for_a_double_is_profiled_as_text() -> None:
    profile = profile_stream(iter([b"n,m\n1.5,2.5\n1e999,3.5\n"]))
    assert [(column.type, column.max) for column in profile.columns] == [("string", None), ("number", 3.5)]
    json.dumps(profile.to_json(), allow_nan=False)  # the upload's answer is valid JSON


@pytest.mark.parametrize(
    ("cells", "inferred"),
    [
        (["2024-03-01 10:00", "2024-03-02T11:30"], "datetime"),  # seconds left out, as spreadsheets write
        (["2024-03-01T10:00:00.123456Z", "2024-03-01 10:00+01:00"], "datetime"),
        (["2024-03-01T10:00:00.1234567", "2024-03-01T10:00:00"], "string"),  # a 7th decimal: kept as text
        (["10:00:00.5", "23:59:59"], "time"),
    ],
)
def test_an_inferred_schema_accepts_the_file_it_came_from(cells: list[str], inferred: str) -> None:
    profile = profile_stream(iter([("v\n" + "\n".join(cells) + "\n").encode()]))
    assert profile.inferred_schema["fields"] == [{"name": "v", "type": inferred}]
    schema = parse_table_schema(profile.inferred_schema)
    result = Validator(schema, map_columns(schema, ["v"])).validate_chunk(
        [[cell] for cell in cells], first_row=1
    )
    assert (result.invalid_count, result.errors) == (0, [])


def test_a_seventh_decimal_of_a_second_is_a_clear_error_not_a_silent_cut() -> None:
    schema = parse_table_schema({"fields": [{"name": "at", "type": "datetime"}], "primaryKey": "at"})
    validator = Validator(schema, map_columns(schema, ["at"]))
    rows = [["2024-01-01T00:00:00.1234567"], ["2024-01-01T00:00:00.1234568"], ["2024-01-01T00:00:00.123456"]]
    result = validator.validate_chunk(rows, first_row=1)
    assert [(error.row, error.code) for error in result.errors] == [(1, "type"), (2, "type")]
    assert "at most 6 decimals" in result.errors[0].message
    assert result.valid_rows == [{"at": datetime(2024, 1, 1, 0, 0, 0, 123456)}]
