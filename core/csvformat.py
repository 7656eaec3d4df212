"""Read CSV bytes once: sniff the encoding and dialect, decode incrementally and yield records.

Encoding. A prefix of the stream (``ENCODING_SNIFF_BYTES``) decides: a byte order mark wins
(``utf-8-sig``, ``utf-16-le``, ``utf-16-be``); otherwise the prefix is UTF-8 if it decodes as UTF-8,
else ``cp1252`` (with latin-1 for the five bytes cp1252 leaves undefined, so it never fails) when
everything before its first invalid byte is ASCII; after non-ASCII UTF-8 it mixes two encodings (below).

The stream is read once, so invalid UTF-8 may turn up after the prefix was judged UTF-8. If every
character decoded until then was ASCII, the text so far reads the same in cp1252, so decoding
switches to cp1252 for the rest and the encoding becomes ``cp1252``: nothing decoded earlier
changes meaning. If non-ASCII UTF-8 was already seen, the file mixes two encodings; guessing would
corrupt one half silently, so reading stops with a ``CsvFormatError`` that gives the byte offset.
A file that starts with a UTF-8 or UTF-16 byte order mark and then breaks that encoding also stops.

Dialect. ``csv.Sniffer`` picks wrong delimiters (CPython issue 97611), so each candidate delimiter
is scored on a sample of whole records, parsed quote-aware by the csv module itself: the share of
records that have the most common field count, then that field count.

A first line ``sep=X`` (any case; Excel writes and reads it) names the delimiter, as it does for Excel:
the dialect then has ``sep_line``, and readers of the file skip that line, which is no record.

Records. ``read_records`` returns a ``Records`` stream: iterated, it yields records one by one; its
``take`` hands out runs of records, and a run read from lines without quotes (most files) comes as
``Columns``, cut from one ``str.split`` of the text, for readers that work column by column (validation).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, compress, islice, repeat
from typing import Final, Protocol

ENCODING_SNIFF_BYTES: Final = 256 * 1024
DIALECT_SAMPLE_CHARS: Final = 64 * 1024
DELIMITERS: Final = (",", ";", "\t", "|")
ONE_COLUMN: Final = "\x1f"  # a one-column file's delimiter: ASCII's unit separator, which no text holds
PIECE_CHARS: Final = 16 * 1024
_SEP_LINE: Final = re.compile(r"sep=([^\r\n\"'])(?:\r\n|\n|\r)", re.IGNORECASE)

_BOMS: Final = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


class CsvFormatError(Exception):
    """The bytes are not a CSV file that can be read; ``reason`` says why, for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Dialect:
    """The Frictionless CSV Dialect subset that Loadbay sniffs and reads."""

    delimiter: str
    quote_char: str
    header: bool
    double_quote: bool = True
    line_terminator: str = "\r\n"
    sep_line: bool = False  # the file opens with Excel's "sep=X" line, which is no record

    def to_json(self) -> dict[str, object]:
        """Return the dialect as Frictionless CSV Dialect JSON (and Loadbay's `sepLine`)."""
        return {
            "delimiter": self.delimiter,
            "quoteChar": self.quote_char,
            "header": self.header,
            "doubleQuote": self.double_quote,
            "lineTerminator": self.line_terminator,
            "sepLine": self.sep_line,
        }


def _cp1252_table() -> str:
    chars = []
    for byte in range(256):
        try:
            chars.append(bytes([byte]).decode("cp1252"))
        except UnicodeDecodeError:
            chars.append(chr(byte))
    return "".join(chars)


_CP1252_TABLE: Final = _cp1252_table()


def decode_cp1252(data: bytes) -> str:
    """Decode cp1252, reading the five bytes it leaves undefined as latin-1."""
    return codecs.charmap_decode(data, "strict", _CP1252_TABLE)[0]


class _Decoder(Protocol):
    def decode(self, input: bytes, final: bool = False) -> str: ...


class _Cp1252Decoder:
    def decode(self, input: bytes, final: bool = False) -> str:
        return decode_cp1252(input)


def _new_decoder(encoding: str) -> _Decoder:
    if encoding == "cp1252":
        return _Cp1252Decoder()
    decoder: _Decoder = codecs.getincrementaldecoder(encoding)()
    return decoder


