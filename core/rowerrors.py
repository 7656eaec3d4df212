"""Row errors of imports in Table Storage: written in transactions, read in row order, deleted with the job.

An import's errors are spread over partitions of `ROWS_PER_PARTITION` file rows each,
``{jobId}-{n:06d}``: one partition per job grew to hundreds of thousands of entities on big files, and
Azurite (like a hot partition in Azure) slows down as a partition grows: each write looks its key up by
scanning the partition. Storing 10,000 errors spread over 100,000 rows cost Azurite 2.0 CPU seconds
with 10,000-row partitions and 1.0 with 1,000-row ones; 100-row partitions made the transactions so
small that it cost 3.0. The partition names sort in row order and share the job id as a prefix, so a
range query over them still reads the errors in row order.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from azure.data.tables import TableClient, TableEntity

from core.storage import ROW_ERRORS_TABLE, Storage, retrying
from core.tablebatch import MAX_OPERATIONS, submit_batch
from core.validation import RowError

ROWS_PER_PARTITION: Final = 1_000
ROW_LEVEL: Final = 999  # the position of errors about a whole row, after every field
MAX_MESSAGE_CHARS: Final = 2_000
# Transactions sent at once. Errors that repeat keys are spread over the whole file: a few per partition,
# so one small transaction each, and sent one after another they took 1.4 s of a 100,000-row import.
STORE_THREADS: Final = 4


def table(storage: Storage) -> TableClient:
    return storage.tables.get_table_client(ROW_ERRORS_TABLE)


def partition_of(job_id: str, row: int) -> str:
    return f"{job_id}-{(row - 1) // ROWS_PER_PARTITION:06d}"


def query(storage: Storage, job_id: str, **options: Any) -> Iterator[TableEntity]:
    """Yield a job's errors in row order (options go to query_entities: results_per_page, select)."""
    # "-" sorts just before ".", so [job-, job.) holds exactly this job's partitions.
    return table(storage).query_entities(
        "PartitionKey ge @low and PartitionKey lt @high",
        parameters={"low": f"{job_id}-", "high": f"{job_id}."},
        **options,
    )


def store(storage: Storage, job_id: str, positions: dict[str, int], errors: Iterable[RowError]) -> None:
    """Write row errors as upserts (a re-run rewrites the same entities), in transactions of 100 sent
    STORE_THREADS at a time.

    `positions` orders a row's errors by column (see `RowKey`); errors of no column sort last.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for error in errors:
        partition = partition_of(job_id, error.row)
        groups.setdefault(partition, []).append(
            {
                "PartitionKey": partition,
                "RowKey": f"{error.row:010d}-{positions.get(error.column, ROW_LEVEL):03d}-{error.code}",
                "row": error.row,
                "column": error.column,
                "code": error.code,
                "message": error.message[:MAX_MESSAGE_CHARS],
                "value": error.value,
            }
        )
    errors_table = table(storage)
    transactions = [
        [("upsert", entity) for entity in group[start : start + MAX_OPERATIONS]]
        for group in groups.values()
        for start in range(0, len(group), MAX_OPERATIONS)
    ]

    def send(upserts: list[tuple[str, dict[str, Any]]]) -> None:
        retrying(functools.partial(submit_batch, errors_table, upserts))

    with ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="rowerrors") as pool:
        list(pool.map(send, transactions))  # raises the first failure


def delete_all(storage: Storage, job_id: str) -> None:
    """Delete a job's errors (safe to run twice)."""
    errors_table = table(storage)
    groups: dict[str, list[TableEntity]] = {}
    for entity in query(storage, job_id, select=["PartitionKey", "RowKey"]):
        groups.setdefault(entity["PartitionKey"], []).append(entity)
    for group in groups.values():
        for start in range(0, len(group), MAX_OPERATIONS):
            deletes = [("delete", entity) for entity in group[start : start + MAX_OPERATIONS]]
            retrying(functools.partial(errors_table.submit_transaction, deletes))
