"""Profile throughput: Loadbay's streaming profiler next to plain csv.reader over the same bytes.

Run: .venv/bin/python bench/profiling.py [--rows 100000] [--runs 3]. Prints rows/s of both and their ratio.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.profiling import profile_stream

CHUNK = 4 * 1024 * 1024


def generate(rows: int, seed: int = 7) -> bytes:
    """Make a 10-column CSV with the usual mix of types (ids, names, numbers, dates, codes, flags)."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["id", "name", "email", "amount", "quantity", "created", "active", "code", "city", "note"]
    )
    cities = ["Zürich", "Lyon", "Porto", "Kraków", "Oslo"]
    for row in range(1, rows + 1):
        writer.writerow([
            row, f"Person {rng.randrange(10_000)}", f"p{row}@example.com", f"{rng.uniform(0, 1e4):.2f}",
            rng.randrange(1000), f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
            rng.choice(["true", "false"]), f"{rng.randrange(100_000):05d}", rng.choice(cities),
            rng.choice(["", "fragile, handle with care", 'says "hi"']),
        ])  # fmt: skip
    return out.getvalue().encode("utf-8")


def chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


def best_of(runs: int, work: object) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()  # type: ignore[operator]
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    data = generate(args.rows)

    def baseline() -> None:
        for _ in csv.reader(io.StringIO(data.decode("utf-8"))):
            pass

    def loadbay() -> None:
        profile = profile_stream(chunks(data))
        assert profile.row_count == args.rows

    base = best_of(args.runs, baseline)
    ours = best_of(args.runs, loadbay)
    print(f"file: {args.rows:,} rows x 10 columns, {len(data) / 1e6:.1f} MB")
    print(f"csv.reader baseline : {args.rows / base:>12,.0f} rows/s")
    print(f"Loadbay profile     : {args.rows / ours:>12,.0f} rows/s  ({args.rows * 10 / ours:,.0f} cells/s)")
    print(f"ratio profile/csv   : {base / ours:>12.2f}  (profile rate as a share of the csv.reader rate)")


if __name__ == "__main__":
    main()
