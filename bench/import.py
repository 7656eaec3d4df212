"""Import throughput and memory: a Loadbay import through the devhost on Azurite, next to the raw ceiling.

Run: .venv/bin/python bench/import.py [--rows 100000] [--pairs 3] [--big-rows 1000000] [--skip-million]
                                     [--big-timeout 3600] [--survey all|best]

Uses bench/validate.py's file (10 columns, ~1 % invalid cells) and Table Schema, and prints:

1. The raw ceiling: the file's valid rows' entities (core.rows.row_entity, keys from core.rows.api_key,
   as core.imports.apply_chunk builds them) written straight to a fresh Azurite in single-partition
   transactions of <= 100 entities, sent by the SDK's submit_transaction and by core.tablebatch (the
   same request built far cheaper, which Loadbay uses), from thread pools, asyncio and process pools;
   the fastest configuration is the ceiling's.
2. `--pairs` Loadbay imports end to end, each followed by that configuration again: a devhost process
   on a fresh in-memory Azurite; create the dataset, upload the file through its SAS upload URL, then
   time from POST /uploads/{id}/commit to `completed`: profiling, the import (insert, autoApply)
   validating until `awaiting_review`, an approval sent at once, and applying. Rows/s = valid rows
   inserted / seconds. Pairs, because this machine's speed drifts by a quarter over minutes: each
   import is compared with a ceiling measured right after it, and the medians of both are compared.
   Target: Loadbay / ceiling >= 0.7.
3. The devhost's peak memory (VmHWM) after the median `--rows` import and after a `--big-rows` import,
   each in its own devhost and Azurite. Target: big / small <= 1.25. `--skip-million` skips the big
   import (slow: about 9 minutes on two cores); one still running after `--big-timeout` seconds is
   reported with its peak so far (a lower bound).

Logs: test-output/bench-import-devhost-<rows>.log. CPU seconds of the devhost and of Azurite are printed
per phase: they tell which side a phase waits for.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from azure.core.exceptions import AzureError
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError
from azure.data.tables.aio import TableClient as AsyncTableClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.validate import SCHEMA, generate
from cli.client import put_blob
from core import rows
from core.csvformat import DecodedText, read_records, sniff_dialect
from core.ids import new_id
from core.mapping import map_columns
from core.tablebatch import BatchRejected, submit_batch
from core.tableschema import parse_table_schema
from core.validation import Validator, merge_keys
from devhost.azurite import Azurite, free_port
from devhost.processes import REPO_ROOT, start, stop, wait_for_url

LOG_DIR = REPO_ROOT / "test-output"
USER_ID = "bench-import"
SETTINGS = {"LOADBAY_REQUESTS_PER_MINUTE": "1000000", "LOADBAY_CHUNK_ROWS": "10000"}
POLL_SECONDS = 0.25
# The devhost runs HTTP triggers on the same threads as activities: during a big import a status answer can
# wait minutes for a free thread. The bench waits for it (and reports the slowest) rather than giving up.
ANSWER_SECONDS = 1800
BATCH_ENTITIES = 100
TARGET_RATIO = 0.7
TARGET_MEMORY = 1.25
# (how, kind, processes, concurrent batches per process) tried for the ceiling. "sdk" sends each
# transaction with TableClient.submit_transaction, "batch" with core.tablebatch.submit_batch (the same
# $batch request, built ~10x cheaper). Earlier runs tried wider pools (16 threads, 8 per process, asyncio
# with 8 in flight): never faster than these.
CEILING_CONFIGS: tuple[tuple[str, str, int, int], ...] = (
    ("sdk", "threads", 1, 4),
    ("sdk", "asyncio", 1, 8),
    ("sdk", "processes", 2, 4),
    ("batch", "threads", 1, 2),
    ("batch", "threads", 1, 4),
    ("batch", "threads", 1, 8),
    ("batch", "processes", 2, 2),
    ("batch", "processes", 2, 4),
)


# --- Loadbay through the devhost -----------------------------------------------------------------


def principal_header(user_id: str) -> str:
    """Encode an SWA-shaped client principal, as SWA sends it to the API."""
    payload = {
        "identityProvider": "aad",
        "userId": user_id,
        "userDetails": f"{user_id}@example.com",
        "userRoles": ["anonymous", "authenticated"],
    }
    return base64.b64encode(json.dumps(payload).encode()).decode()


@dataclass
class Stack:
    """A fresh in-memory Azurite and a devhost serving Loadbay against it."""

    azurite: Azurite
    devhost: subprocess.Popen[bytes]
    base_url: str


@contextmanager
def loadbay_stack(log_name: str) -> Iterator[Stack]:
    """Start Azurite (in memory) and a devhost on free ports; stop both by PID at the end."""
    azurite = Azurite().start()
    devhost = None
    try:
        port = free_port()
        env = {
            **os.environ,
            **SETTINGS,
            "AzureWebJobsStorage": azurite.connection_string,
            "PYTHONPATH": str(REPO_ROOT),
        }
        command = [sys.executable, "-m", "devhost", "--app-dir", str(REPO_ROOT), "--port", str(port)]
        log_file = LOG_DIR / log_name
        log_file.unlink(missing_ok=True)
        devhost = start(command, env=env, cwd=REPO_ROOT, log_file=log_file)
        base_url = f"http://127.0.0.1:{port}"
        wait_for_url(base_url + "/api/health", timeout=60, process=devhost)
        yield Stack(azurite, devhost, base_url)
    finally:
        if devhost is not None:
            stop(devhost)
        azurite.stop()


class Client:
    """Loadbay's HTTP API, signed in as one user."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["x-ms-client-principal"] = principal_header(USER_ID)
        self.slowest = 0.0  # seconds of the slowest answer so far

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> dict[str, Any]:
        """Send one request and return its JSON body; fail loudly on any other status."""
        sent = time.perf_counter()
        answer = self.session.request(method, self.base_url + path, timeout=ANSWER_SECONDS, **kwargs)
        self.slowest = max(self.slowest, time.perf_counter() - sent)
        if answer.status_code != expect:
            raise SystemExit(f"{method} {path} answered {answer.status_code}: {answer.text[:500]}")
        body: dict[str, Any] = answer.json()
        return body

    def wait(self, path: str, statuses: tuple[str, ...], deadline: float) -> dict[str, Any]:
        """Poll `path` until its status is one of `statuses`; TimeoutError after `deadline` (monotonic)."""
        while True:
            body = self.call("GET", path, 200)
            if body["status"] in statuses:
                return body
            if body["status"] in ("failed", "rejected", "cancelled", "expired"):
                raise SystemExit(f"{path} ended {body['status']}: {body}")
            if time.monotonic() > deadline:
                raise TimeoutError(body["status"])
            time.sleep(POLL_SECONDS)