class DecodedText:
    """Decoded text of a byte stream that is read once.

    ``sample`` is the decoded prefix (all of the text when ``complete``); iterating yields it and then the
    rest, once. ``encoding`` may change from ``utf-8`` to ``cp1252`` during iteration (see the module
    docstring); ``has_content`` says, after iteration, whether any character was not whitespace.
    """

    def __init__(
        self, chunks: Iterable[bytes], *, encoding: str | None = None, opens_file: bool = True
    ) -> None:
        """`opens_file`: the bytes start the file, where a U+FEFF is a byte order mark, not data (a chunk
        that starts later keeps it)."""
        self._chunks = iter(chunks)
        parts: list[bytes] = []
        size = 0
        self.complete = True
        for chunk in self._chunks:
            parts.append(chunk)
            size += len(chunk)
            if size >= ENCODING_SNIFF_BYTES:
                self.complete = False
                break
        prefix = b"".join(parts)
        self._offset = len(prefix)
        self.has_content = False
        self._fallback = False
        if encoding is None:
            self.encoding, self._decoder, self.sample = self._sniff(prefix)
        else:
            self.encoding, self._decoder = encoding, _new_decoder(encoding)
            self.sample = self._decode(prefix, final=self.complete)
            if opens_file:
                self.sample = self.sample.removeprefix("\ufeff")
        # While everything decoded is ASCII, a late switch from UTF-8 to cp1252 changes nothing already read.
        self._ascii_so_far = self.sample.isascii()
        self._fallback = encoding is None and self.encoding == "utf-8"

    def _sniff(self, prefix: bytes) -> tuple[str, _Decoder, str]:
        for bom, name in _BOMS:
            if prefix.startswith(bom):
                decoder = _new_decoder(name)
                body = prefix if name == "utf-8-sig" else prefix[len(bom) :]
                return name, decoder, self._decode_with(decoder, name, body, final=self.complete)
        decoder = _new_decoder("utf-8")
        try:
            return "utf-8", decoder, decoder.decode(prefix, final=self.complete)
        except UnicodeDecodeError as exc:
            if not prefix[: exc.start].isascii():  # UTF-8 beyond ASCII came first: cp1252 would garble it
                raise CsvFormatError(_mixed_encodings(exc.start)) from exc
            return "cp1252", _Cp1252Decoder(), decode_cp1252(prefix)

    def _decode_with(self, decoder: _Decoder, encoding: str, data: bytes, *, final: bool) -> str:
        try:
            return decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            offset = self._offset - len(exc.object) + exc.start
            raise CsvFormatError(_broken_encoding(encoding, offset)) from exc

    def _decode(self, data: bytes, *, final: bool) -> str:
        if not self._fallback:
            return self._decode_with(self._decoder, self.encoding, data, final=final)
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            return self._switch_to_cp1252(data, exc)
        if self._ascii_so_far and not text.isascii():
            self._ascii_so_far = False
        return text

    def _switch_to_cp1252(self, data: bytes, exc: UnicodeDecodeError) -> str:
        # Bytes an earlier chunk left unfinished are still in the decoder; exc.start counts them too.
        pending = exc.object[: len(exc.object) - len(data)]
        whole = pending + data
        if not (self._ascii_so_far and whole[: exc.start].isascii()):
            raise CsvFormatError(_mixed_encodings(self._offset - len(whole) + exc.start)) from exc
        self.encoding = "cp1252"
        self._decoder = _Cp1252Decoder()
        self._fallback = False
        return decode_cp1252(whole)

    def __iter__(self) -> Iterator[str]:
        yield self._checked(self.sample)
        for chunk in self._chunks:
            self._offset += len(chunk)
            yield self._checked(self._decode(chunk, final=False))
        if not self.complete:
            yield self._checked(self._decode(b"", final=True))

    def _checked(self, text: str) -> str:
        if not self.has_content and text.strip():
            self.has_content = True
        return text


def _mixed_encodings(offset: int) -> str:
    return (
        f"The file is not valid UTF-8 at byte {offset:,} although earlier parts of it are UTF-8 text: it "
        "mixes two encodings. Save it as UTF-8 and upload it again."
    )


