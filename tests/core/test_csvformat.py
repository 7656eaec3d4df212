"""CSV format: encoding sniffing and incremental decoding, dialect sniffing, record reading and its limits."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from itertools import pairwise
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import csvformat
from core.csvformat import (
    CsvFormatError,
    DecodedText,
    Dialect,
    _allow_field_chars,
    _lines_of,
    _long_field_column,
    _too_long,
    _too_wide,
    decode_cp1252,
    read_records,
    sniff_dialect,
)

COMMA = Dialect(delimiter=",", quote_char='"', header=True)


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def records(data: bytes, dialect: Dialect = COMMA, size: int = 1 << 20, **limits: int) -> list[list[str]]:
    options = {"max_columns": 250, "max_field_chars": 65_536, **limits}
    return list(read_records(DecodedText(pieces(data, size)), dialect, **options))


def decoded(data: bytes, size: int) -> tuple[str, str]:
    text = DecodedText(pieces(data, size))
    return "".join(text), text.encoding


@pytest.mark.parametrize(
    ("data", "encoding", "expected"),
    [
        ("name\nZoë\n".encode(), "utf-8", "name\nZoë\n"),
        (b"\xef\xbb\xbf" + "name\nZoë\n".encode(), "utf-8-sig", "name\nZoë\n"),
        (b"\xff\xfe" + "name\nZoë 😀\n".encode("utf-16-le"), "utf-16-le", "name\nZoë 😀\n"),
        (b"\xfe\xff" + "name\nZoë 😀\n".encode("utf-16-be"), "utf-16-be", "name\nZoë 😀\n"),
        ("Zoë;Müller;café\n".encode("cp1252"), "cp1252", "Zoë;Müller;café\n"),
        ("€ „quoted“ \u2013 ok\n".encode("cp1252"), "cp1252", "€ „quoted“ \u2013 ok\n"),
    ],
)
@pytest.mark.parametrize("size", [1, 2, 3, 7, 4096])
def test_encodings_are_sniffed_and_decoded_across_chunk_boundaries(
    data: bytes, encoding: str, expected: str, size: int
) -> None:
    assert decoded(data, size) == (expected, encoding)


def test_cp1252_reads_its_five_undefined_bytes_as_latin1() -> None:
    assert decode_cp1252(b"\x80\x81\x8d\x8f\x90\x9d\xe9") == "€\x81\x8d\x8f\x90\x9dé"


def test_invalid_utf8_after_an_ascii_prefix_switches_to_cp1252_without_a_second_pass() -> None:
    ascii_part = b"id,word\n" + b"".join(b"%d,plain\n" % n for n in range(250_000))
    assert len(ascii_part) > 2 * 1024 * 1024
    data = ascii_part + "250000,café\n250001,Müller\n".encode("cp1252")
    chunks_read: list[int] = []

    def once() -> Iterator[bytes]:
        for chunk in pieces(data, 65_536):
            chunks_read.append(len(chunk))
            yield chunk

    text = DecodedText(once())
    assert text.encoding == "utf-8"  # the prefix alone looks like UTF-8
    rows = list(read_records(text, COMMA, max_columns=250, max_field_chars=65_536))
    assert text.encoding == "cp1252"
    assert rows[-2:] == [["250000", "café"], ["250001", "Müller"]]
    assert sum(chunks_read) == len(data)


@pytest.mark.parametrize("size", [1, 5, 65_536])
def test_late_switch_keeps_a_character_split_across_chunks(size: int) -> None:
    data = b"a\n" * 200_000 + b"caf\xe9\n\xe9t\xe9\n"
    text, encoding = decoded(data, size)
    assert encoding == "cp1252"
    assert text.endswith("a\ncafé\nété\n")


def test_utf8_text_followed_by_another_encoding_is_refused() -> None:
    data = "id,name\n1,Zoë\n".encode() + b"2,x\n" * 600_000 + "3,café\n".encode("cp1252")
    with pytest.raises(CsvFormatError, match=r"not valid UTF-8 at byte 2,400,0\d\d .*mixes two encodings"):
        records(data, size=65_536)


@pytest.mark.parametrize("size", [16, 65_536, 4 * 1024 * 1024])
def test_utf8_text_with_a_stray_cp1252_byte_within_the_sniffed_prefix_is_refused(size: int) -> None:
    """Read as cp1252, the file's UTF-8 text would be garbled ("Müller" → "MÃ¼ller"): it is refused."""
    data = "id,name\n1,Müller\n".encode() + b"2,Caf\xe9\n"  # one cp1252 byte among UTF-8 text
    with pytest.raises(CsvFormatError, match=r"not valid UTF-8 at byte 23 .*mixes two encodings"):
        records(data, size=size)


