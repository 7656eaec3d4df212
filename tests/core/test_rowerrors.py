"""Row errors across partitions, against the session's real Azurite: row order, re-runs, deletion."""

from __future__ import annotations

import pytest

from core import rowerrors
from core.ids import new_id
from core.settings import StorageConfig
from core.storage import Storage
from core.validation import RowError

POSITIONS = {"id": 0, "name": 1}


@pytest.fixture(scope="module")
def storage(storage_connection_string: str) -> Storage:
    connected = Storage.connect(StorageConfig(connection_string=storage_connection_string))
    connected.ensure_resources()
    return connected


def _errors(rows: list[int]) -> list[RowError]:
    found = []
    for row in rows:
        found.append(RowError(row, "name", "required", f"Row {row}: name is required.", ""))
        found.append(RowError(row, "id", "type", f"Row {row}: id is not an integer.", f"x{row}"))
    return found


def test_errors_of_many_partitions_read_back_in_row_then_column_order(storage: Storage) -> None:
    job, neighbour = new_id(), new_id()
    size = rowerrors.ROWS_PER_PARTITION
    rows = [2 * size + 1, 3, size, size + 1, 2 * size - 1, 1]  # three partitions, written out of order
    rowerrors.store(storage, job, POSITIONS, _errors(rows))
    rowerrors.store(storage, neighbour, POSITIONS, _errors([2]))
    found = [(entity["row"], entity["column"]) for entity in rowerrors.query(storage, job)]
    assert found == [(row, column) for row in sorted(rows) for column in ("id", "name")]
    partitions = {entity["PartitionKey"] for entity in rowerrors.query(storage, job)}
    assert partitions == {f"{job}-000000", f"{job}-000001", f"{job}-000002"}


def test_a_rerun_rewrites_the_same_errors_and_pages_cross_partitions(storage: Storage) -> None:
    job = new_id()
    size = rowerrors.ROWS_PER_PARTITION
    rows = list(range(size - 10, size + 11))
    rowerrors.store(storage, job, POSITIONS, _errors(rows))
    rowerrors.store(storage, job, POSITIONS, _errors(rows))  # an activity run twice
    pages = rowerrors.query(storage, job, results_per_page=5).by_page()
    seen = [entity["row"] for page in pages for entity in page]
    assert seen == [row for row in rows for _ in ("id", "name")]


def test_delete_all_removes_one_jobs_errors_only(storage: Storage) -> None:
    job, neighbour = new_id(), new_id()
    rowerrors.store(storage, job, POSITIONS, _errors([1, rowerrors.ROWS_PER_PARTITION + 1]))
    rowerrors.store(storage, neighbour, POSITIONS, _errors([1]))
    rowerrors.delete_all(storage, job)
    rowerrors.delete_all(storage, job)  # safe to run twice
    assert list(rowerrors.query(storage, job)) == []
    assert len(list(rowerrors.query(storage, neighbour))) == 2