def _broken_encoding(encoding: str, offset: int) -> str:
    if encoding.startswith("utf-16"):
        return (
            f"The file starts with a UTF-16 byte order mark but is not valid UTF-16 (broken or cut-off "
            f"character at byte {offset:,}); save it again as UTF-8 or UTF-16 and upload it again."
        )
    label = "UTF-8 byte order mark" if encoding == "utf-8-sig" else f"{encoding} encoding"
    return f"The file uses a {label} but is not valid {encoding} at byte {offset:,}."


def sniff_dialect(sample: str, *, complete: bool) -> Dialect:
    """Guess delimiter, quote character and line terminator from decoded text; header is decided later.

    Excel's "sep=X" first line, if there is one, names the delimiter instead.
    """
    sep_line = _SEP_LINE.match(sample)
    if sep_line:
        sample = sample[sep_line.end() :]
    if len(sample) > DIALECT_SAMPLE_CHARS:
        sample, complete = sample[:DIALECT_SAMPLE_CHARS], False
    if not complete:
        cut = sample.rfind("\n")
        if cut >= 0:
            sample = sample[: cut + 1]
    quote = '"'
    if sep_line:
        delimiter = sep_line.group(1)
        if '"' not in sample and "'" in sample and _single_quotes_prevail(sample, delimiter):
            quote = "'"
    else:
        delimiter, score = _best_delimiter(sample, '"', complete=complete)
        if '"' not in sample and "'" in sample:
            single_delimiter, single_score = _best_delimiter(sample, "'", complete=complete)
            if single_score > score or _single_quotes_prevail(sample, single_delimiter):
                delimiter, quote = single_delimiter, "'"
    return Dialect(
        delimiter=delimiter,
        quote_char=quote,
        header=True,
        line_terminator=_line_terminator(sample),
        sep_line=sep_line is not None,
    )


def _best_delimiter(sample: str, quote: str, *, complete: bool) -> tuple[str, tuple[float, int]]:
    best, best_score = ",", (0.0, 1)
    for delimiter in DELIMITERS:
        if delimiter not in sample:
            continue
        reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter, quotechar=quote)
        try:
            counts = [len(record) for record in reader if record]
        except csv.Error:
            continue
        if not complete and len(counts) > 1:
            counts.pop()  # the sample may end inside a record
        if not counts:
            continue
        width, frequency = Counter(counts).most_common(1)[0]
        score = (frequency / len(counts), width)
        # A first line it does not split (a header naming one column) says it is not the delimiter.
        if width > 1 and counts[0] > 1 and score > best_score:
            best, best_score = delimiter, score
    if best_score == (0.0, 1) and sample.strip() and ONE_COLUMN not in sample:
        best = ONE_COLUMN  # one column: a delimiter no value holds, so "Doe, Jane" stays whole, anywhere
    return best, best_score


def _single_quotes_prevail(sample: str, delimiter: str) -> bool:
    edge = re.escape(delimiter)
    quoted = re.findall(rf"(?:^|{edge})'[^'\r\n]*'(?={edge}|\r?$)", sample, flags=re.MULTILINE)
    records = sum(1 for line in sample.splitlines() if line.strip())
    return records > 0 and len(quoted) >= records


def _line_terminator(sample: str) -> str:
    crlf = sample.count("\r\n")
    lf = sample.count("\n") - crlf
    cr = sample.count("\r") - crlf
    if crlf == lf == cr == 0:
        return "\r\n"
    if lf > crlf and lf >= cr:
        return "\n"
    if cr > crlf:
        return "\r"
    return "\r\n"


class _LineProblem(Exception):
    def __init__(self, what: str, *, at_record_start: bool = False) -> None:
        super().__init__(what)
        self.what = what
        self.at_record_start = at_record_start


_NUL_PROBLEM: Final = "contains a NUL character; the file may be binary, or UTF-16 without a byte order mark"
_OPEN_QUOTE_PROBLEM: Final = "has a quoted field that is not closed before the end of the file"
_RECORDS_PER_LIST: Final = 256


def _allow_field_chars(max_field_chars: int) -> None:
    # The limit is process-wide; only ever raise it, so other readers keep at least what they had.
    if csv.field_size_limit() <= max_field_chars:
        csv.field_size_limit(max_field_chars + 1)


@dataclass(frozen=True)
class _Limits:
    max_columns: int
    max_field_chars: int

    @property
    def max_record_chars(self) -> int:
        """Return the longest a record's text may be: every field quoted, every quote doubled."""
        return self.max_columns * (2 * self.max_field_chars + 3)