def test_cp1252_text_whose_first_non_ascii_byte_is_not_utf8_is_cp1252() -> None:
    text, encoding = decoded("id,name\n1,Café\n2,Müller\n".encode("cp1252"), 65_536)
    assert encoding == "cp1252" and text.endswith("Café\n2,Müller\n")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe" + "a,b\n".encode("utf-16-le") + b"x", "not valid UTF-16"),
        (b"\xff\xfe" + b"\x00\xd8a\x00", "not valid UTF-16"),  # an unpaired surrogate
        (b"\xef\xbb\xbfa,b\n\xe9\n", "UTF-8 byte order mark but is not valid utf-8-sig at byte 7"),
    ],
)
def test_broken_text_after_a_byte_order_mark_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(CsvFormatError, match=message):
        records(data)


@pytest.mark.parametrize(
    ("sample", "delimiter"),
    [
        ("id,name,amount\n1,Ada,3.5\n2,Bob,4\n", ","),
        ("id;name;amount\n1;Ada;3,5\n2;Bob;4,25\n", ";"),
        ("id\tname\tamount\n1\tAda, Lovelace\t3.5\n2\tBob; jr\t4\n", "\t"),
        ("id|name|amount\n1|Ada|3.5\n2|Bob|4\n", "|"),
        ('id,note\n1,"a;b;c"\n2,"d;e;f"\n3,"g;h;i"\n', ","),
        ("id,note\n1,a;b;c\n2,d;e;f\n", ","),
        ("value\n1\n2\n3\n", "\x1f"),  # one column: a delimiter no text holds
        ("name\nSmith, John\nDoe\nRoe\n", "\x1f"),
        ("name\nSmith, John\nDoe, Jane\n", "\x1f"),  # a header the comma does not split: not the comma
        ("id,name,\n1,Ada\n2,Bob\n", ","),  # a header of another width still says comma
        ("", ","),
    ],
)
def test_delimiter_is_scored_on_consistent_field_counts(sample: str, delimiter: str) -> None:
    assert sniff_dialect(sample, complete=True).delimiter == delimiter


def test_single_quote_is_chosen_only_when_the_file_clearly_uses_it() -> None:
    sample = "'a;1';'b'\n'c;2';'d'\n'e;3';'f'\n"
    dialect = sniff_dialect(sample, complete=True)
    assert (dialect.delimiter, dialect.quote_char) == (";", "'")
    assert sniff_dialect("name,note\nAda,it's\nBob,isn't\n", complete=True).quote_char == '"'


@pytest.mark.parametrize(
    ("sample", "terminator"),
    [("a,b\r\n1,2\r\n", "\r\n"), ("a,b\n1,2\n", "\n"), ("a,b\r1,2\r", "\r"), ('a,b\r\n1,"x\ny"\r\n', "\r\n")],
)
def test_line_terminator(sample: str, terminator: str) -> None:
    assert sniff_dialect(sample, complete=True).line_terminator == terminator


def test_an_incomplete_sample_ignores_its_cut_off_last_record() -> None:
    sample = "a;b;c\n1;2;3\n4;5;6\n7;8,9"  # the stream goes on after "7;8,9"
    assert sniff_dialect(sample, complete=False).delimiter == ";"


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 7, 1000])
def test_quoted_fields_crlf_and_embedded_newlines_survive_any_chunking(size: int) -> None:
    data = (
        b'id,comment\r\n1,"Hello, world"\r\n2,"She said ""hi"""\r\n'
        b'3,"line one\r\nline two"\r\n4,"a\rb\nc"\r\n'
    )
    assert records(data, size=size) == [
        ["id", "comment"],
        ["1", "Hello, world"],
        ["2", 'She said "hi"'],
        ["3", "line one\r\nline two"],
        ["4", "a\rb\nc"],
    ]


