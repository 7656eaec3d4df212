"""Profiling: one streaming pass gives encoding, dialect, header, types and column statistics."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from core.profiling import (
    BOOLEAN,
    DATE,
    DATETIME,
    INTEGER,
    NUMBER,
    SKETCH_SIZE,
    TIME,
    ColumnProfile,
    Profile,
    ProfileFailed,
    _DistinctCounter,
    classify,
    profile_stream,
)

ROWS = [
    ["id", "name", "amount", "joined"],
    ["1", "Ada", "3.5", "2024-01-02"],
    ["2", "Bob", "4", "2024-02-29"],
    ["3", "Cy", "", "2023-12-31"],
]


def delimited(rows: list[list[str]], delimiter: str = ",", newline: str = "\n") -> str:
    return newline.join(delimiter.join(row) for row in rows) + newline


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def profile(data: bytes | str, size: int = 1 << 20, **options: int) -> Profile:
    raw = data.encode() if isinstance(data, str) else data
    return profile_stream(pieces(raw, size), **options)


def column(result: Profile, name: str) -> ColumnProfile:
    return next(column for column in result.columns if column.name == name)


def schema_fields(result: Profile) -> list[dict[str, object]]:
    fields = result.inferred_schema["fields"]
    assert isinstance(fields, list)
    return fields


def failure(data: bytes | str, **options: int) -> str:
    with pytest.raises(ProfileFailed) as caught:
        profile(data, **options)
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_delimiters_line_ends_and_types(delimiter: str, newline: str) -> None:
    result = profile(delimited(ROWS, delimiter, newline), size=3)
    assert result.dialect.delimiter == delimiter
    assert result.dialect.line_terminator == newline
    assert result.dialect.header is True
    assert result.encoding == "utf-8"
    assert result.row_count == result.sampled_rows == 3
    assert result.preview == ROWS[1:]
    assert [(c.name, c.type) for c in result.columns] == [
        ("id", "integer"),
        ("name", "string"),
        ("amount", "number"),
        ("joined", "date"),
    ]


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (b"\xef\xbb\xbf" + "name;city\nZoë;Málaga\n".encode(), "utf-8-sig"),
        (b"\xff\xfe" + "name;city\nZoë;Málaga\n".encode("utf-16-le"), "utf-16-le"),
        (b"\xfe\xff" + "name;city\nZoë;Málaga\n".encode("utf-16-be"), "utf-16-be"),
        ("name;city\nZoë;Málaga\n".encode("cp1252"), "cp1252"),
        ("name;city\nZoë;Málaga\n".encode(), "utf-8"),
    ],
)
@pytest.mark.parametrize("size", [1, 2, 5, 4096])
def test_encodings(data: bytes, encoding: str, size: int) -> None:
    result = profile(data, size=size)
    assert result.encoding == encoding
    assert [c.name for c in result.columns] == ["name", "city"]  # no BOM left in the first name
    assert result.preview == [["Zoë", "Málaga"]]


def test_cp1252_with_accented_letters() -> None:
    result = profile("first;last;drink\nZoë;Müller;café\nRenée;Groß;thé\n".encode("cp1252"))
    assert result.encoding == "cp1252"
    assert result.dialect.delimiter == ";"
    assert result.preview == [["Zoë", "Müller", "café"], ["Renée", "Groß", "thé"]]


def test_invalid_utf8_only_after_2_mib_reports_cp1252() -> None:
    lines = ["id,city"] + [f"{n},Paris" for n in range(300_000)] + ["300000,Besançon"]
    data = "\n".join(lines).encode("cp1252") + b"\n"
    assert data.index(b"\xe7") > 2 * 1024 * 1024
    result = profile(data, size=65_536)
    assert result.encoding == "cp1252"
    assert result.row_count == 300_001
    assert column(result, "city").distinct == 2  # "Besançon" decoded once, as one value
    assert column(result, "id").max == 300_000


def test_utf8_mixed_with_cp1252_fails_with_a_reason() -> None:
    data = "id,city\n1,Zoë\n".encode() + b"2,Paris\n" * 400_000 + "3,Besançon\n".encode("cp1252")
    assert "mixes two encodings" in failure(data)


def test_quoted_fields_with_delimiters_quotes_and_newlines() -> None:
    data = b'id,comment\r\n1,"Hello, world"\r\n2,"She said ""hi"""\r\n3,"line one\r\nline two"\r\n'
    for size in range(1, 8):
        result = profile(data, size=size)
        assert result.row_count == 3
        assert result.dialect.quote_char == '"'
        assert result.dialect.line_terminator == "\r\n"
        assert [row[1] for row in result.preview] == ["Hello, world", 'She said "hi"', "line one\r\nline two"]


