"""Dataset rows: RowKeys and partitions, API keys, entities and their views, export cells."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import pytest
from azure.data.tables import EdmType, EntityProperty
from hypothesis import given
from hypothesis import strategies as st

from core.rows import (
    JOB_PROPERTY,
    KEY_PROPERTY,
    MAX_ENTITY_BYTES,
    MAX_OWN_PROPERTIES,
    MAX_PROPERTY_UNITS,
    MAX_ROW_KEY_CHARS,
    OP_PROPERTY,
    PARTITIONS,
    RowEncoder,
    api_key,
    cell_text,
    entity_bytes,
    entity_key,
    export_cells,
    export_header,
    partition_of,
    row_entity,
    row_key_of,
    row_view,
    safe_cell,
    same_values,
    too_large,
    written_by,
)
from core.tablebatch import entity_from_json, entity_json
from core.tableschema import MAX_FIELDS, TableSchema, cell_reader, parse_table_schema

FORBIDDEN_IN_ROW_KEYS = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")

ALL_TYPES = parse_table_schema(
    {
        "fields": [
            {"name": "id", "type": "integer"},
            {"name": "amount", "type": "number"},
            {"name": "active", "type": "boolean"},
            {"name": "day", "type": "date"},
            {"name": "moment", "type": "datetime"},
            {"name": "clock", "type": "time"},
            {"name": "year", "type": "year"},
            {"name": "label", "type": "string"},
        ],
        "primaryKey": "id",
    }
)

# Formats the person chose: exported cells must read back through the same schema.
FORMATTED = parse_table_schema(
    {
        "fields": [
            {"name": "day", "type": "date", "format": "%d/%m/%Y"},
            {"name": "price", "type": "number", "decimalChar": ","},
            {"name": "ok", "type": "boolean", "trueValues": ["Y", "yes"], "falseValues": ["N", "no"]},
            {"name": "count", "type": "integer"},
            {"name": "stamp", "type": "datetime", "format": "%Y-%m-%d %H:%M:%S"},
            {"name": "at", "type": "datetime"},
            {"name": "clock", "type": "time"},
            {"name": "note", "type": "string"},
        ],
        "missingValues": ["NA"],
    }
)

COMPOSITE = parse_table_schema(
    {"fields": [{"name": "a"}, {"name": "b"}], "primaryKey": ["a", "b"]},
)


def entity_of(schema: TableSchema, values: dict[str, Any], key: str = "k") -> dict[str, Any]:
    return row_entity(schema, values, key=key, job_id="job1", op="i")


def read_back(schema: TableSchema, cells: list[str]) -> dict[str, Any]:
    """Read exported cells the way an import reads them (missing values first, then the field's type)."""
    values: dict[str, Any] = {}
    for item, cell in zip(schema.fields, cells, strict=True):
        values[item.name] = None if cell in schema.missing_values else cell_reader(item)(cell)
    return values


def same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left):
        return math.isnan(right)
    return bool(left == right) and type(left) is type(right)


# RowKeys


@pytest.mark.parametrize(
    ("api", "row_key"),
    [
        ("plain-key_1.é,x y", "plain-key_1.é,x y"),
        ("a/b", "a%2Fb"),
        ("a\\b", "a%5Cb"),
        ("a#b", "a%23b"),
        ("a?b", "a%3Fb"),
        ("100%", "100%25"),
        ("%2F", "%252F"),  # a key that looks encoded is encoded again, so decoding gives it back
        ("tab\there", "tab%09here"),
        ("nul\x00", "nul%00"),
        ("\x1f\x7f\x9f", "%1F%7F%9F"),
        ("\xa0", "\xa0"),  # just past the C1 controls: allowed as it is
    ],
)
def test_forbidden_characters_are_percent_encoded_and_decoded(api: str, row_key: str) -> None:
    assert row_key_of(api) == row_key
    assert entity_key({"RowKey": row_key}) == api


def test_a_plain_key_stores_no_key_property() -> None:
    entity = entity_of(ALL_TYPES, {"id": 1}, key="1")
    assert entity["RowKey"] == "1"
    assert KEY_PROPERTY not in entity