def peak_memory_kib(pid: int) -> int:
    """Return a process's peak resident memory (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "VmHWM":
            return int(value.split()[0])
    raise RuntimeError(f"no VmHWM for process {pid}")


def cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Mark:
    """A moment of an import: the clock, the devhost's peak memory, and the CPU seconds used so far."""

    at: float
    peak_kib: int
    devhost_cpu: float
    azurite_cpu: float

    @classmethod
    def now(cls, stack: Stack) -> Mark:
        assert stack.azurite.process is not None
        return cls(
            time.perf_counter(),
            peak_memory_kib(stack.devhost.pid),
            cpu_seconds(stack.devhost.pid),
            cpu_seconds(stack.azurite.process.pid),
        )


PHASES = {
    "profiling": "commit -> profiled",
    "validating": "POST import -> awaiting_review",
    "applying": "approve -> completed",
}


@dataclass
class ImportRun:
    """One Loadbay import: the file, the job's counts, and marks at the commit and at each phase's end."""

    rows: int
    file_bytes: int
    counts: dict[str, int]
    marks: dict[str, Mark]  # "idle", "commit", then one per PHASES key
    slowest_answer: float  # seconds of the slowest API answer during the import

    def phase(self, name: str) -> tuple[float, float, float]:
        """Return the seconds, devhost CPU seconds and Azurite CPU seconds of one phase."""
        names = ["commit", *PHASES]
        before, after = self.marks[names[names.index(name) - 1]], self.marks[name]
        return (
            after.at - before.at,
            after.devhost_cpu - before.devhost_cpu,
            after.azurite_cpu - before.azurite_cpu,
        )

    @property
    def seconds(self) -> float:
        return self.marks["applying"].at - self.marks["commit"].at

    @property
    def rate(self) -> float:
        return self.counts["inserted"] / self.seconds

    @property
    def peak_kib(self) -> int:
        return self.marks["applying"].peak_kib


