"""Table Schema parsing: every problem listed, typed constraint values, property names, cell readers."""

from __future__ import annotations

import itertools
import math
import re
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import Invalid
from core.tableschema import (
    MAX_FIELDS,
    Field,
    TableSchema,
    cell_reader,
    parse_table_schema,
    pattern_problem,
    property_names,
)


def problems_of(descriptor: object) -> list[tuple[str | None, str]]:
    with pytest.raises(Invalid) as caught:
        parse_table_schema(descriptor)
    assert caught.value.status == 422
    return [(problem["field"], problem["code"]) for problem in caught.value.problems]


def one_field(**descriptor: Any) -> Field:
    return parse_table_schema({"fields": [{"name": "f", **descriptor}]}).fields[0]


def test_defaults_are_filled_in() -> None:
    schema = parse_table_schema({"fields": [{"name": "a"}]})
    assert schema == TableSchema(fields=(Field(name="a", property_name="a"),), missing_values=("",))
    assert schema.fields[0].type == "string"
    assert schema.primary_key == ()


@pytest.mark.parametrize(
    "descriptor",
    [
        {"fields": [{"name": "a", "type": "integer"}], "missingValues": [""]},
        {
            "fields": [
                {"name": "id", "type": "integer", "constraints": {"minimum": 1}},
                {
                    "name": "when",
                    "type": "date",
                    "format": "%d/%m/%Y",
                    "constraints": {"maximum": "31/12/2030"},
                },
                {"name": "ok", "type": "boolean", "trueValues": ["Y"], "falseValues": ["N"]},
                {"name": "price", "type": "number", "decimalChar": ",", "groupChar": "."},
                {"name": "code", "title": "Code", "constraints": {"pattern": "[A-Z]+", "enum": ["A", "B"]}},
            ],
            "missingValues": ["", "NA"],
            "primaryKey": ["id"],
        },
    ],
)
def test_to_json_round_trips(descriptor: dict[str, Any]) -> None:
    schema = parse_table_schema(descriptor)
    again = parse_table_schema(schema.to_json())
    assert again == schema
    assert again.to_json() == schema.to_json()


def test_every_problem_is_listed_at_once() -> None:
    descriptor = {
        "fields": [
            {"name": "a", "type": "text"},
            {"name": "b", "type": "integer", "constraints": {"pattern": "x", "minimum": "low"}},
            {"name": "b"},
            {"name": "c", "constraints": {"pattern": "[a"}},
            {"name": "d", "type": "date", "format": "any"},
            "not an object",
        ],
        "primaryKey": ["a", "zz"],
        "missingValues": "NA",
    }
    assert problems_of(descriptor) == [
        (None, "badMissingValues"),
        ("a", "unknownType"),
        ("b", "constraintNotApplicable"),
        ("b", "badConstraintValue"),
        ("b", "duplicateFieldName"),
        ("c", "badPattern"),
        ("d", "unknownFormat"),
        (None, "fieldNotObject"),
        ("zz", "unknownPrimaryKeyField"),
    ]


def test_problem_messages_name_the_field_and_the_fix() -> None:
    with pytest.raises(Invalid) as caught:
        parse_table_schema({"fields": [{"name": "age", "type": "int"}]})
    assert caught.value.detail == "The table schema has 1 problem."
    message = caught.value.problems[0]["message"]
    assert message.startswith("Field \"age\": unknown type 'int'; use one of string, integer, number")


