"""Validation throughput: Loadbay's validation core next to plain csv.reader and frictionless-py.

Run: .venv/bin/python bench/validate.py [--rows 100000] [--runs 5]. Generates a 10-column CSV with about
1 % invalid cells (every kind the schema checks: type, pattern, email, bounds, date, boolean, enum,
datetime, maxLength, duplicate primary keys), then prints rows/s of

  (a) Loadbay: decode + read records with core.csvformat, map columns, validate in 10,000-row chunks and
      merge the chunks' key digests (the validation phase of an import: typed rows are not kept; the
      rate with typed rows kept, as the apply phase does, is printed too);
  (b) plain csv.reader iterating over the same file;
  (c) frictionless-py validating the same file against the same schema (limit_errors=0, so it does not
      stop after 1,000 errors);

with the ratios, and checks that Loadbay's error count is exactly the number of injected invalid cells
and compares frictionless's count with it. frictionless comes with requirements-bench.txt (make bench).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.csvformat import DecodedText, read_records, sniff_dialect
from core.mapping import map_columns
from core.tableschema import parse_table_schema
from core.validation import Validator, merge_keys

READ_BYTES = 4 * 1024 * 1024
CHUNK_ROWS = 10_000
INVALID_SHARE = 0.01

SCHEMA: dict[str, Any] = {
    "fields": [
        {"name": "id", "type": "integer"},
        {"name": "code", "type": "string", "constraints": {"pattern": "[A-Z]{2}-[0-9]{4}"}},
        {"name": "email", "type": "string", "format": "email"},
        {"name": "amount", "type": "number", "constraints": {"minimum": 0, "maximum": 10000}},
        {"name": "day", "type": "date"},
        {"name": "active", "type": "boolean"},
        {"name": "status", "type": "string", "constraints": {"enum": ["new", "open", "closed"]}},
        {"name": "quantity", "type": "integer", "constraints": {"minimum": 0, "maximum": 100}},
        {"name": "created", "type": "datetime"},
        {"name": "note", "type": "string", "constraints": {"maxLength": 20}},
    ],
    "primaryKey": "id",
}

# Invalid values per column, each breaking exactly one rule in Loadbay and in frictionless alike. The id
# column gets duplicates only: frictionless reports a non-integer primary key cell twice (a type error
# and an "all key cells are None" primary-key error), which would blur the comparison.
INVALID: dict[str, list[str]] = {
    "code": ["ab-1234", "XYZ", "AB-12345"],
    "email": ["not-an-email", "someone at example.com"],
    "amount": ["-5.00", "12000.50", "lots"],
    "day": ["2024-02-30", "2024/03/01", "tomorrow"],
    "active": ["yes", "maybe"],
    "status": ["pending", "Closed"],
    "quantity": ["150", "-1", "a dozen"],
    "created": ["2024-13-01T00:00:00Z", "yesterday"],
    "note": ["this note is far longer than twenty characters"],
}


def _valid_row(rng: random.Random, row: int) -> list[str]:
    return [
        str(row),
        f"{rng.choice('ABCDEFGH')}{rng.choice('XYZ')}-{rng.randrange(10_000):04d}",
        f"user{row}@example.com",
        f"{rng.uniform(0, 10_000):.2f}",
        f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
        rng.choice(["true", "false"]),
        rng.choice(["new", "open", "closed"]),
        str(rng.randrange(0, 101)),
        f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:"
        f"{rng.randrange(60):02d}:{rng.randrange(60):02d}Z",
        rng.choice(["", "", "fragile", "leave at the door", "call first"]),
    ]


def generate(rows: int, seed: int = 7) -> tuple[bytes, int]:
    """Return CSV bytes and the number of invalid cells injected (each gives exactly one error)."""
    rng = random.Random(seed)
    names = [item["name"] for item in SCHEMA["fields"]]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    invalid = 0
    replaced: set[int] = set()  # rows whose own id was replaced: their id is not in the file to duplicate
    for row in range(1, rows + 1):
        cells = _valid_row(rng, row)
        for column, name in enumerate(names):
            if rng.random() >= INVALID_SHARE:
                continue
            if name == "id":
                earlier = rng.randrange(1, row) if row > 1 else 0
                if earlier and earlier not in replaced:  # an earlier row's id: a duplicate primary key
                    cells[0] = str(earlier)
                    replaced.add(row)
                    invalid += 1
                continue
            cells[column] = rng.choice(INVALID[name])
            invalid += 1
        writer.writerow(cells)
    return out.getvalue().encode("utf-8"), invalid


def _byte_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as stream:
        while chunk := stream.read(READ_BYTES):
            yield chunk


def loadbay(path: Path, *, keep_rows: bool) -> tuple[int, Counter[str]]:
    """Validate the file as an import does; return the row count and the error codes counted."""
    schema = parse_table_schema(SCHEMA)
    text = DecodedText(_byte_chunks(path))
    dialect = sniff_dialect(text.sample, complete=text.complete)
    records = read_records(text, dialect, max_columns=250, max_field_chars=65_536)
    header = next(records)
    validator = Validator(schema, map_columns(schema, header))
    codes: Counter[str] = Counter()
    digests = []
    rows = 0
    for result in validator.validate_stream(records, chunk_rows=CHUNK_ROWS, keep_rows=keep_rows):
        rows += result.row_count
        codes.update(error.code for error in result.errors)
        digests.append(result.keys)
    codes.update(error.code for error in merge_keys(digests).errors)
    return rows, codes


def plain_csv(path: Path) -> int:
    """Iterate the file with csv.reader and nothing else; return the data row count."""
    rows = -1
    with path.open(newline="", encoding="utf-8") as stream:
        for _ in csv.reader(stream):
            rows += 1
    return rows


def frictionless_errors(path: Path) -> Counter[str]:
    """Validate the file with frictionless-py; return its error types counted."""
    from frictionless import Resource, Schema

    # frictionless refuses absolute paths as unsafe; a base path makes the file name relative.
    schema = Schema.from_descriptor(json.loads(json.dumps(SCHEMA)))
    resource = Resource(path=path.name, basepath=str(path.parent), schema=schema)
    report = resource.validate(limit_errors=0)
    return Counter(error.type for task in report.tasks for error in task.errors)


def best_of(works: dict[str, Callable[[], Any]], runs: int) -> dict[str, tuple[float, Any]]:
    """Time each work runs times, interleaved so machine noise hits them alike; keep the best time."""
    best: dict[str, tuple[float, Any]] = {name: (float("inf"), None) for name in works}
    for _ in range(runs):
        for name, work in works.items():
            started = time.perf_counter()
            result = work()
            elapsed = time.perf_counter() - started
            if elapsed < best[name][0]:
                best[name] = (elapsed, result)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-frictionless", action="store_true")
    args = parser.parse_args()
    data, injected = generate(args.rows)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.csv"
        path.write_bytes(data)
        timings = best_of(
            {
                "csv": lambda: plain_csv(path),
                "loadbay": lambda: loadbay(path, keep_rows=False),
                "kept": lambda: loadbay(path, keep_rows=True),
            },
            args.runs,
        )
        theirs, their_codes = None, Counter[str]()
        if not args.skip_frictionless:
            theirs, their_codes = best_of({"frictionless": lambda: frictionless_errors(path)}, 1)[
                "frictionless"
            ]
    (base, counted), (ours, (rows, codes)), (kept, _) = timings["csv"], timings["loadbay"], timings["kept"]
    assert rows == counted == args.rows, (rows, counted)
    found = sum(codes.values())
    print(
        f"file: {args.rows:,} rows x 10 columns, {len(data) / 1e6:.1f} MB, "
        f"{injected:,} invalid cells injected"
    )
    print(f"(b) csv.reader          : {args.rows / base:>10,.0f} rows/s")
    print(
        f"(a) Loadbay validation  : {args.rows / ours:>10,.0f} rows/s  "
        f"(typed rows kept: {args.rows / kept:,.0f})"
    )
    print(f"    ratio a/b           : {base / ours:>10.3f}   (target >= 0.3; kept rows: {base / kept:.3f})")
    print(f"    errors found        : {found:>10,}   {'= injected' if found == injected else '!= injected'}")
    print(f"    by code             : {dict(sorted(codes.items()))}")
    if theirs is not None:
        their_total = sum(their_codes.values())
        print(f"(c) frictionless-py     : {args.rows / theirs:>10,.0f} rows/s")
        print(f"    ratio a/c           : {theirs / ours:>10.1f}   (target >= 15)")
        verdict = "same count" if their_total == found else "DIFFERENT count"
        print(f"    errors found        : {their_total:>10,}   {verdict}")
        print(f"    by type             : {dict(sorted(their_codes.items()))}")
    if found != injected:
        sys.exit("Loadbay's error count does not match the injected invalid cells")


if __name__ == "__main__":
    main()