class _LineFeed:
    """Cuts decoded text into pieces of whole lines; hands csv.reader the lines of the pieces that need it.

    csv.reader treats the end of every string it gets as a line end, so it gets whole lines, a piece's list
    at a time (read through chain.from_iterable: no Python step per line). The reading loop sets
    ``record_end``, the number of the line on which the last record ended, after every record: csv.reader
    asks for a line only when a record needs it, so the lines after ``record_end`` belong to the record being
    read. A piece goes line by line, with the per-line checks, only when it could break a limit: it holds a
    NUL character, or it is, with the record it continues, longer than a record may be.

    A piece that starts a record and holds no quote character (nor NUL, nor a line break other than LF, CR
    and CRLF) needs no csv.reader: each of its lines is a record whose fields are split at the delimiter.
    ``segment`` stops before such a piece and leaves it in ``plain`` for the reading loop.
    """

    def __init__(self, text: Iterable[str], dialect: Dialect, limits: _Limits, wanted: _Wanted) -> None:
        def piece_chars() -> int:
            # Split into tables, text without quotes goes in bigger pieces: fewer runs of records cross two
            # tables. Within max_field_chars, no field of a piece can be too long: no need to look.
            if wanted.tables:
                return max(PIECE_CHARS, min(_TABLE_PIECES * PIECE_CHARS, limits.max_field_chars))
            return PIECE_CHARS

        self.pieces = _split_lines(text, limits.max_record_chars, piece_chars)
        self.quote = dialect.quote_char
        self.max_record_chars = limits.max_record_chars
        self.max_field_chars = limits.max_field_chars
        self.record_end = 0
        self.fed = 0  # lines read so far
        # Whether a one-line record ending in the current list may hold a field over the limit.
        self.long_lines = False
        self.plain: str | None = None
        self._kept: list[tuple[int, list[str]]] = []  # (number of the first line, lines) not all read

    def segment(self) -> Iterator[Iterable[str]]:
        """Yield lines for csv.reader, piece by piece, up to a piece that needs none (left in plain)."""
        self.plain = None
        for piece in self.pieces:
            if isinstance(piece, str) and self.fed == self.record_end and self._needs_no_reader(piece):
                self.plain = piece
                return
            yield self._lines(piece)
        if self.fed > self.record_end:
            raise _LineProblem(_OPEN_QUOTE_PROBLEM, at_record_start=True)

    def _needs_no_reader(self, piece: str) -> bool:
        return (
            self.quote not in piece
            and "\x00" not in piece
            and len(piece) <= self.max_record_chars
            and not any(char in piece for char in _OTHER_LINE_BREAKS)
        )

    def _lines(self, piece: str | list[str]) -> Iterable[str]:
        lines = _lines_of(piece) if isinstance(piece, str) else piece
        record_end = self.record_end
        self._kept = [(first, kept) for first, kept in self._kept if first + len(kept) - 1 > record_end]
        open_chars = sum(map(len, self.lines_between(record_end, self.fed)))
        self._kept.append((self.fed + 1, lines))
        self.fed += len(lines)
        chars = len(piece) if isinstance(piece, str) else sum(map(len, piece))
        nul = any("\x00" in line for line in lines) if isinstance(piece, list) else "\x00" in piece
        if nul or open_chars + chars > self.max_record_chars:
            self.long_lines = True
            return self._one_by_one(lines, open_chars, nul)
        self.long_lines = chars > self.max_field_chars and max(map(len, lines)) > self.max_field_chars
        return lines

    def _one_by_one(self, lines: list[str], open_chars: int, nul: bool) -> Iterator[str]:
        record_chars, record_end = open_chars, self.record_end
        for line in lines:
            if nul and "\x00" in line:
                raise _LineProblem(_NUL_PROBLEM)
            if self.record_end != record_end:
                record_chars, record_end = 0, self.record_end
            record_chars += len(line)
            if record_chars > self.max_record_chars:
                raise _LineProblem(f"is longer than {self.max_record_chars:,} characters")
            yield line

    def lines_between(self, after: int, last: int) -> list[str]:
        """Return the kept lines numbered after + 1 to last."""
        found: list[str] = []
        for first, lines in self._kept:
            found.extend(lines[max(after + 1 - first, 0) : max(last + 1 - first, 0)])
        return found