@pytest.mark.parametrize("size", [1, 3, 1000])
def test_lone_cr_line_ends_and_blank_lines(size: int) -> None:
    assert records(b"a,b\r1,2\r\r3,4", size=size) == [["a", "b"], ["1", "2"], ["3", "4"]]
    assert records(b"a,b\n\n\n1,2\n\n", size=size) == [["a", "b"], ["1", "2"]]


@pytest.mark.parametrize(
    "chunks",
    [
        ["a,b\r\n1,2\r", "3,4"],  # a CR ends a chunk; the last chunk holds no line break
        ["a,b\r1,2\r", "3,4"],
        ["a,b\r", "1", ",2"],
        ["a\r", "b"],
    ],
)
def test_a_cr_at_a_chunk_end_before_a_last_line_without_line_break_ends_a_line(chunks: list[str]) -> None:
    expected = [record for record in csv.reader(io.StringIO("".join(chunks), newline="")) if record]
    assert list(read_records(iter(chunks), COMMA, max_columns=250, max_field_chars=65_536)) == expected


def test_too_many_columns_names_the_limit() -> None:
    with pytest.raises(CsvFormatError) as caught:
        records(",".join(f"c{n}" for n in range(251)).encode() + b"\n")
    assert caught.value.reason == "The file has 251 columns; the limit is 250."
    with pytest.raises(CsvFormatError, match=r"^Record 3 \(line 3\) has 5 fields; the limit is 4 columns\.$"):
        records(b"a,b\n1,2\n1,2,3,4,5\n", max_columns=4)


@pytest.mark.parametrize("length", [70_000, 200_000])
def test_a_long_field_names_row_and_column_and_never_leaks_csv_error(length: int) -> None:
    limit_before = csv.field_size_limit()
    data = b"id,name,notes\n1,a,b\n2,c," + b"x" * length + b"\n3,d,e\n"
    with pytest.raises(CsvFormatError) as caught:
        records(data, size=8192)
    assert (
        caught.value.reason
        == "Record 3 (line 3), column 3: the field is longer than 65,536 characters, the limit."
    )
    assert csv.field_size_limit() == limit_before


def test_a_long_quoted_multiline_field_is_located_too() -> None:
    data = b'id,notes,x\n1,"' + b"y\n" * 80_000 + b'",2\n'
    with pytest.raises(CsvFormatError, match=r"^Record 2 \(line \d+\), column 2: the field is longer"):
        records(data)


def test_a_line_without_end_cannot_grow_without_bound() -> None:
    with pytest.raises(CsvFormatError, match=r"^Record 1 \(line 1\) is longer than 46 characters\.$"):
        records(b"a" * 1_000, size=7, max_columns=2, max_field_chars=10)
    with pytest.raises(CsvFormatError, match=r"^Record 2 \(line \d+\) is longer than 46 characters\.$"):
        records(b'a,b\n"' + b"x\n" * 100 + b'"\n', size=3, max_columns=2, max_field_chars=10)


@pytest.mark.parametrize("size", [1, 4, 1000])
def test_nul_characters_are_malformed_csv(size: int) -> None:
    with pytest.raises(CsvFormatError) as caught:
        records(b"a,b\n1,2\n3,\x004\n", size=size)
    assert caught.value.reason.startswith("Record 3 (line 3) contains a NUL character")
    assert str(caught.value) == caught.value.reason


def test_utf16_without_byte_order_mark_shows_up_as_nul_characters() -> None:
    with pytest.raises(CsvFormatError, match="UTF-16 without a byte order mark"):
        records("a,b\n1,2\n".encode("utf-16-le"))


def test_a_quote_left_open_at_the_end_is_refused() -> None:
    with pytest.raises(CsvFormatError, match=r"^Record 2 \(line 2\) has a quoted field that is not closed"):
        records(b'a,b\n1,"2\n3,4\n')