class Unfinished(Exception):
    """An import still running when its time ran out, with the devhost's peak memory until then."""

    def __init__(self, rows: int, status: str, seconds: float, peak_kib: int) -> None:
        super().__init__(f"the {rows:,}-row import was still {status} {seconds:,.0f} s after the commit")
        self.rows, self.status, self.seconds, self.peak_kib = rows, status, seconds, peak_kib


def run_import(stack: Stack, data: bytes, row_count: int, budget: float) -> ImportRun:
    """Upload, commit, import and approve one file; time from the commit to `completed`.

    Raises Unfinished when the import has not completed `budget` seconds after the commit.
    """
    client = Client(stack.base_url)
    marks = {"idle": Mark.now(stack)}
    dataset_id = client.call("POST", "/api/datasets", 201, json={"name": "bench", "schema": SCHEMA})["id"]
    ticket = client.call("POST", "/api/uploads", 201, json={"fileName": "bench.csv", "size": len(data)})
    put_blob(ticket["uploadUrl"], io.BytesIO(data), len(data))
    upload_path = f"/api/uploads/{ticket['id']}"

    marks["commit"] = Mark.now(stack)
    deadline = time.monotonic() + budget
    client.slowest = 0.0
    try:
        client.call("POST", upload_path + "/commit", 202)
        client.wait(upload_path, ("profiled",), deadline)
        marks["profiling"] = _progress(stack, marks, "profiling")
        request = {"uploadId": ticket["id"], "autoApply": True, "mode": "insert"}
        job_id = client.call("POST", f"/api/datasets/{dataset_id}/imports", 202, json=request)["id"]
        job_path = f"/api/imports/{job_id}"
        client.wait(job_path, ("awaiting_review",), deadline)
        marks["validating"] = _progress(stack, marks, "validating")
        client.call("POST", job_path + "/approve", 202)
        job = client.wait(job_path, ("completed",), deadline)
    except TimeoutError as timeout:
        now = Mark.now(stack)
        raise Unfinished(row_count, str(timeout), now.at - marks["commit"].at, now.peak_kib) from None
    marks["applying"] = _progress(stack, marks, "applying")
    counts = {key: int(value or 0) for key, value in job["counts"].items()}
    return ImportRun(row_count, len(data), counts, marks, client.slowest)


def _progress(stack: Stack, marks: dict[str, Mark], phase: str) -> Mark:
    """Mark the end of a phase and say so at once (a big import runs for a long time)."""
    mark = Mark.now(stack)
    print(f"    ({phase} done {mark.at - marks['commit'].at:,.1f} s after the commit)", flush=True)
    return mark


# --- the raw ceiling -----------------------------------------------------------------------------


def valid_entities(data: bytes) -> list[dict[str, Any]]:
    """Validate the file as an import does and build its valid rows' entities as apply_chunk does."""
    schema = parse_table_schema(SCHEMA)
    text = DecodedText(iter([data]))
    records = read_records(
        text, sniff_dialect(text.sample, complete=text.complete), max_columns=250, max_field_chars=65_536
    )
    validator = Validator(schema, map_columns(schema, next(records)))
    job_id = new_id()
    kept: list[tuple[int, dict[str, Any]]] = []
    digests = []
    for result in validator.validate_stream(records, chunk_rows=10_000, keep_rows=True):
        kept += zip(result.valid_row_numbers, result.valid_rows, strict=True)
        digests.append(result.keys)
    duplicates = set(merge_keys(digests).newly_invalid_rows)
    return [
        rows.row_entity(schema, values, key=rows.api_key(schema, values), job_id=job_id, op="i")
        for number, values in kept
        if number not in duplicates
    ]