def test_header_only_file() -> None:
    result = profile("id,name,email\n")
    assert result.dialect.header is True
    assert result.row_count == result.sampled_rows == 0
    assert result.preview == []
    assert [(c.name, c.type, c.null_count, c.distinct) for c in result.columns] == [
        ("id", "string", 0, 0),
        ("name", "string", 0, 0),
        ("email", "string", 0, 0),
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xef\xbb\xbf",
        b"\xff\xfe",
        b"\xfe\xff",
        b"\n\n\r\n",
        b"   \n\t\n  ",
        "\r\n".encode("utf-16"),
        b",,\n,,\n",
    ],
)
def test_empty_files(data: bytes) -> None:
    assert failure(data) == "The file is empty."


def test_utf16_with_an_odd_byte_count_fails() -> None:
    data = b"\xff\xfe" + "a,b\n1,2\n".encode("utf-16-le") + b"\x00"
    assert "not valid UTF-16" in failure(data)


def test_no_header_numeric_file() -> None:
    result = profile("1,2.5,2024-01-01\n2,3.5,2024-01-02\n3,-1,2024-01-03\n")
    assert result.dialect.header is False
    assert result.row_count == 3
    assert [c.name for c in result.columns] == ["column_1", "column_2", "column_3"]
    assert [c.type for c in result.columns] == ["integer", "number", "date"]
    assert result.preview[0] == ["1", "2.5", "2024-01-01"]
    assert column(result, "column_2").min == -1.0


def test_leading_zero_codes_stay_strings() -> None:
    result = profile("zip,agent,count,share\n00501,007,0,0.5\n10001,12,3,-0.5\n90210,99,10,0\n")
    assert [c.type for c in result.columns] == ["string", "string", "integer", "number"]
    assert column(result, "zip").min is None
    assert column(result, "count").min == 0
    assert column(result, "share").max == 0.5


@pytest.mark.parametrize(
    ("value", "types"),
    [
        ("0", INTEGER | NUMBER | BOOLEAN),
        ("1", INTEGER | NUMBER | BOOLEAN),
        ("-42", INTEGER | NUMBER),
        ("999999999999999", INTEGER | NUMBER),
        ("1234567890123456", 0),  # more than 15 digits: an identifier, not a number
        ("007", 0),
        ("00501", 0),
        ("-007", 0),
        ("+5", 0),
        ("0.5", NUMBER),
        ("-0.5", NUMBER),
        ("1.5e-3", NUMBER),
        ("2E10", NUMBER),
        ("00.5", 0),
        (".5", 0),
        ("1,000", 0),
        ("NaN", 0),
        ("inf", 0),
        ("true", BOOLEAN),
        ("FALSE", BOOLEAN),
        ("yes", 0),
        ("2024-02-29", DATE),
        ("2023-02-29", 0),
        ("2024-13-01", 0),
        ("2024-01-02T10:30", DATETIME),
        ("2024-01-02 10:30:00", DATETIME),
        ("2024-01-02T10:30:00.123456Z", DATETIME),
        ("2024-01-02T10:30:00+05:30", DATETIME),
        ("2024-01-02T25:30:00", 0),
        ("10:30:00", TIME),
        ("10:30:00.5", TIME),
        ("24:00:00", 0),
        ("10:30", 0),
        ("2024", INTEGER | NUMBER),  # year is not inferred
        ("١٢٣", 0),  # non-ASCII digits
    ],
)
def test_classify(value: str, types: int) -> None:
    assert classify(value) == types