def read_records(text: Iterable[str], dialect: Dialect, *, max_columns: int, max_field_chars: int) -> Records:
    """Return the records of decoded CSV text, skipping blank lines; refuse malformed input with a reason."""
    # Errors number rows as a spreadsheet does (the first record, header or not, is row 1) and lines
    # as an editor does, so a person can find the spot either way. Records come in lists, read on as one
    # stream in C; a list ends before a malformed record, whose error comes when the stream reaches it.
    return Records(text, dialect, _Limits(max_columns, max_field_chars))


@dataclass(frozen=True, slots=True)
class Columns:
    """Consecutive records of one width, column by column: ``cells[j][i]`` is field j of the i-th record."""

    cells: list[list[str]]
    count: int

    def __len__(self) -> int:
        return self.count

    @property
    def width(self) -> int:
        """Return the number of fields of each record."""
        return len(self.cells)

    def records(self) -> list[list[str]]:
        """Return the records, row by row."""
        return list(map(list, zip(*self.cells, strict=True)))


Part = list[list[str]] | Columns


class _Table:
    """Records of one width read from lines without quotes: all their cells in one list, a NUL after each
    record's (see _plain_table). Columns of any run of its records are strided slices of that list."""

    __slots__ = ("cells", "count", "start", "width")

    def __init__(self, cells: list[str], width: int, count: int) -> None:
        self.cells = cells
        self.width = width
        self.count = count
        self.start = 0  # records before it are taken

    def take(self, limit: int) -> Columns:
        """Return up to limit next records as columns."""
        stride = self.width + 1
        end = min(self.start + limit, self.count)
        first, stop = self.start * stride, end * stride
        columns = [self.cells[first + column : stop : stride] for column in range(self.width)]
        taken = Columns(columns, end - self.start)
        self.start = end
        return taken

    def rest(self) -> list[list[str]]:
        """Return the records not taken yet, row by row."""
        stride, width = self.width + 1, self.width
        cells = self.cells
        return [
            cells[first : first + width] for first in range(self.start * stride, self.count * stride, stride)
        ]


_Pending = list[list[str]] | _Table


class _Wanted:
    """What the reader of a Records stream wants from pieces without quotes: records or tables."""

    __slots__ = ("tables",)

    def __init__(self) -> None:
        self.tables = False


class Records(Iterator[list[str]]):
    """The records of a CSV text, one by one, or a run at a time with ``take``.

    Iterating yields records at C speed. ``take`` hands out runs of records, and gives a run read from lines
    without quotes as ``Columns``, split straight from the text: no list per record and no transposing for
    a reader that works column by column, as validation does. Once iterated, take gives lists of records.
    """

    def __init__(self, text: Iterable[str], dialect: Dialect, limits: _Limits) -> None:
        self._wanted = _Wanted()
        self._parts = _record_parts(text, dialect, limits, self._wanted)
        self._pending: _Pending | None = None
        self._failure: CsvFormatError | None = None
        self._stream: Iterator[list[str]] | None = None

    def __iter__(self) -> Iterator[list[str]]:
        if self._stream is None:
            self._wanted.tables = False
            pending, self._pending = self._pending, None
            if isinstance(pending, _Table):
                pending = pending.rest()
            rest = (
                _failing(self._failure)
                if self._failure is not None
                else chain.from_iterable(map(_as_records, self._parts))
            )
            self._stream = chain(pending or (), rest)
        return self._stream

    def __next__(self) -> list[str]:
        if self._stream is not None:
            return next(self._stream)
        taken = self.take(1)
        if not taken:
            raise StopIteration
        return taken.records()[0] if isinstance(taken, Columns) else taken[0]

    def take(self, limit: int) -> Part:
        """Return up to limit next records, as Columns if they come from lines without quotes; [] at the end.

        A malformed record ends the run before it; its CsvFormatError comes with the next call.
        """
        if self._stream is not None:
            return list(islice(self._stream, limit))
        self._wanted.tables = True
        first = self._next_part()
        if first is None:
            return []
        if isinstance(first, _Table):
            return self._take_columns(first, limit)
        return self._take_records(first, limit)

    def _next_part(self) -> _Pending | None:
        """Return the next part of the stream (what an earlier take left first); None at the end."""
        if self._pending is not None:
            part, self._pending = self._pending, None
            return part
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        return next(self._parts, None)

    def _more(self) -> _Pending | None:
        """Return the next part, keeping a failure for the next take: what came before it is handed out."""
        try:
            return self._next_part()
        except CsvFormatError as exc:
            self._failure = exc
            return None

    def _take_columns(self, table: _Table, limit: int) -> Columns:
        taken = table.take(limit)
        if table.start < table.count:
            self._pending = table
            return taken
        runs = [taken]
        count = taken.count
        while count < limit:  # the table ran out: go on with the next one of the same width
            part = self._more()
            if not isinstance(part, _Table) or part.width != table.width:
                self._pending = part
                break
            runs.append(part.take(limit - count))
            count += runs[-1].count
            if part.start < part.count:
                self._pending = part
        return runs[0] if len(runs) == 1 else _joined_columns(runs, count)

    def _take_records(self, first: list[list[str]], limit: int) -> list[list[str]]:
        taken = first
        while len(taken) < limit:
            part = self._more()
            if not isinstance(part, list):
                self._pending = part
                break
            taken = taken + part
        if len(taken) > limit:
            taken, self._pending = taken[:limit], taken[limit:]
        return taken