def test_a_key_of_exactly_the_limit_is_kept_as_it_is() -> None:
    key = "x" * MAX_ROW_KEY_CHARS
    assert row_key_of(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "x" * (MAX_ROW_KEY_CHARS + 1),
        "/" * 100,  # short, but 300 characters once encoded
        "é" * 1000,
    ],
)
def test_long_keys_are_digested_and_kept_in_a_property(key: str) -> None:
    row_key = row_key_of(key)
    assert len(row_key) <= MAX_ROW_KEY_CHARS
    assert row_key != key
    assert re.fullmatch(r".{200}~[0-9a-f]{40}", row_key, re.DOTALL)
    entity = entity_of(ALL_TYPES, {"id": 1}, key=key)
    assert entity["RowKey"] == row_key
    assert entity[KEY_PROPERTY] == key
    assert entity_key(entity) == key
    assert row_view(ALL_TYPES, entity)["key"] == key


def test_long_keys_with_the_same_start_get_different_row_keys() -> None:
    first, second = "k" * 300 + "a", "k" * 300 + "b"
    assert row_key_of(first)[:200] == row_key_of(second)[:200]
    assert row_key_of(first) != row_key_of(second)


def test_a_key_shaped_like_a_digested_one_never_takes_its_row_key() -> None:
    long_key = "k" * 300
    digested = row_key_of(long_key)  # "k" * 200 + "~" + 40 hex digits
    assert row_key_of(digested) != digested  # the short key spelled exactly like it is stored apart
    entity = entity_of(ALL_TYPES, {"id": 1}, key=digested)
    assert entity_key(entity) == digested and len(entity["RowKey"]) <= MAX_ROW_KEY_CHARS
    assert row_key_of("k" * 200 + "~" + "g" * 40) == "k" * 200 + "~" + "g" * 40  # not hex: as it is


@given(st.text(max_size=400))
def test_every_key_gets_a_valid_row_key_that_gives_it_back(key: str) -> None:
    entity = entity_of(ALL_TYPES, {}, key=key)
    assert len(entity["RowKey"]) <= MAX_ROW_KEY_CHARS
    assert FORBIDDEN_IN_ROW_KEYS.search(entity["RowKey"]) is None
    assert entity_key(entity) == key
    assert row_key_of(key) == row_key_of(key)


# Partitions


def test_partitions_are_stable_across_processes() -> None:
    # crc32, not Python's per-process salted hash(): a row must land in the same partition every run.
    assert [partition_of(key) for key in ("0", "1", "2", "3")] == ["p033", "p055", "p013", "p027"]


@given(st.text())
def test_a_partition_is_always_one_of_the_128(row_key: str) -> None:
    partition = partition_of(row_key)
    assert re.fullmatch(r"p(0[0-9][0-9]|1[01][0-9]|12[0-7])", partition)
    assert partition == partition_of(row_key)


def test_a_hundred_thousand_keys_spread_over_every_partition() -> None:
    counts = Counter(partition_of(row_key_of(str(number))) for number in range(100_000))
    assert set(counts) == {f"p{index:03d}" for index in range(PARTITIONS)}
    expected = 100_000 / PARTITIONS
    assert all(0.8 * expected < count < 1.2 * expected for count in counts.values()), counts


def test_a_row_entity_lives_in_the_partition_of_its_row_key() -> None:
    entity = entity_of(ALL_TYPES, {"id": 5}, key="a/b")
    assert entity["PartitionKey"] == partition_of("a%2Fb")


# API keys