def test_a_rare_value_on_the_last_of_5000_rows_is_not_missed() -> None:
    rows = [[str(n), str(n * 2)] for n in range(1, 5000)]
    as_number = profile(delimited([["id", "qty"], *rows, ["5000", "12.5"]]))
    as_string = profile(delimited([["id", "qty"], *rows, ["5000", "n/a"]]))
    assert as_number.sampled_rows == as_number.row_count == 5000
    assert column(as_number, "qty").type == "number"
    assert column(as_number, "qty").max == 9998.0
    assert column(as_string, "qty").type == "string"
    assert column(as_string, "id").type == "integer"


def test_min_max_and_null_counts_are_exact() -> None:
    rows = [
        ["n", "x", "d", "dt", "t", "flag", "s"],
        ["5", "2.5", "2024-03-01", "2024-01-01T12:00:00+02:00", "23:59:59", "true", "b"],
        ["", "-1e2", "", "2024-01-01 09:00", "00:00:01", "", ""],
        ["-3", "", "2023-12-31", "2024-01-01T11:00:00Z", "", "false", "a"],
        ["12", "7", "2024-02-29", "", "12:00:00.5", "TRUE", ""],
    ]
    result = profile(delimited(rows))
    summary = {c.name: (c.type, c.null_count, c.min, c.max) for c in result.columns}
    assert summary == {
        "n": ("integer", 1, -3, 12),
        "x": ("number", 1, -100.0, 7.0),
        "d": ("date", 1, "2023-12-31", "2024-03-01"),
        # +02:00 noon is 10:00 UTC: the earliest instant; 11:00Z is the latest.
        "dt": ("datetime", 1, "2024-01-01 09:00", "2024-01-01T11:00:00Z"),
        "t": ("time", 1, "00:00:01", "23:59:59"),
        "flag": ("boolean", 1, None, None),
        "s": ("string", 2, None, None),
    }
    assert isinstance(column(result, "n").min, int)
    assert isinstance(column(result, "x").max, float)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["0", "1", "1", "0"], "integer"),
        (["true", "false", "1", "0"], "boolean"),
        (["True", "FALSE"], "boolean"),
        (["yes", "no"], "string"),
        (["1", "2024-01-01"], "string"),
        (["", ""], "string"),
        (["2024-01-01", "2024-01-02T00:00:00"], "string"),
    ],
)
def test_column_types(values: list[str], expected: str) -> None:
    rows = [["key", "value"]] + [[f"k{n}", value] for n, value in enumerate(values)]
    assert column(profile(delimited(rows)), "value").type == expected


def test_an_all_empty_column_is_a_string_with_every_cell_null() -> None:
    result = profile("id,empty\n1,\n2,\n3,\n")
    assert (column(result, "empty").type, column(result, "empty").null_count) == ("string", 3)
    assert column(result, "empty").distinct == 0


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["ada@example.com", "", "bob@mail.example.org"], "email"),
        (["https://example.com/a?b=1", "http://x.org", "mailto:ada@example.com"], "uri"),
        (["123e4567-e89b-12d3-a456-426614174000", "A23E4567-E89B-12D3-A456-426614174000"], "uuid"),
        (["ada@example.com", "not an email"], None),
        (["https://example.com", "example.com"], None),
        (["plain", "text"], None),
    ],
)
def test_string_formats_need_every_value_to_match(values: list[str], expected: str | None) -> None:
    rows = [["key", "value"]] + [[f"k{n}", value] for n, value in enumerate(values)]
    result = profile(delimited(rows))
    assert column(result, "value").format == expected
    field = schema_fields(result)[1]
    assert field.get("format") == expected