def _as_records(part: _Pending) -> list[list[str]]:
    return part.rest() if isinstance(part, _Table) else part


def _failing(failure: CsvFormatError) -> Iterator[list[str]]:
    """Yield nothing, then raise failure: a stream that stopped there."""
    yield from ()
    raise failure


def _joined_columns(runs: list[Columns], count: int) -> Columns:
    """Return consecutive runs of one width as one."""
    joined = [list(column) for column in runs[0].cells]
    for run in runs[1:]:
        for column, more in zip(joined, run.cells, strict=True):
            column += more
    return Columns(joined, count)


def _record_parts(
    text: Iterable[str], dialect: Dialect, limits: _Limits, wanted: _Wanted
) -> Iterator[_Pending]:
    _allow_field_chars(limits.max_field_chars)
    feed = _LineFeed(text, dialect, limits, wanted)
    row = 0
    while True:
        row = yield from _read_segment(feed, dialect, limits, row)
        piece = feed.plain
        if piece is None:
            return
        part = _plain_table(piece, feed, dialect, limits) if wanted.tables else None
        if part is not None:
            count = part.count if isinstance(part, _Table) else len(part)
            if count:
                yield part
            row += count
            continue
        records, reason = _split_plain(piece, feed, dialect, limits, row)
        if records:
            yield records
        if reason is not None:
            raise CsvFormatError(reason)
        row += len(records)


_TABLE_PIECES: Final = 3  # a table's piece is this many pieces long (see _LineFeed)
_LINE_MARK: Final = "\x00"  # a plain piece holds no NUL (see _LineFeed._needs_no_reader)


def _plain_table(
    piece: str, feed: _LineFeed, dialect: Dialect, limits: _Limits
) -> _Table | list[list[str]] | None:
    """Split a plain piece into a _Table if its lines all have the same number of fields, else into records.

    Every line end becomes a delimiter, a NUL cell and a delimiter, so one str.split gives all cells, a NUL
    every width + 1 cells exactly when every line has width fields; else the NULs show where records end.
    None when a record may break a limit (or a CR ends a line on its own): _split_plain reads the piece then.
    """
    delimiter = dialect.delimiter
    if delimiter in (_LINE_MARK, "\n", "\r") or not piece.endswith("\n"):
        return None
    mark = f"{delimiter}{_LINE_MARK}{delimiter}"
    if "\r" in piece:  # CRLF line ends; a CR or an LF on its own leaves the piece to _split_plain
        marked = piece.replace("\r\n", mark)
        if "\r" in marked or "\n" in marked:
            return None
        lines = len(marked) - len(piece)
    else:
        marked = piece.replace("\n", mark)
        lines = (len(marked) - len(piece)) // 2
    cells = marked.split(delimiter)
    if len(piece) > limits.max_field_chars and max(map(len, cells)) > limits.max_field_chars:
        return None
    stride = cells.index(_LINE_MARK) + 1
    width = stride - 1
    if len(cells) == lines * stride + 1 and cells[width::stride].count(_LINE_MARK) == lines:
        if width > limits.max_columns or (width == 1 and "" in cells[: len(cells) - 1]):
            return None  # too wide, or blank lines (csv.reader skips them)
        feed.fed = feed.record_end = feed.fed + lines
        return _Table(cells, width, lines)
    records = _records_between_marks(cells)
    if max(map(len, records)) > limits.max_columns:
        return None
    feed.fed = feed.record_end = feed.fed + lines
    if [""] in records:  # blank lines: csv.reader skips them
        records = [record for record in records if record != [""]]
    return records