@pytest.mark.parametrize(
    ("descriptor", "values", "expected"),
    [
        ({"name": "k", "type": "integer"}, {"k": 7}, "7"),
        ({"name": "k", "type": "integer"}, {"k": -(2**63)}, str(-(2**63))),
        ({"name": "k", "type": "number"}, {"k": 1.0}, "1.0"),
        ({"name": "k", "type": "number"}, {"k": 0.0}, "0.0"),
        ({"name": "k", "type": "number"}, {"k": -0.0}, "0.0"),  # -0 and 0 are the same key
        ({"name": "k", "type": "number"}, {"k": 2.5e-7}, "2.5e-07"),
        ({"name": "k", "type": "boolean"}, {"k": True}, "true"),
        ({"name": "k", "type": "boolean"}, {"k": False}, "false"),
        ({"name": "k", "type": "date"}, {"k": date(2024, 2, 29)}, "2024-02-29"),
        (
            {"name": "k", "type": "datetime"},
            {"k": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)},
            "2024-01-02T03:04:05+00:00",
        ),
        ({"name": "k", "type": "time"}, {"k": time(9, 30)}, "09:30:00"),
        ({"name": "k", "type": "year"}, {"k": 2024}, "2024"),
        ({"name": "k"}, {"k": "a,b\\c"}, "a,b\\c"),  # a single key is never escaped
    ],
)
def test_single_keys_use_the_canonical_text(
    descriptor: dict[str, Any], values: dict[str, Any], expected: str
) -> None:
    schema = parse_table_schema({"fields": [descriptor], "primaryKey": "k"})
    assert api_key(schema, values) == expected


def test_an_integer_key_written_with_leading_zeros_is_its_number() -> None:
    schema = parse_table_schema({"fields": [{"name": "k", "type": "integer"}], "primaryKey": "k"})
    reader = cell_reader(schema.fields[0])
    assert api_key(schema, {"k": reader("007")}) == api_key(schema, {"k": reader("7")}) == "7"


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("x", "y", "x,y"),
        ("x,1", "y", "x\\,1,y"),
        ("x", "1,y", "x,1\\,y"),
        ("x\\", "y", "x\\\\,y"),
        ("\\,", ",", "\\\\\\,,\\,"),
        ("", "", ","),
    ],
)
def test_composite_keys_escape_commas_and_backslashes(a: str, b: str, expected: str) -> None:
    assert api_key(COMPOSITE, {"a": a, "b": b}) == expected


def split_key(key: str) -> list[str]:
    """Undo the composite escaping: split on unescaped commas."""
    parts, current, escaped = [], "", False
    for char in key:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts, current = [*parts, current], ""
        else:
            current += char
    return [*parts, current]


@given(st.text(alphabet="ab,\\", max_size=6), st.text(alphabet="ab,\\", max_size=6))
def test_composite_keys_can_be_split_back_into_their_parts(a: str, b: str) -> None:
    assert split_key(api_key(COMPOSITE, {"a": a, "b": b})) == [a, b]


def test_composite_keys_with_commas_in_different_parts_differ() -> None:
    assert api_key(COMPOSITE, {"a": "x,y", "b": "z"}) != api_key(COMPOSITE, {"a": "x", "b": "y,z"})


def test_a_composite_key_mixes_types() -> None:
    schema = parse_table_schema(
        {
            "fields": [{"name": "day", "type": "date"}, {"name": "n", "type": "integer"}],
            "primaryKey": ["day", "n"],
        }
    )
    assert api_key(schema, {"day": date(2024, 1, 31), "n": 3}) == "2024-01-31,3"


# Entities and views