def test_distinct_is_exact_on_small_data() -> None:
    rows = [["colour", "n"]] + [[colour, "1"] for colour in ["red", "green", "red", "", "blue", "green"]]
    result = profile(delimited(rows))
    assert (column(result, "colour").distinct, column(result, "colour").distinct_exact) == (3, True)
    assert (column(result, "n").distinct, column(result, "n").distinct_exact) == (1, True)


def test_distinct_is_estimated_within_5_percent_on_50000_values() -> None:
    rows = [["id", "code", "group"]] + [
        [str(n), f"C{n * 7919 % 1_000_003}", str(n % 100)] for n in range(50_000)
    ]
    result = profile(delimited(rows))
    for name in ("id", "code"):
        estimate = column(result, name)
        assert not estimate.distinct_exact
        assert abs(estimate.distinct - 50_000) <= 2_500, estimate
    assert (column(result, "group").distinct, column(result, "group").distinct_exact) == (100, True)


def test_an_estimate_of_distinct_values_never_exceeds_the_values() -> None:
    rows = [["id", "note"]] + [[str(n), "" if n % 2 else f"n{n}"] for n in range(40_002)]
    result = profile(delimited(rows))
    assert not column(result, "id").distinct_exact
    assert column(result, "id").distinct <= 40_002
    assert column(result, "note").distinct <= 20_001  # half the cells are empty


def test_too_many_columns() -> None:
    header = ",".join(f"c{n}" for n in range(251))
    assert (
        failure(header + "\n" + header.replace("c", "") + "\n")
        == "The file has 251 columns; the limit is 250."
    )
    assert failure("a,b,c\n1,2,3\n", max_columns=2) == "The file has 3 columns; the limit is 2."


@pytest.mark.parametrize("length", [65_537, 150_000])
def test_a_too_long_field_names_row_and_column(length: int) -> None:
    data = "id,notes\n1,short\n2," + "x" * length + "\n"
    expected = "Record 3 (line 3), column 2: the field is longer than 65,536 characters, the limit."
    assert failure(data) == expected


def test_a_field_at_the_limit_is_fine() -> None:
    result = profile("id,notes\n1," + "x" * 65_536 + "\n")
    assert result.row_count == 1
    assert len(result.preview[0][1]) == 1_000  # preview cells are cut short; profiling is not


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"a,b\n1,2\n3,\x004\n", "Record 3 (line 3) contains a NUL character"),
        (
            b'a,b\n1,"2\n3,4\n',
            "Record 2 (line 2) has a quoted field that is not closed before the end of the file.",
        ),
    ],
)
def test_malformed_csv_fails_with_the_row(data: bytes, message: str) -> None:
    assert failure(data).startswith(message)


def test_ragged_rows_are_counted_and_missing_cells_are_null() -> None:
    result = profile("a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,11,12\n")
    assert result.ragged_rows == 2
    assert result.row_count == 4
    assert column(result, "c").null_count == 1
    assert column(result, "c").max == 12
    assert result.preview[1:3] == [["4", "5", ""], ["6", "7", "8"]]


def test_blank_and_duplicate_header_names_are_made_unique() -> None:
    result = profile(",name,name,amount,\n1,a,b,2,x\n2,c,d,3,y\n")
    assert result.dialect.header is True
    assert [c.name for c in result.columns] == ["column_1", "name", "name_2", "amount", "column_5"]
    assert [field["name"] for field in schema_fields(result)] == [c.name for c in result.columns]


@pytest.mark.parametrize(
    ("header", "names"),
    [
        ("id,a,a,a_2", ["id", "a", "a_3", "a_2"]),  # a_2 is a column of its own: the repeat takes a_3
        ("a_2,a,a", ["a_2", "a", "a_3"]),
        ("column_2,,x", ["column_2", "column_2_2", "x"]),
        ("x,x,x", ["x", "x_2", "x_3"]),
    ],
)
def test_a_name_made_unique_never_takes_another_columns_own_name(header: str, names: list[str]) -> None:
    width = header.count(",") + 1
    result = profile(f"{header}\n" + ",".join(["1"] * width) + "\n")
    assert result.dialect.header is True
    assert [c.name for c in result.columns] == names


