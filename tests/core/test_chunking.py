"""Chunk plans: byte ranges of whole records that read back to exactly the file's rows."""

from __future__ import annotations

import csv
import io
import random

import pytest

from core.chunking import chunk_encoding, plan_chunks
from core.csvformat import DecodedText, Dialect, read_records

DIALECT = Dialect(delimiter=",", quote_char='"', header=True)


def _file(line_end: str, seed: int) -> str:
    rnd = random.Random(seed)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=line_end, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(["id", "name", "note"])
    for number in range(1, 1500):
        note = rnd.choice(["x", "two\nlines", "é, with a comma", "", 'a "quote"', "three\r\nline\nbreaks"])
        writer.writerow([str(number), f"n{number}é", note])
        if rnd.random() < 0.02:
            buffer.write(line_end)  # blank lines are skipped, and must not shift row numbers
    return buffer.getvalue()


def _records(data: bytes, encoding: str, *, opens_file: bool = True) -> list[list[str]]:
    text = DecodedText([data], encoding=encoding, opens_file=opens_file)
    return list(read_records(text, DIALECT, max_columns=10, max_field_chars=1000))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252", "utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_chunks_read_back_to_the_whole_file(encoding: str, line_end: str) -> None:
    text = _file(line_end, seed=len(encoding) + len(line_end))
    codec = {"utf-16-le": "utf-16-le", "utf-16-be": "utf-16-be"}.get(encoding, encoding)
    data = text.encode(codec)
    if encoding == "utf-16-le":
        data = b"\xff\xfe" + data
    elif encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    blocks = [data[offset : offset + 777] for offset in range(0, len(data), 777)]
    header, chunks = plan_chunks(
        blocks, encoding=encoding, dialect=DIALECT, max_field_chars=1000, chunk_rows=200
    )
    whole = _records(data, encoding)
    assert header == whole[0] == ["id", "name", "note"]
    seen: list[list[str]] = []
    for index, chunk in enumerate(chunks):
        assert chunk.index == index
        assert chunk.first_row == len(seen) + 1
        encoded = chunk_encoding(encoding, chunk.start)
        part = _records(data[chunk.start : chunk.end], encoded, opens_file=chunk.start == 0)
        assert len(part) == chunk.rows
        seen += part
    assert seen == whole[1:]
    assert chunks[-1].end == len(data)
    assert all(chunk.rows == 200 for chunk in chunks[:-1])


def test_a_file_without_a_header_starts_at_byte_zero() -> None:
    data = b"1,a\n2,b\n3,c\n"
    dialect = Dialect(delimiter=",", quote_char='"', header=False)
    header, chunks = plan_chunks([data], encoding="utf-8", dialect=dialect, max_field_chars=100, chunk_rows=2)
    assert header == ["field1", "field2"]
    assert [(c.start, c.end, c.first_row, c.rows) for c in chunks] == [(0, 8, 1, 2), (8, 12, 3, 1)]


def test_an_empty_file_has_no_chunks() -> None:
    assert plan_chunks([b""], encoding="utf-8", dialect=DIALECT, max_field_chars=100) == ([], [])


def test_a_header_only_file_has_a_header_and_no_chunks() -> None:
    assert plan_chunks([b"a,b\r\n"], encoding="utf-8", dialect=DIALECT, max_field_chars=100) == (
        ["a", "b"],
        [],
    )


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16-le", "utf-16-be"])
def test_a_record_starting_with_u_feff_reads_back_whole_from_its_chunk(encoding: str) -> None:
    text = "id,name\n1,a\n\ufeff2,b\n\ufeff3,c\n4,d\n"
    data = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}.get(encoding, b"") + text.encode(encoding)
    _header, chunks = plan_chunks(
        [data], encoding=encoding, dialect=DIALECT, max_field_chars=100, chunk_rows=1
    )
    seen: list[list[str]] = []
    for chunk in chunks:
        encoded = chunk_encoding(encoding, chunk.start)
        part = _records(data[chunk.start : chunk.end], encoded, opens_file=chunk.start == 0)
        assert len(part) == chunk.rows
        seen += part
    expected = [["1", "a"], ["\ufeff2", "b"], ["\ufeff3", "c"], ["4", "d"]]
    assert seen == _records(data, encoding)[1:] == expected
    assert [chunk.rows for chunk in chunks] == [1, 1, 1, 1]  # chunks start at those records too


@pytest.mark.parametrize("header", [True, False])
def test_an_excel_sep_line_is_in_no_chunk(header: bool) -> None:
    dialect = Dialect(delimiter=";", quote_char='"', header=header, sep_line=True)
    data = b"sep=;\r\nid;name\r\n1;a\r\n2;b\r\n" if header else b"sep=;\r\n1;a\r\n2;b\r\n"
    names, chunks = plan_chunks([data], encoding="utf-8", dialect=dialect, max_field_chars=100, chunk_rows=1)
    assert names == (["id", "name"] if header else ["field1", "field2"])
    first = data.index(b"1;a")
    assert [(c.start, c.end, c.first_row, c.rows) for c in chunks] == [
        (first, first + 5, 1, 1),
        (first + 5, len(data), 2, 1),
    ]