@pytest.mark.parametrize(
    ("name", "value", "viewed"),
    [
        ("id", 1, 1),
        ("id", 2**31, 2**31),  # beyond Int32
        ("id", -(2**31) - 1, -(2**31) - 1),
        ("id", 2**63 - 1, 2**63 - 1),
        ("id", -(2**63), -(2**63)),
        ("amount", 1.5, 1.5),
        ("amount", -0.25, -0.25),
        ("amount", 1e300, 1e300),
        ("amount", math.nan, "NaN"),
        ("amount", math.inf, "Infinity"),
        ("amount", -math.inf, "-Infinity"),
        ("active", True, True),
        ("active", False, False),
        ("day", date(2024, 2, 29), "2024-02-29"),
        ("moment", datetime(2024, 1, 2, 3, 4, 5, 600000, tzinfo=UTC), "2024-01-02T03:04:05.600000+00:00"),
        ("moment", datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05"),
        ("clock", time(23, 59, 59), "23:59:59"),
        ("clock", time(8, 0, tzinfo=timezone(timedelta(hours=2))), "08:00:00+02:00"),
        ("year", 1999, 1999),
        ("label", "héllo, wörld", "héllo, wörld"),
        ("label", "", ""),
    ],
)
def test_every_type_round_trips_through_entity_and_view(name: str, value: Any, viewed: Any) -> None:
    entity = entity_of(ALL_TYPES, {name: value})
    view = row_view(ALL_TYPES, entity)
    assert same(view["values"][name], viewed)
    assert all(view["values"][other] is None for other in ALL_TYPES.field_names if other != name)
    json.dumps(view, allow_nan=False)  # JSON has no NaN or infinities: the view must still encode


@pytest.mark.parametrize("name", ["id", "year"])
def test_integers_are_stored_as_int64(name: str) -> None:
    stored = entity_of(ALL_TYPES, {name: 5})[ALL_TYPES.field(name).property_name]
    assert isinstance(stored, EntityProperty)
    assert stored.edm_type == EdmType.INT64
    assert stored.value == 5


@pytest.mark.parametrize(
    ("value", "text"), [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity")]
)
def test_special_numbers_are_stored_as_edm_doubles(value: float, text: str) -> None:
    stored = entity_of(ALL_TYPES, {"amount": value})["amount"]
    assert stored == EntityProperty(text, EdmType.DOUBLE)


def test_missing_values_are_left_out_of_the_entity_and_viewed_as_none() -> None:
    entity = entity_of(ALL_TYPES, {"id": 1, "label": None})
    assert "label" not in entity
    assert row_view(ALL_TYPES, entity) == {
        "key": "k",
        "values": {name: (1 if name == "id" else None) for name in ALL_TYPES.field_names},
    }


def test_an_entity_carries_its_system_stamps_and_the_view_hides_them() -> None:
    entity = row_entity(ALL_TYPES, {"id": 1}, key="1", job_id="job9", op="u")
    assert entity[JOB_PROPERTY] == "job9:u"
    assert OP_PROPERTY not in entity
    assert written_by(entity) == ("job9", "u")
    assert written_by(row_entity(ALL_TYPES, {"id": 1}, key="1", job_id="job9", op="i")) == ("job9", "i")
    assert set(row_view(ALL_TYPES, entity)["values"]) == set(ALL_TYPES.field_names)


def test_rows_stored_with_the_older_operation_property_still_say_who_wrote_them() -> None:
    assert written_by({JOB_PROPERTY: "job3", OP_PROPERTY: "u"}) == ("job3", "u")
    assert written_by({JOB_PROPERTY: "job3", OP_PROPERTY: "i"}) == ("job3", "i")
    assert written_by({}) == ("", "i")


def test_a_row_of_the_most_fields_with_a_digested_key_fits_table_storage() -> None:
    schema = parse_table_schema(
        {
            "fields": [{"name": f"f{number}"} for number in range(MAX_FIELDS)],
            "primaryKey": "f0",
        }
    )
    values = {name: "x" for name in schema.field_names} | {"f0": "k" * 400}
    entity = row_entity(schema, values, key=api_key(schema, values), job_id="job1", op="u")
    assert KEY_PROPERTY in entity  # the key is too long for a RowKey
    assert len(set(entity) - {"PartitionKey", "RowKey"}) == MAX_OWN_PROPERTIES


def test_values_are_stored_under_their_property_names() -> None:
    schema = parse_table_schema({"fields": [{"name": "Row Key", "type": "integer"}, {"name": "1st"}]})
    entity = entity_of(schema, {"Row Key": 3, "1st": "a"})
    assert entity["Row_Key"] == EntityProperty(3, EdmType.INT64)
    assert entity["f_1st"] == "a"
    assert row_view(schema, entity)["values"] == {"Row Key": 3, "1st": "a"}


def test_a_view_reads_entities_as_table_storage_returns_them() -> None:
    # Read back from Table Storage, an Edm.Double NaN or infinity arrives as a float.
    stored = {"RowKey": "a%2Fb", "id": EntityProperty(2**40, EdmType.INT64), "amount": math.inf}
    view = row_view(ALL_TYPES, stored)
    assert view["key"] == "a/b"
    assert view["values"]["id"] == 2**40
    assert view["values"]["amount"] == "Infinity"
    assert row_view(ALL_TYPES, {"RowKey": "k", "amount": -math.inf})["values"]["amount"] == "-Infinity"
    assert row_view(ALL_TYPES, {"RowKey": "k", "amount": math.nan})["values"]["amount"] == "NaN"


# Export cells


def export_round_trip(values: dict[str, Any]) -> dict[str, Any]:
    cells = export_cells(FORMATTED, entity_of(FORMATTED, values), safe=False)
    return read_back(FORMATTED, cells)


def test_cells_use_the_fields_own_formats() -> None:
    values = {
        "day": date(2024, 1, 31),
        "price": 1234.5,
        "ok": True,
        "count": -12,
        "stamp": datetime(2024, 1, 31, 13, 5, 9),
        "at": datetime(2024, 1, 31, 13, 5, 9, tzinfo=UTC),
        "clock": time(7, 30, 15),
        "note": "hi",
    }
    cells = export_cells(FORMATTED, entity_of(FORMATTED, values), safe=False)
    assert cells == [
        "31/01/2024",
        "1234,5",
        "Y",
        "-12",
        "2024-01-31 13:05:09",
        "2024-01-31T13:05:09+00:00",
        "07:30:15",
        "hi",
    ]
    assert read_back(FORMATTED, cells) == values


def test_missing_values_export_as_the_first_missing_marker() -> None:
    cells = export_cells(FORMATTED, entity_of(FORMATTED, {}), safe=False)
    assert cells == ["NA"] * len(FORMATTED.fields)
    assert read_back(FORMATTED, cells) == dict.fromkeys(FORMATTED.field_names)


def test_missing_values_default_to_an_empty_cell() -> None:
    assert export_cells(ALL_TYPES, entity_of(ALL_TYPES, {"id": 1})) == ["1"] + [""] * 7


@pytest.mark.parametrize("ok", [True, False])
def test_booleans_export_as_the_first_true_or_false_value(ok: bool) -> None:
    cells = export_cells(FORMATTED, entity_of(FORMATTED, {"ok": ok}), safe=False)
    assert cells[2] == ("Y" if ok else "N")
    assert export_round_trip({"ok": ok})["ok"] is ok


@pytest.mark.parametrize(("value", "text"), [(math.nan, "NaN"), (math.inf, "INF"), (-math.inf, "-INF")])
def test_special_numbers_export_as_table_schema_writes_them(value: float, text: str) -> None:
    # Stored as Edm.Double text ("NaN", "Infinity", "-Infinity"), written as Table Schema's words.
    stored = {"NaN": "NaN", "INF": "Infinity", "-INF": "-Infinity"}[text]
    assert cell_text(FORMATTED.field("price"), stored) == text
    cells = export_cells(FORMATTED, entity_of(FORMATTED, {"price": value}), safe=False)
    assert cells[1] == text
    assert same(export_round_trip({"price": value})["price"], value)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_integers_export_and_read_back(number: int) -> None:
    assert export_round_trip({"count": number})["count"] == number


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_numbers_export_and_read_back_with_a_decimal_comma(number: float) -> None:
    assert same(export_round_trip({"price": number})["price"], number)


@given(st.dates(min_value=date(1000, 1, 1)))
def test_dates_export_and_read_back_in_a_custom_format(day: date) -> None:
    assert export_round_trip({"day": day})["day"] == day


@given(st.datetimes(min_value=datetime(1000, 1, 1)).map(lambda moment: moment.replace(microsecond=0)))
def test_datetimes_export_and_read_back_in_a_custom_format(moment: datetime) -> None:
    assert export_round_trip({"stamp": moment})["stamp"] == moment


@given(st.datetimes(timezones=st.none() | st.just(UTC)))
def test_datetimes_export_and_read_back_in_the_default_format(moment: datetime) -> None:
    read = export_round_trip({"at": moment})["at"]
    assert read == moment
    assert (read.tzinfo is None) == (moment.tzinfo is None)


@given(
    st.times(
        timezones=st.none()
        | st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
            lambda minutes: timezone(timedelta(minutes=minutes))
        )
    )
)
def test_times_export_and_read_back_in_the_default_format(clock: time) -> None:
    read = export_round_trip({"clock": clock})["clock"]
    assert read == clock
    assert read.utcoffset() == clock.utcoffset()


@given(st.text().filter(lambda text: text not in FORMATTED.missing_values))
def test_text_exports_unchanged_without_safe(text: str) -> None:
    assert export_round_trip({"note": text})["note"] == text


# CSV injection


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("a=b", "a=b"),
        (" =1", " =1"),
        ("'=1", "'=1"),
        ("", ""),
        ("plain", "plain"),
    ],
)
def test_safe_cell_neutralises_formula_starts(text: str, safe: str) -> None:
    assert safe_cell(text) == safe