@pytest.mark.parametrize(
    ("data", "header"),
    [
        ("id,name\n1,Ada\n2,Bob\n", True),
        ("1,Ada\n2,Bob\n", False),
        ("name,city\nAda,Paris\nBob,Rome\n", True),  # all text: names that do not recur below
        ("Ada,Paris\nAda,Rome\n", False),  # "Ada" recurs as a value
        ("007\n00501\n0042\n", False),  # codes are not names
        ("code\n007\n00501\n", True),
        ("id,amount,2024\n1,2.5,3\n2,3.5,4\n", True),  # most typed columns disagree with row 1
        ("active\ntrue\nfalse\n", True),
        ("Ada,Lovelace\n", True),  # one row of names: a header-only file
        ("1,2\n", False),  # one row of numbers: one data row
        ("a,a\n", False),  # duplicate names are no header of a header-only file
        ("2024-01-01,x\n2024-01-02,y\n", False),
        (",name,city\n0,alice,london\n1,bob,paris\n", True),  # pandas' unnamed index column
        (",1,x\n,2,y\n3,4,z\n", False),  # a blank where the column has blanks: no evidence
        ("1,,,x\n2,3,4,y\n5,6,7,z\n8,9,10,w\n", False),  # a typed cell that matches outweighs blanks
    ],
)
def test_header_detection(data: str, header: bool) -> None:
    result = profile(data)
    assert result.dialect.header is header
    assert result.row_count == data.count("\n") - header


def test_a_single_column_file_uses_a_delimiter_no_text_holds() -> None:
    result = profile("value\n1\n2\n3\n")
    assert (result.dialect.delimiter, result.row_count, result.columns[0].type) == ("\x1f", 3, "integer")


def test_semicolon_file_with_decimal_commas() -> None:
    result = profile("id;price;note\n1;3,50;a, b\n2;4,25;c\n")
    assert result.dialect.delimiter == ";"
    assert column(result, "price").type == "string"  # decimal commas are not numbers
    assert result.preview[0] == ["1", "3,50", "a, b"]


def test_single_quoted_file() -> None:
    result = profile("'name';'city'\n'Ada';'Paris; France'\n'Bob';'Rome; Italy'\n")
    assert (result.dialect.delimiter, result.dialect.quote_char) == (";", "'")
    assert result.preview == [["Ada", "Paris; France"], ["Bob", "Rome; Italy"]]


def test_preview_keeps_the_first_rows_only() -> None:
    rows = [["n"]] + [[str(n)] for n in range(50)]
    assert profile(delimited(rows)).preview == rows[1:21]
    assert profile(delimited(rows), preview_rows=2).preview == [["0"], ["1"]]
    no_header = profile("".join(f"{n}\n" for n in range(50)), preview_rows=3)
    assert (no_header.dialect.header, no_header.preview) == (False, [["0"], ["1"], ["2"]])


def test_to_json_is_camel_case_and_json_serialisable() -> None:
    result = profile(delimited(ROWS))
    document = json.loads(json.dumps(result.to_json()))
    assert document["encoding"] == "utf-8"
    assert document["rowCount"] == 3
    assert document["raggedRows"] == 0
    assert document["sampledRows"] == 3
    assert document["dialect"]["quoteChar"] == '"'
    assert document["columns"][2] == {
        "name": "amount",
        "type": "number",
        "format": None,
        "nullCount": 1,
        "distinct": 2,
        "distinctExact": True,
        "min": 3.5,
        "max": 4.0,
    }
    assert document["inferredSchema"] == {
        "fields": [
            {"name": "id", "type": "integer"},
            {"name": "name", "type": "string"},
            {"name": "amount", "type": "number"},
            {"name": "joined", "type": "date"},
        ],
        "missingValues": [""],
    }