def test_dialect_json_uses_frictionless_names() -> None:
    dialect = Dialect(delimiter=";", quote_char='"', header=False, line_terminator="\n")
    assert dialect.to_json() == {
        "delimiter": ";",
        "quoteChar": '"',
        "header": False,
        "doubleQuote": True,
        "lineTerminator": "\n",
        "sepLine": False,
    }


def test_a_known_encoding_is_used_as_given() -> None:
    data = b"\xff\xfe" + "a;b\nZoë;1\n".encode("utf-16-le")
    dialect = Dialect(delimiter=";", quote_char='"', header=True)
    rows = list(
        read_records(DecodedText([data], encoding="utf-16-le"), dialect, max_columns=9, max_field_chars=99)
    )
    assert rows == [["a", "b"], ["Zoë", "1"]]


# The reading loop as it was before it handed csv.reader lists of lines and split lines without quotes
# itself: one Python step per line, every check on every line and record. read_records must yield the
# same records and refuse with the same reason, whatever the text and its chunks.


class _OldLineProblem(Exception):
    def __init__(self, what: str, *, at_record_start: bool = False) -> None:
        super().__init__(what)
        self.what = what
        self.at_record_start = at_record_start


def _old_split_lines(texts: Iterable[str], max_line_chars: int) -> Iterator[str]:
    pending: list[str] = []
    pending_chars = 0
    for text in texts:
        if not text:
            continue
        if "\n" not in text and "\r" not in text:
            pending.append(text)
            pending_chars += len(text)
            if pending_chars > max_line_chars:
                raise _OldLineProblem(f"is longer than {max_line_chars:,} characters")
            continue
        if pending:
            pending.append(text)
            text = "".join(pending)
            pending, pending_chars = [], 0
        lines = io.StringIO(text, newline="").readlines()
        if not lines[-1].endswith("\n"):
            pending = [lines.pop()]
            pending_chars = len(pending[0])
        yield from _old_refuse_nul(lines) if "\x00" in text else lines
    if pending:
        yield from _old_refuse_nul(io.StringIO("".join(pending), newline="").readlines())


def _old_refuse_nul(lines: list[str]) -> Iterator[str]:
    for line in lines:
        if "\x00" in line:
            raise _OldLineProblem(
                "contains a NUL character; the file may be binary, or UTF-16 without a byte order mark"
            )
        yield line


def old_read_records(
    text: Iterable[str], dialect: Dialect, *, max_columns: int, max_field_chars: int
) -> Iterator[list[str]]:
    _allow_field_chars(max_field_chars)
    max_record_chars = max_columns * (2 * max_field_chars + 3)
    record_lines: list[str] = []
    record_chars = 0

    def physical_lines() -> Iterator[str]:
        nonlocal record_chars
        for line in _old_split_lines(text, max_record_chars):
            record_chars += len(line)
            if record_chars > max_record_chars:
                raise _OldLineProblem(f"is longer than {max_record_chars:,} characters")
            record_lines.append(line)
            yield line
        if record_lines:
            raise _OldLineProblem(
                "has a quoted field that is not closed before the end of the file", at_record_start=True
            )

    reader = csv.reader(
        physical_lines(), delimiter=dialect.delimiter, quotechar=dialect.quote_char, doublequote=True
    )
    row = 0
    try:
        for record in reader:
            record_lines.clear()
            record_chars = 0
            if not record:
                continue
            row += 1
            if len(record) > max_columns:
                raise CsvFormatError(_too_wide(row, reader.line_num, len(record), max_columns))
            if max(map(len, record)) > max_field_chars:
                long_cell = next(i for i, cell in enumerate(record, 1) if len(cell) > max_field_chars)
                raise CsvFormatError(_too_long(row, reader.line_num, long_cell, max_field_chars))
            yield record
    except _OldLineProblem as exc:
        line = reader.line_num + 1 - (len(record_lines) if exc.at_record_start else 0)
        raise CsvFormatError(f"Record {row + 1} (line {line}) {exc.what}.") from exc
    except csv.Error as exc:
        if str(exc).startswith("field larger than field limit"):
            column = _long_field_column("".join(record_lines), dialect, max_field_chars)
            raise CsvFormatError(_too_long(row + 1, reader.line_num, column, max_field_chars)) from exc
        raise CsvFormatError(f"Record {row + 1} (line {reader.line_num}) is not valid CSV: {exc}.") from exc