def test_safe_export_prefixes_text_cells_only() -> None:
    values = {"count": -5, "price": -5.0, "note": "-5", "stamp": None, "ok": False}
    entity = entity_of(FORMATTED, values)
    safe = export_cells(FORMATTED, entity, safe=True)
    raw = export_cells(FORMATTED, entity, safe=False)
    assert safe[FORMATTED.field_names.index("count")] == "-5"
    assert safe[FORMATTED.field_names.index("price")] == "-5,0"
    assert safe[FORMATTED.field_names.index("note")] == "'-5"
    assert raw[FORMATTED.field_names.index("note")] == "-5"
    assert [cell for cell, name in zip(safe, FORMATTED.field_names, strict=True) if name != "note"] == [
        cell for cell, name in zip(raw, FORMATTED.field_names, strict=True) if name != "note"
    ]


@given(st.integers(min_value=-(2**63), max_value=-1), st.floats(max_value=-1e-300, allow_nan=False))
def test_negative_numbers_are_never_prefixed(count: int, price: float) -> None:
    cells = export_cells(FORMATTED, entity_of(FORMATTED, {"count": count, "price": price}), safe=True)
    assert cells[3] == str(count)
    assert not cells[1].startswith("'")


@pytest.mark.parametrize("formula", ["=cmd|' /C calc'!A0", "+1", "-1", "@x", "\t=1", "\r=1"])
def test_safe_export_neutralises_formulas_in_string_and_any_fields(formula: str) -> None:
    schema = parse_table_schema({"fields": [{"name": "s"}, {"name": "a", "type": "any"}]})
    cells = export_cells(schema, entity_of(schema, {"s": formula, "a": formula}))
    assert cells == ["'" + formula, "'" + formula]
    assert export_cells(schema, entity_of(schema, {"s": formula, "a": formula}), safe=False) == [formula] * 2


