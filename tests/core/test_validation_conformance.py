"""Table Schema v1 conformance: values the spec (or XML Schema, which it follows) allows, read as it says."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import pytest

from core.errors import Invalid
from core.mapping import map_columns
from core.tableschema import cell_reader, parse_table_schema
from core.validation import ChunkResult, Validator


def check_cells(field: dict[str, Any], cells: list[str]) -> ChunkResult:
    schema = parse_table_schema({"fields": [{"name": "f", **field}]})
    validator = Validator(schema, map_columns(schema, ["f"]), batch_rows=64)
    return validator.validate_chunk([[cell] for cell in cells], first_row=1)


def same(left: object, right: object) -> bool:
    if isinstance(left, float) and isinstance(right, float) and math.isnan(right):
        return math.isnan(left)
    return type(left) is type(right) and left == right


def assert_read(field: dict[str, Any], cell: str, expected: object) -> None:
    """The cell reads as expected alone, and among other cells (the whole-column path)."""
    schema_field = parse_table_schema({"fields": [{"name": "f", **field}]}).fields[0]
    assert same(cell_reader(schema_field)(cell), expected)
    for cells in ([cell], [cell] * 100, ["x", cell, "y"]):  # "x" and "y" are of none of these types
        result = check_cells(field, cells)
        assert cells.index(cell) + 1 not in [error.row for error in result.errors]
        assert all(same(row["f"], expected) for row in result.valid_rows)
        assert len(result.valid_rows) == cells.count(cell)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("nan", math.nan),
        ("Nan", math.nan),
        ("NAN", math.nan),
        ("inf", math.inf),
        ("Inf", math.inf),
        ("-inf", -math.inf),
        ("-Inf", -math.inf),
    ],
)
def test_nan_and_inf_are_numbers_in_any_case(cell: str, expected: float) -> None:
    # Table Schema, number: "The following special string values are permitted (case does not need to be
    # respected): NaN, INF, -INF".
    assert_read({"type": "number"}, cell, expected)
    assert_read({"type": "number", "decimalChar": ","}, cell, expected)


@pytest.mark.parametrize("cell", ["Infinity", "infinity", "+nan", "-nan", "\u0131nf", "\uff49\uff4e\uff46"])
def test_other_spellings_of_nan_and_inf_are_no_numbers(cell: str) -> None:
    for cells in ([cell], [cell] * 100, ["1", cell, "2"]):
        result = check_cells({"type": "number"}, cells)
        assert (cells.index(cell) + 1, "type") in [(error.row, error.code) for error in result.errors]


@pytest.mark.parametrize(
    ("kind", "pattern", "cell", "expected"),
    [
        ("time", "%H:%M", "13:45", time(13, 45)),
        ("time", "%I:%M %p", "01:45 PM", time(13, 45)),
        ("time", "%H:%M:%S%z", "13:45:00+0100", time(13, 45, tzinfo=timezone(timedelta(hours=1)))),
        ("datetime", "%d/%m/%Y %H:%M", "01/02/2024 13:45", datetime(2024, 2, 1, 13, 45)),
        (
            "datetime",
            "%Y-%m-%dT%H:%M:%S%z",
            "2024-02-01T13:45:00+0100",
            datetime(2024, 2, 1, 12, 45, tzinfo=UTC),
        ),
        ("date", "%Y-%m", "2024-02", date(2024, 2, 1)),
        ("date", "%Y", "2024", date(2024, 1, 1)),
    ],
)
def test_strptime_patterns_that_leave_parts_out_or_carry_an_offset_are_usable(
    kind: str, pattern: str, cell: str, expected: object
) -> None:
    # A pattern is refused only if strptime cannot read what it writes; "%H:%M" has no seconds and is fine.
    assert_read({"type": kind, "format": pattern}, cell, expected)


@pytest.mark.parametrize(
    ("field", "cell", "expected"),
    [
        ({"type": "time"}, "24:00:00", time(0, 0)),
        ({"type": "time"}, "24:00:00.000Z", time(0, 0, tzinfo=UTC)),
        ({"type": "datetime"}, "2024-02-28T24:00:00", datetime(2024, 2, 29)),
        ({"type": "datetime"}, "2024-12-31 24:00:00", datetime(2025, 1, 1)),
        ({"type": "datetime"}, "2024-12-31T24:00:00+01:00", datetime(2024, 12, 31, 23, tzinfo=UTC)),
    ],
)
def test_24_00_00_is_the_end_of_the_day(field: dict[str, Any], cell: str, expected: object) -> None:
    # XML Schema time and dateTime: 24:00:00 is allowed, the first instant of the next day.
    assert_read(field, cell, expected)


@pytest.mark.parametrize(
    ("field", "cell"),
    [
        ({"type": "time"}, "24:00:01"),
        ({"type": "time"}, "24:00:00.5"),
        ({"type": "time"}, "24:01:00"),
        ({"type": "datetime"}, "2024-01-01T24:00:00.001"),
        ({"type": "datetime"}, "9999-12-31T24:00:00"),
        ({"type": "datetime"}, "2023-02-29T24:00:00"),
    ],
)
def test_past_the_end_of_the_day_is_no_time(field: dict[str, Any], cell: str) -> None:
    for cells in ([cell], [cell] * 100):
        result = check_cells(field, cells)
        assert [error.code for error in result.errors] == ["type"] * len(cells)


def test_24_00_00_meets_constraints_as_the_next_day() -> None:
    field = {"type": "datetime", "constraints": {"maximum": "2024-01-01T23:59:59"}}
    result = check_cells(field, ["2024-01-01T23:59:59", "2024-01-01T24:00:00"])
    assert [(error.row, error.code) for error in result.errors] == [(2, "maximum")]


@pytest.mark.parametrize("key", ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"])
def test_a_time_bound_of_24_00_00_is_refused_as_it_reads_as_midnight(key: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_table_schema({"fields": [{"name": "t", "type": "time", "constraints": {key: "24:00:00"}}]})
    assert [problem["code"] for problem in caught.value.problems] == ["badConstraintValue"]
    assert "23:59:59" in caught.value.problems[0]["message"]