def outcome(records: Iterator[list[str]]) -> tuple[list[list[str]], str | None]:
    """Return the records yielded and the reason reading stopped with, if it did."""
    seen: list[list[str]] = []
    try:
        for record in records:
            seen.append(record)
    except CsvFormatError as exc:
        return seen, exc.reason
    return seen, None


CSV_TEXT = (
    st.text(alphabet='ab,;"\n\r é\x0b\x85\u2028', max_size=120)
    | st.text(alphabet='ab,"\n\x00', max_size=40)
    | st.text(alphabet="ab,;\n\r é", max_size=160)  # no quotes: the lines are split without csv.reader
)
LIMITS = st.tuples(
    st.integers(min_value=1, max_value=4) | st.just(250),
    st.integers(min_value=1, max_value=8) | st.just(65_536),
)


@settings(max_examples=600, deadline=None)
@given(
    CSV_TEXT,
    st.lists(st.integers(min_value=0, max_value=120), max_size=8),
    LIMITS,
    st.booleans(),
    st.sampled_from([1, 2, 5, 16, csvformat.PIECE_CHARS]),
)
def test_reading_lists_of_lines_agrees_with_reading_line_by_line(
    text: str, cuts: list[int], limits: tuple[int, int], semicolon: bool, piece_chars: int
) -> None:
    bounds = sorted({0, len(text), *(min(cut, len(text)) for cut in cuts)})
    chunks = [text[start:end] for start, end in pairwise(bounds)]
    dialect = Dialect(delimiter=";" if semicolon else ",", quote_char='"', header=True)
    max_columns, max_field_chars = limits
    options = {"max_columns": max_columns, "max_field_chars": max_field_chars}
    with mock.patch.object(csvformat, "PIECE_CHARS", piece_chars):
        assert outcome(read_records(iter(chunks), dialect, **options)) == outcome(
            old_read_records(iter(chunks), dialect, **options)
        )


@given(st.text(alphabet="ab\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029", max_size=40))
def test_lines_split_as_a_file_opened_with_newline_empty(text: str) -> None:
    assert _lines_of(text) == io.StringIO(text, newline="").readlines()


def test_long_records_across_many_chunks_agree_with_line_by_line_reading() -> None:
    rows = [f'{n},"{"x" * (n % 7)}\n{"y" * (n % 5)}",{"z" * (n % 11)}\n' for n in range(400)]
    text = "id,note,more\n" + "".join(rows) + '1,"open\n'
    chunks = [text[start : start + 97] for start in range(0, len(text), 97)]
    for max_columns, max_field_chars in [(3, 10), (3, 12), (250, 65_536), (1, 3)]:
        options = {"max_columns": max_columns, "max_field_chars": max_field_chars}
        assert outcome(read_records(iter(chunks), COMMA, **options)) == outcome(
            old_read_records(iter(chunks), COMMA, **options)
        )


def test_a_field_longer_than_any_of_its_lines_is_still_refused() -> None:
    # No line is longer than the limit, so only the record spanning two lines can hold a long field.
    with pytest.raises(CsvFormatError) as caught:
        records(b'id,note\n1,"abcd\nefgh"\n2,x\n', max_field_chars=8)
    expected = "Record 2 (line 3), column 2: the field is longer than 8 characters, the limit."
    assert caught.value.reason == expected
    assert records(b'id,note\n1,"abc\nefgh"\n2,x\n', max_field_chars=8)[1] == ["1", "abc\nefgh"]