@pytest.mark.parametrize(
    ("descriptor", "expected"),
    [
        ([], [(None, "schemaNotObject")]),
        ({}, [(None, "fieldsMissing")]),
        ({"fields": []}, [(None, "fieldsEmpty")]),
        ({"fields": [{"type": "string"}]}, [(None, "fieldNameMissing")]),
        ({"fields": [{"name": "  "}]}, [(None, "fieldNameMissing")]),
        ({"fields": [{"name": "a", "format": "phone"}]}, [("a", "unknownFormat")]),
        ({"fields": [{"name": "a", "type": "integer", "format": "hex"}]}, [("a", "unknownFormat")]),
        ({"fields": [{"name": "a", "type": "date", "format": "%Q"}]}, [("a", "unknownFormat")]),
        (
            {"fields": [{"name": "a", "type": "number", "constraints": {"minLength": 1}}]},
            [("a", "constraintNotApplicable")],
        ),
        (
            {"fields": [{"name": "a", "type": "boolean", "constraints": {"minimum": 1}}]},
            [("a", "constraintNotApplicable")],
        ),
        ({"fields": [{"name": "a", "constraints": {"maxSize": 1}}]}, [("a", "unknownConstraint")]),
        ({"fields": [{"name": "a", "constraints": {"required": "yes"}}]}, [("a", "badConstraintValue")]),
        ({"fields": [{"name": "a", "constraints": {"minLength": -1}}]}, [("a", "badConstraintValue")]),
        ({"fields": [{"name": "a", "constraints": {"maxLength": 2.5}}]}, [("a", "badConstraintValue")]),
        (
            {"fields": [{"name": "a", "constraints": {"minLength": 5, "maxLength": 2}}]},
            [("a", "badConstraintValue")],
        ),
        (
            {"fields": [{"name": "a", "type": "integer", "constraints": {"minimum": 9, "maximum": 1}}]},
            [("a", "badConstraintValue")],
        ),
        (
            {"fields": [{"name": "a", "type": "integer", "constraints": {"minimum": 1.5}}]},
            [("a", "badConstraintValue")],
        ),
        (
            {"fields": [{"name": "a", "type": "date", "constraints": {"minimum": "2024-02-30"}}]},
            [("a", "badConstraintValue")],
        ),
        ({"fields": [{"name": "a", "constraints": {"enum": []}}]}, [("a", "badConstraintValue")]),
        (
            {"fields": [{"name": "a", "type": "integer", "constraints": {"enum": [1, "two"]}}]},
            [("a", "badConstraintValue")],
        ),
        (
            {"fields": [{"name": "a", "type": "number", "constraints": {"minimum": "NaN"}}]},
            [("a", "badConstraintValue")],
        ),
        (
            {"fields": [{"name": "a", "type": "number", "constraints": {"enum": ["1", "NaN"]}}]},
            [("a", "badConstraintValue")],
        ),
        ({"fields": [{"name": "a", "constraints": {"pattern": 5}}]}, [("a", "badPattern")]),
        ({"fields": [{"name": "a", "constraints": {"pattern": "\\p{L}+"}}]}, [("a", "badPattern")]),
        ({"fields": [{"name": "a", "constraints": {"pattern": "[a-z-[aeiou]]+"}}]}, [("a", "badPattern")]),
        (
            {"fields": [{"name": "a", "type": "boolean", "trueValues": ["y"], "falseValues": ["y"]}]},
            [("a", "badOption")],
        ),
        ({"fields": [{"name": "a", "type": "boolean", "trueValues": []}]}, [("a", "badOption")]),
        ({"fields": [{"name": "a", "type": "number", "decimalChar": ",,"}]}, [("a", "badOption")]),
        ({"fields": [{"name": "a", "type": "integer", "bareNumber": "no"}]}, [("a", "badOption")]),
        ({"fields": [{"name": "a", "type": "integer", "groupChar": "-"}]}, [("a", "badOption")]),  # -5 → 5
        ({"fields": [{"name": "a", "type": "number", "groupChar": "0"}]}, [("a", "badOption")]),
        ({"fields": [{"name": "a", "type": "number", "decimalChar": "e"}]}, [("a", "badOption")]),
        ({"fields": [{"name": "a"}], "primaryKey": []}, [(None, "badPrimaryKey")]),
        ({"fields": [{"name": "a"}], "primaryKey": ["a", "a"]}, [(None, "badPrimaryKey")]),
        ({"fields": [{"name": "a"}], "primaryKey": "b"}, [("b", "unknownPrimaryKeyField")]),
        ({"fields": [{"name": "a"}], "missingValues": [1]}, [(None, "badMissingValues")]),
        ({"fields": [{"name": "a"}, {"name": "a"}]}, [("a", "duplicateFieldName")]),
    ],
)
def test_schema_problems(descriptor: object, expected: list[tuple[str | None, str]]) -> None:
    assert problems_of(descriptor) == expected