# csv.writer leaves a lone CR unquoted when the line terminator is LF, so CR only comes as CRLF.
CELL_TEXT = st.lists(st.sampled_from([*'abcXYZ 019.-_éß€😀"\n', "\r\n"]), max_size=8).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
    newline=st.sampled_from(["\n", "\r\n"]),
    size=st.integers(min_value=1, max_value=7),
    table=st.integers(min_value=2, max_value=4).flatmap(
        lambda width: st.lists(
            st.lists(st.one_of(CELL_TEXT, st.just("")), min_size=width, max_size=width),
            min_size=1,
            max_size=25,
        )
    ),
    delimiter_in_cells=st.booleans(),
)
def test_rows_written_by_csv_writer_profile_back(
    delimiter: str, encoding: str, newline: str, size: int, table: list[list[str]], delimiter_in_cells: bool
) -> None:
    if delimiter_in_cells:
        table = [[cell.replace("a", delimiter) for cell in row] for row in table]
    assume(any(cell.strip() for row in table for cell in row))  # else the file is empty
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator=newline).writerows(table)
    result = profile_stream(pieces(buffer.getvalue().encode(encoding), size))
    header = int(result.dialect.header)
    assert result.dialect.delimiter == delimiter
    assert result.encoding == {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "utf-16": "utf-16-le"}[encoding]
    assert result.row_count + header == len(table)
    assert result.preview == table[header:][:20]
    assert result.ragged_rows == 0
    assert [c.null_count for c in result.columns] == [
        sum(1 for row in table[header:] if not row[index]) for index in range(len(table[0]))
    ]


CSV_TOKENS = [b"a", b"1", b"0.5", b"-", b",", b";", b"\t", b"|", b'"', b"'", b"\r", b"\n", b" ", b"\x00"]
BYTE_TOKENS = [b"\xc3\xa9", b"\xe9", b"\xef\xbb\xbf", b"\xff\xfe", b"\xf0\x9f\x98", b"2024-01-02"]
CSV_BYTES = st.lists(
    st.sampled_from(CSV_TOKENS + BYTE_TOKENS),
    max_size=40,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.binary(max_size=64), CSV_BYTES), size=st.integers(min_value=1, max_value=7))
def test_any_bytes_give_a_profile_or_a_reason_whatever_the_chunking(data: bytes, size: int) -> None:
    try:
        whole: object = profile_stream([data]).to_json()
    except ProfileFailed as failed:
        whole = failed.reason
    try:
        chunked: object = profile_stream(pieces(data, size)).to_json()
    except ProfileFailed as failed:
        chunked = failed.reason
    assert chunked == whole


POOL = [
    *(
        "1",
        "0",
        "-7",
        "42",
        "2.5",
        "1e3",
        "true",
        "FALSE",
        "2024-01-02",
        "2024-02-30",
        "2024-03-04T05:06:07Z",
    ),
    *("2024-03-04 05:06", "12:00:00", "x", "", "ab@c.de", "550e8400-e29b-41d4-a716-446655440000"),
    *("http://a.b/c", "y" * 70),
]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), rows=st.integers(min_value=1, max_value=1_500))
def test_statistics_do_not_depend_on_how_rows_are_read_or_ordered(seed: int, rows: int) -> None:
    """Lines without quotes are profiled a run of columns at a time and quoted ones record by record,
    gathered; both, and any order of the rows, must give the same statistics."""
    rng = random.Random(seed)
    pools = [rng.sample(POOL, rng.randint(1, 6)) for _ in range(4)]
    header = ["a", "b", "c", "d"]
    table = [[rng.choice(pool) for pool in pools] for _ in range(rows)]

    def written(body: list[list[str]], quoting: int) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n", quoting=quoting).writerows([header, *body])
        return buffer.getvalue().encode()

    plain = profile(written(table, csv.QUOTE_MINIMAL), size=4096)
    quoted = profile(written(table, csv.QUOTE_ALL), size=4096)
    shuffled = profile(written(rng.sample(table, len(table)), csv.QUOTE_MINIMAL), size=4096)
    assert plain.columns == quoted.columns == shuffled.columns
    assert plain.preview == quoted.preview == table[:20]
    assert plain.row_count == rows
    assert [c.null_count for c in plain.columns] == [sum(not row[i] for row in table) for i in range(4)]
    assert [c.distinct for c in plain.columns] == [len({row[i] for row in table} - {""}) for i in range(4)]