@pytest.mark.parametrize("quoted", [False, True])
@pytest.mark.parametrize("length", [70_000, 200_000])
@pytest.mark.parametrize("width", [3, 300])
def test_long_fields_in_wide_records_are_refused_as_line_by_line_reading_does(
    quoted: bool, length: int, width: int
) -> None:
    # Past csv.reader's own field limit the field stops the reading before the record's width is known.
    field = ('"' + "x" * length + '"') if quoted else "x" * length
    text = "a,b,c\n1,2,3\n" + ",".join(["1", field, *["2"] * (width - 2)]) + "\n4,5,6\n"
    chunks = [text[start : start + 8192] for start in range(0, len(text), 8192)]
    options = {"max_columns": 250, "max_field_chars": 65_536}
    expected = outcome(old_read_records(iter(chunks), COMMA, **options))
    assert expected[1] is not None
    assert outcome(read_records(iter(chunks), COMMA, **options)) == expected


def taken_outcome(
    records: csvformat.Records, limits: list[int], switch: int
) -> tuple[list[list[str]], str | None]:
    """Return what take() hands out (columns as records), limits[i] at a time, then iterating after switch."""
    seen: list[list[str]] = []
    try:
        for count, limit in enumerate(limits * 50):
            if count == switch:
                seen.extend(records)
                break
            part = records.take(limit)
            if not part:
                break
            if isinstance(part, csvformat.Columns):
                assert 0 < part.count <= limit
                assert all(len(column) == part.count for column in part.cells)
                part = part.records()
            assert len(part) <= limit
            seen.extend(part)
        seen.extend(records)  # nothing is left unless take stopped early
    except CsvFormatError as exc:
        return seen, exc.reason
    return seen, None


@settings(max_examples=600, deadline=None)
@given(
    CSV_TEXT
    | st.lists(
        st.sampled_from(["a,b,c\n", "1,2,3\r\n", "x,,\n", "4,5\n", "\n", "\r\n", "6,7,8,9\n", "y\rz\n"])
    ).map("".join),
    st.lists(st.integers(min_value=0, max_value=120), max_size=8),
    LIMITS,
    st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=4),
    st.integers(min_value=0, max_value=60),
    st.sampled_from([1, 2, 5, 16, csvformat.PIECE_CHARS]),
)
def test_taking_runs_of_records_agrees_with_reading_line_by_line(
    text: str, cuts: list[int], limits: tuple[int, int], takes: list[int], switch: int, piece_chars: int
) -> None:
    bounds = sorted({0, len(text), *(min(cut, len(text)) for cut in cuts)})
    chunks = [text[start:end] for start, end in pairwise(bounds)]
    max_columns, max_field_chars = limits
    options = {"max_columns": max_columns, "max_field_chars": max_field_chars}
    with mock.patch.object(csvformat, "PIECE_CHARS", piece_chars):
        expected = outcome(old_read_records(iter(chunks), COMMA, **options))
        assert taken_outcome(read_records(iter(chunks), COMMA, **options), takes, switch) == expected


def test_a_header_read_with_next_leaves_the_rest_in_columns() -> None:
    text = "id,name\n" + "".join(f"{n},n{n}\n" for n in range(2000))
    records = read_records(iter([text]), COMMA, max_columns=9, max_field_chars=65_536)
    assert next(records) == ["id", "name"]
    run = records.take(300)
    assert isinstance(run, csvformat.Columns)
    assert (run.count, run.cells[0][:2], run.cells[1][-1]) == (300, ["0", "1"], "n299")
    assert list(records)[:1] == [["300", "n300"]]  # iterating goes on where take stopped


@pytest.mark.parametrize(
    ("text", "columns"),
    [
        ("a,b\r\n1,2\r\n3,4\r\n", True),  # CRLF line ends
        ("a,b\n1,2\n3\n4,5,6\n\n7,8\n", False),  # ragged and blank lines: records, read from one split
        ("a,b\r1,2\n", False),  # a CR on its own ends a line too
    ],
)
def test_runs_taken_from_lines_without_quotes_are_the_records_read_one_by_one(
    text: str, columns: bool
) -> None:
    options = {"max_columns": 9, "max_field_chars": 65_536}
    run = read_records(iter([text]), COMMA, **options).take(100)
    assert isinstance(run, csvformat.Columns) is columns
    taken = run.records() if isinstance(run, csvformat.Columns) else run
    expected = [record for record in csv.reader(io.StringIO(text, newline="")) if record]
    assert taken == list(read_records(iter([text]), COMMA, **options)) == expected