def _records_between_marks(cells: list[str]) -> list[list[str]]:
    """Return the records of the cells of a marked piece (see _plain_table): the runs between NULs."""
    ends: list[int] = []
    end = -1
    last = len(cells) - 1  # the empty text after the last line end
    while end + 1 < last:
        end = cells.index(_LINE_MARK, end + 1)
        ends.append(end)
    starts = [0, *(end + 1 for end in ends[:-1])]
    return list(map(cells.__getitem__, map(slice, starts, ends)))


def _read_segment(
    feed: _LineFeed, dialect: Dialect, limits: _Limits, row: int
) -> Generator[list[list[str]], None, int]:
    """Yield, in lists, the records csv.reader reads from the feed's next segment; return the row count."""
    base = feed.fed
    reader = csv.reader(
        chain.from_iterable(feed.segment()),
        delimiter=dialect.delimiter,
        quotechar=dialect.quote_char,
        doublequote=True,
    )
    max_columns, max_field_chars = limits.max_columns, limits.max_field_chars
    records: list[list[str]] = []
    failure: CsvFormatError | None = None
    try:
        for record in reader:
            line = base + reader.line_num
            taken = line - feed.record_end
            feed.record_end = line
            if not record:
                continue
            row += 1
            if len(record) > max_columns:
                raise CsvFormatError(_too_wide(row, line, len(record), max_columns))
            # A field of a one-line record is no longer than its line: most records need no look.
            if (taken > 1 or feed.long_lines) and max(map(len, record)) > max_field_chars:
                long_cell = next(i for i, cell in enumerate(record, 1) if len(cell) > max_field_chars)
                raise CsvFormatError(_too_long(row, line, long_cell, max_field_chars))
            records.append(record)
            if len(records) == _RECORDS_PER_LIST:
                yield records
                records = []
    except CsvFormatError as exc:
        failure = exc
    except _LineProblem as exc:
        line = feed.record_end + 1 if exc.at_record_start else base + reader.line_num + 1
        failure = _caused(f"Record {row + 1} (line {line}) {exc.what}.", exc)
    except csv.Error as exc:
        line = base + reader.line_num
        failure = _caused(_csv_error(exc, feed, dialect, max_field_chars, row + 1, line), exc)
    if records:
        yield records
    if failure is not None:
        raise failure
    return row


def _caused(reason: str, cause: Exception) -> CsvFormatError:
    error = CsvFormatError(reason)
    error.__cause__ = cause
    return error


def _csv_error(
    exc: csv.Error, feed: _LineFeed, dialect: Dialect, max_field_chars: int, row: int, line: int
) -> str:
    if str(exc).startswith("field larger than field limit"):
        record_text = "".join(feed.lines_between(feed.record_end, line))
        column = _long_field_column(record_text, dialect, max_field_chars)
        return _too_long(row, line, column, max_field_chars)
    return f"Record {row} (line {line}) is not valid CSV: {exc}."


def _split_plain(
    piece: str, feed: _LineFeed, dialect: Dialect, limits: _Limits, row: int
) -> tuple[list[list[str]], str | None]:
    """Split a plain piece into records, up to the first one over a limit, and say why that one is.

    Each line is one record, read as csv.reader reads a line without quotes: its fields split at the
    delimiter; blank lines are skipped. row is the number of the last row before the piece.
    """
    line = feed.fed
    lines = piece.splitlines()
    feed.fed = feed.record_end = line + len(lines)
    records = list(map(str.split, lines, repeat(dialect.delimiter)))
    if "" in lines:
        records = list(compress(records, lines))
    wide = bool(records) and max(map(len, records)) > limits.max_columns
    if not wide and (len(piece) <= limits.max_field_chars or max(map(len, lines)) <= limits.max_field_chars):
        return records, None
    numbered = [index for index, text in enumerate(lines) if text]
    for count, index in enumerate(numbered):
        reason = _plain_fault(
            records[count], lines[index], dialect, limits, row + count + 1, line + index + 1
        )
        if reason is not None:
            return records[:count], reason
    return records, None