@pytest.mark.parametrize("count", [100, SKETCH_SIZE + 1, 30_000])
def test_counting_a_run_of_values_is_counting_them_one_by_one(count: int) -> None:
    values = [f"v{i % (count // 2 + 1)}" + ("x" * 80 if i % 7 == 0 else "") for i in range(count)]
    one_by_one, in_runs = _DistinctCounter(SKETCH_SIZE), _DistinctCounter(SKETCH_SIZE)
    for value in values:
        one_by_one.add(value)
    for start in range(0, count, 512):
        in_runs.add_many(values[start : start + 512])
    assert in_runs.count() == one_by_one.count()


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("line", ["sep=;", "SEP=;"])
def test_an_excel_sep_line_names_the_delimiter_and_is_not_a_row(
    encoding: str, newline: str, line: str
) -> None:
    # Commas in every cell: without the line, the comma would look like the delimiter.
    rows = [["id", "name", "note"], ["1", "Ada", "a,b"], ["2", "Bob", "c,d"]]
    result = profile_stream([(line + newline + delimited(rows, ";", newline)).encode(encoding)])
    assert (result.dialect.delimiter, result.dialect.header, result.dialect.sep_line) == (";", True, True)
    assert [column.name for column in result.columns] == ["id", "name", "note"]
    assert (result.row_count, result.preview) == (2, rows[1:])
    assert result.to_json()["dialect"]["sepLine"] is True


def test_a_sep_line_before_rows_without_a_header_is_not_a_row() -> None:
    result = profile_stream([b"sep=|\n1|2\n3|4\n"])
    assert (result.dialect.delimiter, result.dialect.header, result.dialect.sep_line) == ("|", False, True)
    assert (result.row_count, result.preview) == (2, [["1", "2"], ["3", "4"]])


@pytest.mark.parametrize("first", ["sep=", "sep=;;", 'sep="', "sep=;x", "separator=;", " sep=;"])
def test_a_first_line_only_like_a_sep_line_is_the_header(first: str) -> None:
    result = profile_stream([f"{first}\n1\n2\n".encode()])
    assert not result.dialect.sep_line
    assert result.to_json()["dialect"]["sepLine"] is False


@pytest.mark.parametrize("content", [b"sep=;\n", b"sep=;\r\n\r\n"])
def test_a_file_of_a_sep_line_alone_is_empty(content: bytes) -> None:
    with pytest.raises(ProfileFailed, match="The file is empty"):
        profile_stream([content])


@pytest.mark.parametrize(
    ("cells", "inferred"),
    [
        (["0.1", "123456789.123456", "-1.5e300"], "number"),  # 15 significant digits or fewer
        (["0.10000000000000000000", "2.5000000000000000"], "number"),  # more digits, the same double
        (["0.123456789012345678", "1.5"], "string"),  # a double would cut it: kept as text
        (["12345678901234567.5"], "string"),
    ],
)
def test_a_number_column_is_inferred_only_when_a_double_keeps_every_value(
    cells: list[str], inferred: str
) -> None:
    result = profile("v\n" + "\n".join(cells) + "\n")
    assert result.columns[0].type == inferred


@pytest.mark.parametrize(
    "data",
    ["name\nSmith, John\nDoe, Jane\nMadonna\n", "name\nSmith, John\nDoe, Jane\n", "note\na; b\nc, d\n"],
)
def test_a_one_column_file_keeps_values_holding_a_delimiter_whole(data: str) -> None:
    result = profile(data)
    assert result.dialect.delimiter not in data
    assert result.ragged_rows == 0
    assert [c.name for c in result.columns] == [data.split("\n", 1)[0]]
    assert result.preview == [[line] for line in data.splitlines()[1:]]