def transactions(entities: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Cut entities into single-partition batches of <= 100, as the importer's row writer does."""
    return [
        group[start : start + BATCH_ENTITIES]
        for group in rows.group_by_partition(entities).values()
        for start in range(0, len(group), BATCH_ENTITIES)
    ]


def _submit(table: TableClient, batch: list[dict[str, Any]], how: str, attempts: int = 4) -> None:
    """Insert one batch; send it again after a transient failure (a reset connection)."""
    operations = [("create", entity) for entity in batch]
    for attempt in range(attempts):
        try:
            if how == "sdk":
                table.submit_transaction(operations)
            else:
                submit_batch(table, operations)
            return
        except (TableTransactionError, BatchRejected):
            raise
        except AzureError:
            if attempt == attempts - 1:
                raise


def write_threads(
    connection: str, table_name: str, batches: list[list[dict[str, Any]]], threads: int, how: str
) -> None:
    """Write the batches from one process with a pool of threads sharing one client."""
    table = TableClient.from_connection_string(connection, table_name)
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(lambda batch: _submit(table, batch, how), batches):
            pass


def write_asyncio(
    connection: str, table_name: str, batches: list[list[dict[str, Any]]], tasks: int, how: str
) -> None:
    """Write the batches from one event loop with `tasks` transactions in flight (the SDK's async client)."""
    if how != "sdk":
        raise ValueError("core.tablebatch has no asyncio sender")

    async def run() -> None:
        pending = iter(batches)
        async with AsyncTableClient.from_connection_string(connection, table_name) as table:

            async def worker() -> None:
                for batch in pending:  # one shared iterator: each batch goes to one worker
                    await table.submit_transaction([("create", entity) for entity in batch])

            await asyncio.gather(*(worker() for _ in range(tasks)))

    asyncio.run(run())


_FORKED_BATCHES: list[list[dict[str, Any]]] = []  # inherited by forked workers: nothing to pickle


def _write_share(connection: str, table_name: str, indexes: list[int], threads: int, how: str) -> int:
    write_threads(connection, table_name, [_FORKED_BATCHES[i] for i in indexes], threads, how)
    return len(indexes)


def _ready(_: int) -> int:
    return os.getpid()


def write_processes(
    connection: str,
    table_name: str,
    batches: list[list[dict[str, Any]]],
    processes: int,
    threads: int,
    how: str,
) -> float:
    """Write the batches from forked processes, each with a pool of threads; return the seconds taken."""
    global _FORKED_BATCHES
    _FORKED_BATCHES = batches
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        # A fork pool starts all its processes on its first task: start them before the clock does.
        list(pool.map(_ready, range(processes)))
        started = time.perf_counter()
        shares = [list(range(first, len(batches), processes)) for first in range(processes)]
        futures = [pool.submit(_write_share, connection, table_name, share, threads, how) for share in shares]
        done = sum(future.result() for future in futures)
        elapsed = time.perf_counter() - started
    _FORKED_BATCHES = []
    assert done == len(batches)
    return elapsed


def measure_ceiling(
    batches: list[list[dict[str, Any]]], how: str, kind: str, processes: int, width: int
) -> float:
    """Write the batches into a fresh table of a fresh Azurite with one configuration; return seconds."""
    with Azurite() as azurite:
        table_name = "ceiling"
        TableServiceClient.from_connection_string(azurite.connection_string).create_table(table_name)
        connection = azurite.connection_string
        if kind == "processes":
            elapsed = write_processes(connection, table_name, batches, processes, width, how)
        else:
            writer: Callable[..., None] = write_threads if kind == "threads" else write_asyncio
            started = time.perf_counter()
            writer(connection, table_name, batches, width, how)
            elapsed = time.perf_counter() - started
        written = sum(1 for _ in TableClient.from_connection_string(connection, table_name).list_entities())
    expected = sum(len(batch) for batch in batches)
    if written != expected:
        raise SystemExit(f"ceiling run {kind} wrote {written} entities, expected {expected}")
    return elapsed


def describe(how: str, kind: str, processes: int, width: int) -> str:
    """Name a ceiling configuration."""
    sender = "submit_transaction" if how == "sdk" else "submit_batch"
    if kind == "threads":
        return f"{sender}, 1 process x {width} threads"
    if kind == "asyncio":
        return f"{sender}, asyncio x {width} in flight"
    return f"{sender}, {processes} processes x {width} threads"


# --- the report ----------------------------------------------------------------------------------


def mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def print_import(run: ImportRun) -> None:
    """Print one import's figures, phase by phase."""
    counts = run.counts
    print(
        f"  file: {run.rows:,} rows x 10 columns, {run.file_bytes / 1e6:.1f} MB; valid {counts['valid']:,},"
        f" invalid {counts['invalid']:,}, inserted {counts['inserted']:,}"
    )
    print(f"  {'phase':<12} {'seconds':>8} {'devhost CPU s':>14} {'Azurite CPU s':>14} {'VmHWM after':>12}")
    for name, meaning in PHASES.items():
        seconds, devhost, azurite = run.phase(name)
        peak = mib(run.marks[name].peak_kib)
        print(f"  {name:<12} {seconds:>8.1f} {devhost:>14.1f} {azurite:>14.1f} {peak:>12}  ({meaning})")
    print(
        f"  commit -> completed: {run.seconds:.1f} s = {run.rate:,.0f} inserted rows/s"
        f" (applying alone: {counts['inserted'] / run.phase('applying')[0]:,.0f} rows/s);"
        f" devhost VmHWM at start {mib(run.marks['idle'].peak_kib)}"
    )
    print(f"  slowest API answer during the import: {run.slowest_answer:.1f} s")


def print_table(
    pairs: list[tuple[ImportRun, float]], big: ImportRun | Unfinished | None, best: str, surveyed: float
) -> None:
    """Print the summary: throughput against the ceiling (medians of the pairs), and memory growth."""
    runs = [run for run, _ in pairs]
    middle = sorted(runs, key=lambda run: run.rate)[len(runs) // 2]
    rate = statistics.median(run.rate for run in runs)
    ceiling = statistics.median(ceiling for _, ceiling in pairs)
    ratios = [run.rate / ceiling for run, ceiling in pairs]
    ratio = rate / ceiling
    spread = f" (pairs: {min(ratios):.2f}-{max(ratios):.2f})" if len(pairs) > 1 else ""
    lines = [
        (f"Loadbay import, {middle.rows:,} rows (median of {len(runs)})", f"{rate:,.0f} rows/s", ""),
        (f"raw ceiling ({best}, median of {len(pairs)})", f"{ceiling:,.0f} rows/s", ""),
        ("Loadbay / ceiling" + spread, f"{ratio:.2f}", _verdict(ratio >= TARGET_RATIO, f">= {TARGET_RATIO}")),
        (
            "(the same ceiling's single run in the survey)",
            f"{surveyed:,.0f} rows/s",
            f"ratio {rate / surveyed:.2f}",
        ),
        (f"devhost VmHWM, {middle.rows:,} rows (the median run)", mib(middle.peak_kib), ""),
    ]
    if big is not None:
        growth = big.peak_kib / middle.peak_kib
        # An unfinished import's peak so far is a lower bound of its peak.
        bound = ">= " if isinstance(big, Unfinished) else ""
        note = f" (unfinished: still {big.status})" if isinstance(big, Unfinished) else ""
        lines += [
            (f"devhost VmHWM, {big.rows:,} rows{note}", bound + mib(big.peak_kib), ""),
            (f"VmHWM {big.rows:,} / {middle.rows:,}", f"{bound}{growth:.2f}", _memory_verdict(growth, bound)),
        ]
        if isinstance(big, ImportRun):
            lines.append((f"Loadbay import, {big.rows:,} rows", f"{big.rate:,.0f} rows/s", ""))
    width = max(len(name) for name, _, _ in lines)
    print()
    print(f"{'figure':<{width}}  {'value':>14}  target")
    for name, value, target in lines:
        print(f"{name:<{width}}  {value:>14}  {target}".rstrip())


def _verdict(met: bool, target: str) -> str:
    return f"{target} ({'meets' if met else 'MISSES'})"


def _memory_verdict(growth: float, bound: str) -> str:
    if bound and growth <= TARGET_MEMORY:  # only a lower bound: it may still miss
        return f"<= {TARGET_MEMORY} (unknown: unfinished)"
    return _verdict(growth <= TARGET_MEMORY, f"<= {TARGET_MEMORY}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the measured import")
    parser.add_argument("--big-rows", type=int, default=1_000_000, help="rows of the memory-growth import")
    parser.add_argument("--skip-million", action="store_true", help="skip the --big-rows import")
    parser.add_argument(
        "--pairs",
        type=int,
        default=3,
        help="imports measured, each followed by the best ceiling again; the medians are compared",
    )
    parser.add_argument(
        "--big-timeout",
        type=float,
        default=3600,
        help="seconds the --big-rows import may take; past them its peak memory so far is reported",
    )
    parser.add_argument(
        "--survey",
        choices=("all", "best"),
        default="all",
        help="ceiling configurations tried first: all, or only the one that was fastest in earlier runs",
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows as it happens
    LOG_DIR.mkdir(exist_ok=True)

    data, injected = generate(args.rows)
    print(
        f"== 1. Raw ceiling: the valid rows' entities of a {args.rows:,}-row file straight to a fresh Azurite"
    )
    entities = valid_entities(data)
    batches = transactions(entities)
    print(f"  {len(entities):,} entities in {len(batches):,} transactions of <= {BATCH_ENTITIES}")
    ceilings: dict[str, float] = {}
    for how, kind, processes, width in CEILING_CONFIGS if args.survey == "all" else CEILING_CONFIGS[4:5]:
        name = describe(how, kind, processes, width)
        ceilings[name] = len(entities) / measure_ceiling(batches, how, kind, processes, width)
        print(f"  {name:<44}: {ceilings[name]:8,.0f} rows/s")
    best = max(ceilings, key=ceilings.__getitem__)
    config = next(config for config in CEILING_CONFIGS if describe(*config) == best)

    print(
        f"== 2. Loadbay import through the devhost ({args.rows:,} rows, {injected:,} invalid cells),"
        f" {args.pairs} times, each followed by the best ceiling again ({best})"
    )
    pairs: list[tuple[ImportRun, float]] = []
    for number in range(1, args.pairs + 1):
        print(f"-- pair {number} of {args.pairs}")
        with loadbay_stack(f"bench-import-devhost-{args.rows}.log") as stack:
            run = run_import(stack, data, args.rows, budget=3600)
        print_import(run)
        if run.counts["inserted"] != len(entities):
            raise SystemExit(
                f"Loadbay inserted {run.counts['inserted']:,} rows; the file has {len(entities):,}"
            )
        ceiling = len(entities) / measure_ceiling(batches, *config)
        print(f"  ceiling right after: {ceiling:,.0f} rows/s; this pair's ratio {run.rate / ceiling:.2f}")
        pairs.append((run, ceiling))

    big: ImportRun | Unfinished | None = None
    if not args.skip_million:
        print(f"== 3. Memory: a {args.big_rows:,}-row import in a fresh devhost and Azurite")
        big_data, _ = generate(args.big_rows)
        with loadbay_stack(f"bench-import-devhost-{args.big_rows}.log") as stack:
            try:
                big = run_import(stack, big_data, args.big_rows, budget=args.big_timeout)
                print_import(big)
            except Unfinished as stopped:
                big = stopped
                print(f"  UNFINISHED: {stopped}; devhost VmHWM so far {mib(stopped.peak_kib)}")
        del big_data

    print_table(pairs, big, best, ceilings[best])


if __name__ == "__main__":
    main()