def test_infinite_bounds_are_kept_and_a_stored_nan_bound_still_reads() -> None:
    schema = parse_table_schema(
        {"fields": [{"name": "a", "type": "number", "constraints": {"minimum": "-INF", "maximum": "INF"}}]}
    )
    assert schema.field("a").constraints.minimum == float("-inf")
    assert schema.field("a").constraints.maximum == float("inf")
    # A schema stored before NaN was refused still loads, so its dataset stays readable.
    stored = {"fields": [{"name": "a", "type": "number", "constraints": {"maximum": "NaN", "enum": ["NaN"]}}]}
    assert math.isnan(parse_table_schema(stored, stored=True).field("a").constraints.maximum)


def test_a_schema_reads_back_the_same_from_what_is_stored() -> None:
    # A dataset stores schema.to_json(); a schema that passed once must read back, or its dataset is lost.
    choices = {
        "type": ["integer", "number", "string", "boolean", "date", "year"],
        "decimalChar": [None, ".", ","],
        "groupChar": [None, "", ".", ",", " "],
        "bareNumber": [None, False],
        "format": [None, "any", "email", "%d.%m.%Y"],
    }
    read = 0
    for picked in itertools.product(*choices.values()):
        given_options = zip(choices, picked, strict=True)
        item = {"name": "a", **{key: value for key, value in given_options if value is not None}}
        try:
            schema = parse_table_schema({"fields": [item]})
        except Invalid:
            continue
        read += 1
        assert parse_table_schema(schema.to_json(), stored=True) == schema, item
        assert parse_table_schema(schema.to_json()) == schema, item
    assert read > 100


def test_too_many_fields() -> None:
    fields = [{"name": f"c{index}"} for index in range(MAX_FIELDS + 1)]
    assert problems_of({"fields": fields}) == [(None, "tooManyFields")]
    assert len(parse_table_schema({"fields": fields[:MAX_FIELDS]}).fields) == MAX_FIELDS


def test_primary_key_implies_required_and_accepts_a_name() -> None:
    schema = parse_table_schema(
        {"fields": [{"name": "id", "type": "integer"}, {"name": "x"}], "primaryKey": "id"}
    )
    assert schema.primary_key == ("id",)
    assert schema.field("id").constraints.required
    assert not schema.field("x").constraints.required


@pytest.mark.parametrize(
    ("descriptor", "attribute", "expected"),
    [
        ({"type": "integer", "constraints": {"minimum": "5"}}, "minimum", 5),
        ({"type": "number", "constraints": {"maximum": 5}}, "maximum", 5.0),
        ({"type": "date", "constraints": {"minimum": "2024-01-31"}}, "minimum", date(2024, 1, 31)),
        (
            {"type": "date", "format": "%d.%m.%Y", "constraints": {"minimum": "31.01.2024"}},
            "minimum",
            date(2024, 1, 31),
        ),
        (
            {"type": "datetime", "constraints": {"maximum": "2024-01-01T01:00:00+01:00"}},
            "maximum",
            datetime(2024, 1, 1, tzinfo=UTC),
        ),
        ({"type": "time", "constraints": {"exclusiveMinimum": "08:00:00"}}, "exclusive_minimum", time(8)),
        ({"type": "year", "constraints": {"enum": [2020, "2021"]}}, "enum", (2020, 2021)),
        ({"type": "boolean", "constraints": {"enum": [True]}}, "enum", (True,)),
    ],
)
def test_constraint_values_are_read_as_the_field_type(
    descriptor: dict[str, Any], attribute: str, expected: object
) -> None:
    assert getattr(one_field(**descriptor).constraints, attribute) == expected


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("[A-Z]{2}-[0-9]{4}", None),
        ("^abc$", None),
        ("[]a-]", None),
        ("a\\-[b]", None),
        ("\\\\p", None),
        ("\\p{Lu}", "uses '\\\\p'"),
        ("\\i\\c*", "uses '\\\\i'"),
        ("[a-z-[aeiou]]", "uses '-['"),
        ("(", "is not a valid regular expression"),
    ],
)
def test_pattern_problems(pattern: str, problem: str | None) -> None:
    found = pattern_problem(pattern)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["age", "_x", "Name2"], ["age", "_x", "Name2"]),
        (["First Name", "e-mail", "a.b"], ["First_Name", "e_mail", "a_b"]),
        (["1st", ""], ["f_1st", "f_"]),
        (
            ["PartitionKey", "rowkey", "Timestamp", "odata.type", "ETag"],
            ["f_PartitionKey", "f_rowkey", "f_Timestamp", "f_odata_type", "f_ETag"],
        ),
        (["Größe", "café"], ["Gro_e", "cafe"]),
        (["a b", "a_b", "a_b_2"], ["a_b", "a_b_2", "a_b_2_2"]),
        (["A", "a"], ["A", "a_2"]),
    ],
)
def test_property_names(names: list[str], expected: list[str]) -> None:
    assert property_names(names) == expected