def _plain_fault(
    record: list[str], text: str, dialect: Dialect, limits: _Limits, row: int, line: int
) -> str | None:
    """Say why reading a one-line record without quotes stops, if it does, as csv.reader's reading would."""
    longest = max(map(len, record))
    if longest > csv.field_size_limit():  # csv.reader would have stopped inside the field
        column = _long_field_column(text, dialect, limits.max_field_chars)
        return _too_long(row, line, column, limits.max_field_chars)
    if len(record) > limits.max_columns:
        return _too_wide(row, line, len(record), limits.max_columns)
    if longest > limits.max_field_chars:
        long_cell = next(i for i, cell in enumerate(record, 1) if len(cell) > limits.max_field_chars)
        return _too_long(row, line, long_cell, limits.max_field_chars)
    return None


def _too_wide(row: int, line: int, width: int, max_columns: int) -> str:
    if row == 1:
        return f"The file has {width} columns; the limit is {max_columns}."
    return f"Record {row} (line {line}) has {width} fields; the limit is {max_columns} columns."


def _too_long(row: int, line: int, column: int | None, max_field_chars: int) -> str:
    where = f"Record {row} (line {line})" + (f", column {column}" if column else "")
    return f"{where}: the field is longer than {max_field_chars:,} characters, the limit."


def _split_lines(
    texts: Iterable[str], max_line_chars: int, piece_chars: Callable[[], int]
) -> Iterator[str | list[str]]:
    """Yield pieces of whole lines, as a file opened with newline="" reads them, whatever the chunks.

    A long text is cut into pieces of about piece_chars() (PIECE_CHARS): csv.reader reads the lines of a
    small piece while they are still in the processor's cache. What is left unfinished at the end of the text
    comes last, as a list of its lines: a CR held back in case an LF followed ends a line when none did.
    """
    pending: list[str] = []
    pending_chars = 0
    for text in texts:
        if not text:
            continue
        if "\n" not in text and "\r" not in text:
            pending.append(text)
            pending_chars += len(text)
            if pending_chars > max_line_chars:
                raise _LineProblem(f"is longer than {max_line_chars:,} characters")
            continue
        if pending:
            pending.append(text)
            text = "".join(pending)
            pending, pending_chars = [], 0
        start = 0
        while (cut := text.find("\n", start + piece_chars()) + 1) > 0:  # a line ends right after each LF
            yield text[start:cut]
            start = cut
        # The last line is unfinished unless it ends with LF: a CR may be followed by the LF of a CRLF.
        end = len(text)
        if not text.endswith("\n"):
            end = max(text.rfind("\n", start, end - 1), text.rfind("\r", start, end - 1)) + 1
            pending = [text[max(end, start) :]]
            pending_chars = len(pending[0])
        if end > start:
            yield text[start:end]
    if pending:
        yield _lines_of("".join(pending))


_OTHER_LINE_BREAKS: Final = "\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def _lines_of(text: str) -> list[str]:
    """Split text after each LF, CR or CRLF, keeping the line ends, as a file opened with newline="" does."""
    # str.splitlines is faster, but also breaks at the characters above.
    if any(char in text for char in _OTHER_LINE_BREAKS):
        return io.StringIO(text, newline="").readlines()
    return text.splitlines(keepends=True)


def _long_field_column(text: str, dialect: Dialect, limit: int) -> int | None:
    """Return the 1-based column of the first field longer than limit in raw record text."""
    column, length, quoted, index = 1, 0, False, 0
    delimiter, quote = dialect.delimiter, dialect.quote_char
    while index < len(text):
        char = text[index]
        index += 1
        if quoted:
            if char == quote and text.startswith(quote, index):
                index += 1
            elif char == quote:
                quoted = False
                continue
            length += 1
        elif char == quote and length == 0:
            quoted = True
        elif char == delimiter:
            if length > limit:
                return column
            column, length = column + 1, 0
        else:
            length += 1
        if length > limit:
            return column
    return None