def test_the_header_is_neutralised_too() -> None:
    schema = parse_table_schema({"fields": [{"name": "=x"}, {"name": "y"}]})
    assert export_header(schema) == ["'=x", "y"]
    assert export_header(schema, safe=False) == ["=x", "y"]


# Comparing and sizing entities


def test_same_values_ignores_system_stamps() -> None:
    values = {"id": 1, "amount": 2.5, "label": "x"}
    stored = row_entity(ALL_TYPES, values, key="1", job_id="old", op="i")
    fresh = row_entity(ALL_TYPES, values, key="1", job_id="new", op="u")
    assert same_values(ALL_TYPES, stored, fresh)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"id": 1, "label": "x"}, {"id": 1, "label": "y"}),
        ({"id": 1, "label": "x"}, {"id": 1}),
        ({"id": 1}, {"id": 1, "label": ""}),
        ({"id": 1, "amount": 1.0}, {"id": 1, "amount": math.nan}),
        ({"id": 1, "active": True}, {"id": 1, "active": False}),
        ({"id": 1}, {"id": 2}),
    ],
)
def test_same_values_sees_any_changed_field(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert not same_values(ALL_TYPES, entity_of(ALL_TYPES, before), entity_of(ALL_TYPES, after))
    assert not same_values(ALL_TYPES, entity_of(ALL_TYPES, after), entity_of(ALL_TYPES, before))


def test_same_values_treats_nan_as_equal_to_itself() -> None:
    fresh = entity_of(ALL_TYPES, {"id": 1, "amount": math.nan})
    assert same_values(ALL_TYPES, entity_of(ALL_TYPES, {"id": 1, "amount": math.nan}), fresh)
    # As Table Storage returns it: a float NaN, and the integer as a typed property.
    stored = {"id": EntityProperty(1, EdmType.INT64), "amount": math.nan}
    assert same_values(ALL_TYPES, stored, fresh)


def test_same_values_compares_typed_and_plain_integers_by_value() -> None:
    fresh = entity_of(ALL_TYPES, {"id": 2**40, "year": 2024})
    assert same_values(ALL_TYPES, {"id": 2**40, "year": 2024}, fresh)
    assert not same_values(ALL_TYPES, {"id": 2**40, "year": 2023}, fresh)


def test_entity_bytes_counts_names_and_values() -> None:
    assert entity_bytes({}) == 4
    assert entity_bytes({"PartitionKey": "p00"}) == 4 + (8 + 2 * 12) + (4 + 2 * 3)
    assert entity_bytes({"n": 5}) == 4 + (8 + 2) + 8
    assert entity_bytes({"n": EntityProperty(2**40, EdmType.INT64)}) == 4 + (8 + 2) + 8


@pytest.mark.parametrize("char", ["a", "é", "中"])
def test_entity_bytes_counts_text_as_utf16(char: str) -> None:
    assert entity_bytes({"s": char * 10}) - entity_bytes({"s": ""}) == 20


def test_a_row_with_a_huge_text_is_over_the_limit() -> None:
    small = entity_of(ALL_TYPES, {"id": 1, "label": "x" * 1000})
    huge = entity_of(ALL_TYPES, {"id": 1, "label": "x" * (MAX_ENTITY_BYTES // 2)})
    assert entity_bytes(small) < MAX_ENTITY_BYTES < entity_bytes(huge)


def _refused(entity: dict[str, Any]) -> bool:
    """Table Storage's rule, spelled out: too many bytes in all, or one text over 32,767 UTF-16 units."""
    units = [
        len(value.encode("utf-16-le", "surrogatepass")) // 2
        for value in entity.values()
        if isinstance(value, str)
    ]
    return entity_bytes(entity) > MAX_ENTITY_BYTES or max(units, default=0) > MAX_PROPERTY_UNITS


@pytest.mark.parametrize(
    ("texts", "refused"),
    [
        (["x" * 1000], False),
        (["x" * MAX_PROPERTY_UNITS], False),  # one text at the limit, past the quick bound
        (["x" * (MAX_PROPERTY_UNITS + 1)], True),
        (["\U0001f600" * (MAX_PROPERTY_UNITS // 2)], False),  # two UTF-16 units per character
        (["\U0001f600" * (MAX_PROPERTY_UNITS // 2 + 1)], True),
        (["x" * 16_000] * 31, False),  # 992,000 bytes of text: under the limit, past the quick bound
        (["x" * 16_000] * 32, True),
        (["é" * 16_000] * 32, True),
    ],
)
def test_too_large_follows_table_storages_limits(texts: list[str], refused: bool) -> None:
    entity: dict[str, Any] = {"PartitionKey": "p001", "RowKey": "1", "n": 5}
    entity.update({f"t{number}": text for number, text in enumerate(texts)})
    assert too_large(entity) is refused
    assert _refused(entity) is refused


@given(
    st.dictionaries(
        st.text("abcXYZ_", min_size=1, max_size=8),
        st.one_of(
            st.integers(0, 9),
            st.booleans(),
            st.builds(lambda char, n: char * n, st.sampled_from("aé中\U0001f600"), st.integers(0, 40_000)),
        ),
        max_size=40,
    )
)
def test_too_large_agrees_with_the_rule_spelled_out(entity: dict[str, Any]) -> None:
    assert too_large(entity) is _refused(entity)


# Regression tests for bugs the first review found.


def test_an_unchanged_infinity_is_the_same_value() -> None:
    schema = parse_table_schema({"fields": [{"name": "x", "type": "number"}]})
    fresh = row_entity(schema, {"x": math.inf}, key="k", job_id="j", op="i")
    assert same_values(schema, {"x": math.inf}, fresh)  # Azurite gives the float back
    assert not same_values(schema, {"x": -math.inf}, fresh)


@pytest.mark.parametrize(
    ("descriptor", "stored", "text"),
    [
        ({"type": "date", "format": "%d/%m/%Y"}, "0999-01-31", "31/01/0999"),
        ({"type": "datetime", "format": "%Y-%m-%d %H:%M:%S"}, "0999-05-06T07:08:09", "0999-05-06 07:08:09"),
        ({"type": "year"}, 999, "0999"),
    ],
)
def test_years_before_1000_export_as_four_digits(descriptor: dict, stored: object, text: str) -> None:
    item = parse_table_schema({"fields": [{"name": "v", **descriptor}]}).fields[0]
    assert cell_text(item, stored) == text
    read = cell_reader(item)(text)
    assert (read.isoformat() if hasattr(read, "isoformat") else read) == stored


def test_entity_bytes_counts_utf16_code_units() -> None:
    assert entity_bytes({"s": "😀"}) - entity_bytes({"s": ""}) == 4
    assert entity_bytes({"s": "é"}) - entity_bytes({"s": ""}) == 2


def test_a_missing_marker_is_never_neutralised() -> None:
    schema = parse_table_schema({"fields": [{"name": "t", "type": "string"}], "missingValues": ["-"]})
    assert export_cells(schema, {}, safe=True) == ["-"]
    assert export_cells(schema, {"t": "-x"}, safe=True) == ["'-x"]


ENCODED_TYPES = parse_table_schema(
    {
        "fields": [
            *({"name": item.name, "type": item.type} for item in ALL_TYPES.fields),
            {"name": "month", "type": "yearmonth"},
            {"name": "span", "type": "duration"},
            {"name": "whatever", "type": "any"},
            {"name": "Wörter mit Leerzeichen", "type": "string"},  # stored under a mapped property name
        ],
        "primaryKey": "id",
    }
)
_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
_VALUES = st.fixed_dictionaries(
    {},
    optional={
        "id": st.integers(-(2**63), 2**63 - 1),
        "amount": st.floats(),
        "active": st.booleans(),
        "day": st.dates(),
        "moment": st.datetimes(timezones=st.none() | st.just(UTC)),
        "clock": st.times(),
        "year": st.integers(0, 9999),
        "label": _TEXT | st.builds(lambda n: "\U0001f600" * n, st.integers(8_000, 20_000)),
        "month": st.just("2024-02"),
        "span": st.just("P1DT2H"),
        "whatever": _TEXT,
        "Wörter mit Leerzeichen": _TEXT,
    },
)


@given(_VALUES, _TEXT | st.text(min_size=250, max_size=300))
def test_the_row_encoder_writes_what_entity_json_writes_of_the_row_entity(
    values: dict[str, Any], key: str
) -> None:
    entity = entity_of(ENCODED_TYPES, values, key=key)
    encoded, large = RowEncoder(ENCODED_TYPES, job_id="job1", op="i").encode(values, key=key)
    assert (encoded.partition_key, encoded.row_key) == (entity["PartitionKey"], entity["RowKey"])
    assert encoded.body == entity_json(entity)
    assert large is too_large(entity)
    assert entity_from_json(encoded.body) == entity  # and reads back as it was built


def test_the_row_encoder_writes_a_value_of_an_unusual_type_as_entity_json_does() -> None:
    values = {"id": True, "amount": 5, "active": 1, "day": "2024-02-29", "label": 7}
    encoded, _ = RowEncoder(ALL_TYPES, job_id="job1", op="i").encode(values, key="k")
    assert encoded.body == entity_json(entity_of(ALL_TYPES, values))


@pytest.mark.parametrize(("length", "large"), [(16_000, False), (MAX_PROPERTY_UNITS, False), (40_000, True)])
def test_the_row_encoder_measures_long_rows_exactly(length: int, large: bool) -> None:
    values = {"id": 1, "label": "x" * length}
    assert RowEncoder(ALL_TYPES, job_id="job1", op="u").encode(values, key="1")[1] is large