def test_long_property_names_are_cut_and_kept_distinct() -> None:
    names = property_names(["x" * 300, "x" * 301])
    assert [len(name) for name in names] == [255, 255]
    assert names[0] != names[1]


def test_schema_keeps_original_names_next_to_property_names() -> None:
    schema = parse_table_schema({"fields": [{"name": "Unit price (€)"}, {"name": "RowKey"}]})
    assert schema.field_names == ("Unit price (€)", "RowKey")
    assert schema.property_names() == {"Unit price (€)": "Unit_price____", "RowKey": "f_RowKey"}


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")


@given(st.lists(st.text(max_size=300), max_size=20, unique=True))
def test_property_names_are_always_safe_distinct_and_deterministic(names: list[str]) -> None:
    mapped = property_names(names)
    assert mapped == property_names(names)
    assert len({name.casefold() for name in mapped}) == len(names)
    for name in mapped:
        assert _IDENTIFIER.fullmatch(name), name
        assert name.casefold() not in {"partitionkey", "rowkey", "timestamp", "etag"}


@pytest.mark.parametrize(
    ("descriptor", "cell", "expected"),
    [
        ({"type": "integer"}, "42", 42),
        ({"type": "integer"}, "-007", -7),
        ({"type": "integer"}, "+3", 3),
        ({"type": "integer", "bareNumber": False}, "€ 1200", 1200),
        ({"type": "integer", "groupChar": ","}, "1,200", 1200),
        ({"type": "integer", "groupChar": "."}, "1.200", 1200),  # an integer has no decimal mark
        ({"type": "number"}, "1.5e3", 1500.0),
        ({"type": "number"}, ".5", 0.5),
        ({"type": "number", "decimalChar": ",", "groupChar": "."}, "1.234,5", 1234.5),
        ({"type": "number", "bareNumber": False}, "95%", 95.0),
        ({"type": "boolean"}, "TRUE", True),
        ({"type": "boolean", "trueValues": ["ja"], "falseValues": ["nein"]}, "nein", False),
        ({"type": "date"}, "2024-02-29", date(2024, 2, 29)),
        ({"type": "date", "format": "%d/%m/%Y"}, "29/02/2024", date(2024, 2, 29)),
        ({"type": "date", "format": "fmt:%d/%m/%Y"}, "01/03/2024", date(2024, 3, 1)),
        ({"type": "datetime"}, "2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ({"type": "datetime"}, "2024-01-02 03:04:05+02:00", datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC)),
        ({"type": "datetime"}, "2024-01-02T03:04:05.25", datetime(2024, 1, 2, 3, 4, 5, 250000)),
        ({"type": "datetime"}, "2024-01-02T03:04:05.123456", datetime(2024, 1, 2, 3, 4, 5, 123456)),
        ({"type": "datetime"}, "2024-01-02 03:04", datetime(2024, 1, 2, 3, 4)),  # as spreadsheets write it
        ({"type": "datetime"}, "2024-01-02T03:04+01:00", datetime(2024, 1, 2, 2, 4, tzinfo=UTC)),
        ({"type": "time"}, "23:59:59", time(23, 59, 59)),
        ({"type": "time"}, "08:00:00+01:00", time(8, tzinfo=timezone(timedelta(hours=1)))),
        ({"type": "year"}, "1999", 1999),
        ({"type": "yearmonth"}, "2024-12", "2024-12"),
        ({"type": "duration"}, "P1Y2M3DT4H5M6.5S", "P1Y2M3DT4H5M6.5S"),
        ({"type": "string", "format": "email"}, "a.b@example.co.uk", "a.b@example.co.uk"),
        ({"type": "string", "format": "uri"}, "https://example.com/x?y=1", "https://example.com/x?y=1"),
        (
            {"type": "string", "format": "uuid"},
            "123e4567-e89b-12d3-a456-426614174000",
            "123e4567-e89b-12d3-a456-426614174000",
        ),
        ({"type": "string", "format": "binary"}, "aGVsbG8=", "aGVsbG8="),
        ({"type": "any"}, " anything ", " anything "),
    ],
)
def test_cell_reader_reads_valid_cells(descriptor: dict[str, Any], cell: str, expected: object) -> None:
    value = cell_reader(one_field(**descriptor))(cell)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("descriptor", "cell"),
    [
        ({"type": "integer"}, "1.0"),
        ({"type": "integer"}, " 1"),
        ({"type": "integer"}, "1_000"),
        ({"type": "integer"}, "١٢"),
        ({"type": "integer"}, "9223372036854775808"),
        ({"type": "number"}, "1,5"),
        ({"type": "number"}, "Infinity"),  # NaN, INF, -INF only (in any case)
        ({"type": "number"}, "1e999"),
        ({"type": "number", "decimalChar": ","}, "1.5"),
        ({"type": "boolean"}, "yes"),
        ({"type": "date"}, "2024-02-30"),
        ({"type": "date"}, "20240301"),
        ({"type": "date"}, "2024-W10-1"),
        ({"type": "datetime"}, "2024-01-02"),
        ({"type": "datetime"}, "2024-01-02T03:04:05.1234567"),  # datetime keeps 6 digits: no silent cut
        ({"type": "datetime"}, "2024-01-02T03"),
        ({"type": "time"}, "03:04:05.1234567"),
        ({"type": "time"}, "24:00:01"),  # 24:00:00 is the end of the day (XML Schema)
        ({"type": "time"}, "08:00"),
        ({"type": "year"}, "99"),
        ({"type": "yearmonth"}, "2024-13"),
        ({"type": "duration"}, "P"),
        ({"type": "duration"}, "PT"),
        ({"type": "string", "format": "email"}, "a@b"),
        ({"type": "string", "format": "uri"}, "example.com"),
        ({"type": "string", "format": "uuid"}, "123e4567e89b12d3a456426614174000"),
        ({"type": "string", "format": "binary"}, "not base64!"),
    ],
)
def test_cell_reader_refuses_invalid_cells(descriptor: dict[str, Any], cell: str) -> None:
    with pytest.raises(ValueError):
        cell_reader(one_field(**descriptor))(cell)


def test_special_numbers_follow_the_spec() -> None:
    read = cell_reader(one_field(type="number"))
    assert read("INF") == float("inf")
    assert read("-INF") == float("-inf")
    assert read("NaN") != read("NaN")


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_any_64_bit_integer_formatted_with_str_reads_back(number: int) -> None:
    assert cell_reader(one_field(type="integer"))(str(number)) == number


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_finite_float_formatted_with_repr_reads_back(number: float) -> None:
    assert cell_reader(one_field(type="number"))(repr(number)) == number
