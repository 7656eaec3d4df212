"""Split a CSV file into chunks of whole records by byte range, so each worker reads only its part.

``plan_chunks`` reads the file once with csv.reader and the file's dialect, as ``read_records`` does, so
a quoted field holding line breaks never splits, blank lines are skipped the same way and row numbers
agree. It counts the bytes of the physical lines each record took: csv.reader asks for the next line
only when a record needs it, so when a record comes out, exactly its lines have been read.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Final

from core.csvformat import DecodedText, Dialect

DEFAULT_CHUNK_ROWS: Final = 10_000


@dataclass(frozen=True)
class ChunkPlan:
    """One chunk: the bytes [start, end) of the file, holding data rows first_row .. first_row + rows - 1."""

    index: int
    start: int
    end: int
    first_row: int
    rows: int


def chunk_encoding(encoding: str, start: int) -> str:
    """Return the codec that decodes a chunk starting at byte `start` (a BOM only opens the file)."""
    if encoding == "utf-8-sig" and start > 0:
        return "utf-8"
    return encoding


def plan_chunks(
    blocks: Iterable[bytes],
    *,
    encoding: str,
    dialect: Dialect,
    max_field_chars: int,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> tuple[list[str], list[ChunkPlan]]:
    """Return the header (or generated names) and the chunks of chunk_rows data rows each (the last fewer).

    The file was profiled with ``read_records`` already, so it is well-formed; each chunk's validator
    reads its range with ``read_records`` again (``opens_file`` only for the chunk at byte 0) and checks
    it finds the planned number of rows.
    """
    codec = codecs.lookup("utf-8" if encoding == "utf-8-sig" else encoding)
    consumed = [{"utf-8-sig": 3, "utf-16-le": 2, "utf-16-be": 2}.get(encoding, 0)]
    if csv.field_size_limit() <= max_field_chars:
        csv.field_size_limit(max_field_chars + 1)
    lines = _counted_lines(DecodedText(blocks, encoding=encoding), codec, consumed)
    records: Iterator[list[str]] = (
        record
        for record in csv.reader(lines, delimiter=dialect.delimiter, quotechar=dialect.quote_char)
        if record
    )
    opening = 0
    if dialect.sep_line:
        next(records, None)  # Excel's "sep=X" line: no record, and in no chunk
        opening = consumed[0]
    first = next(records, None)
    if first is None:
        return [], []
    if dialect.header:
        header, start = first, consumed[0]
    else:  # the first record is the first row (its lines are read: `consumed` is past them)
        header, start = [f"field{position}" for position in range(1, len(first) + 1)], opening
        records = chain([first], records)
    chunks: list[ChunkPlan] = []
    first_row, rows = 1, 0
    for _record in records:
        rows += 1
        if rows == chunk_rows:
            chunks.append(ChunkPlan(len(chunks), start, consumed[0], first_row, rows))
            start, first_row, rows = consumed[0], first_row + rows, 0
    if rows:
        chunks.append(ChunkPlan(len(chunks), start, consumed[0], first_row, rows))
    return header, chunks


def _counted_lines(text: Iterable[str], codec: codecs.CodecInfo, consumed: list[int]) -> Iterator[str]:
    """Yield physical lines (as a file opened with newline="" does), adding each one's size when taken."""
    encode = codec.encode
    width = 2 if codec.name.startswith("utf-16") else 1  # bytes per character of ASCII text
    # Single-byte encodings: one byte a character (and cp1252's five undefined bytes, read as latin-1,
    # could not be encoded back).
    single_byte = codec.name in ("cp1252", "latin-1", "iso8859-1")
    pending = ""
    for piece in text:
        if not piece:
            continue
        lines = io.StringIO(pending + piece, newline="").readlines()
        # An unfinished line, or a CR whose LF may start the next piece, waits for more text.
        pending = lines.pop() if not lines[-1].endswith("\n") else ""
        for line in lines:
            consumed[0] += len(line) * width if single_byte or line.isascii() else len(encode(line)[0])
            yield line
    if pending:
        consumed[0] += len(pending) * width if single_byte or pending.isascii() else len(encode(pending)[0])
        yield pending
