"""Dataset deletes, exports and the outbox surviving crashes and races, against the session's real Azurite."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from core import datasets, exports, imports, jobs, rowerrors, rows, uploads
from core.auth import Principal
from core.ids import new_id
from core.settings import Settings
from core.storage import EXPORTS_CONTAINER, IMPORT_QUEUE, WORK_CONTAINER, Storage
from core.validation import RowError
from tests.core.steps import import_to_review

OWNER = Principal(user_id="lifecycle-test", user_details="l", identity_provider="aad", roles=frozenset())
SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "v", "type": "string"}], "primaryKey": "id"}


class Killed(BaseException):
    """The process died (BaseException: nothing on the way catches it)."""


def csv_rows(first: int, count: int) -> bytes:
    return ("id,v\n" + "".join(f"{n},x{n}\n" for n in range(first, first + count))).encode()


def dataset_with_rows(storage: Storage, count: int) -> datasets.Dataset:
    dataset = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "life", "schema": SCHEMA})
    job, chunks = import_to_review(storage, OWNER, dataset.id, csv_rows(1, count), mode="insert")
    for index in range(chunks):
        imports.apply_chunk(storage=storage, job_id=job.id, index=index)
    assert imports.finalize_import(storage=storage, job_id=job.id) == {"status": jobs.COMPLETED}
    loaded = datasets.load_dataset(storage, dataset.id)
    assert loaded is not None and loaded.row_count == count
    return loaded


def index_exists(storage: Storage, job_id: str) -> bool:
    try:
        jobs.jobs_index(storage).get_entity(job_id, "job")
    except ResourceNotFoundError:
        return False
    return True


def blob_exists(storage: Storage, container: str, name: str) -> bool:
    return bool(storage.blobs.get_blob_client(container, name).exists())


def job_ids_of(storage: Storage, dataset_id: str) -> list[str]:
    return [
        entity["RowKey"].removeprefix("job-") for entity in jobs.partition_rows(storage, dataset_id, "job-")
    ]


def furnish(storage: Storage, dataset: datasets.Dataset) -> list[str]:
    """Give a dataset a completed export, stored row errors and a work blob; return its job ids."""
    export = exports.start_export(storage=storage, principal=OWNER, dataset_id=dataset.id, body={})
    assert exports.run_export(storage=storage, job_id=export.id) == jobs.COMPLETED
    job_ids = job_ids_of(storage, dataset.id)
    for job_id in job_ids:
        rowerrors.store(
            storage, job_id, {"id": 0}, [RowError(row=1, column="id", code="type", message="m", value="x")]
        )
        storage.blobs.get_blob_client(WORK_CONTAINER, f"{job_id}/leftover").upload_blob(b"x", overwrite=True)
    return job_ids


def assert_gone(storage: Storage, dataset_id: str, job_ids: list[str]) -> None:
    assert not [
        t.name for t in storage.tables.list_tables() if t.name.startswith(rows.rows_table_prefix(dataset_id))
    ]
    assert (
        list(
            jobs.datasets_table(storage).query_entities("PartitionKey eq @pk", parameters={"pk": dataset_id})
        )
        == []
    )
    for job_id in job_ids:
        assert not index_exists(storage, job_id), job_id
        assert list(rowerrors.query(storage, job_id)) == []
        assert not blob_exists(storage, WORK_CONTAINER, f"{job_id}/leftover")
        assert not blob_exists(storage, EXPORTS_CONTAINER, f"{job_id}.csv")


def test_a_delete_removes_everything_of_its_dataset_and_nothing_of_another(storage: Storage) -> None:
    doomed, kept = dataset_with_rows(storage, 30), dataset_with_rows(storage, 20)
    doomed_jobs, kept_jobs = furnish(storage, doomed), furnish(storage, kept)
    delete_id = datasets.request_delete(storage=storage, principal=OWNER, dataset_id=doomed.id)
    assert datasets.delete_dataset(storage=storage, job_id=delete_id) == jobs.COMPLETED
    assert_gone(storage, doomed.id, [*doomed_jobs, delete_id])

    survivor = datasets.load_dataset(storage, kept.id)
    assert survivor is not None and survivor.status == datasets.ACTIVE
    assert sum(1 for _ in storage.tables.get_table_client(survivor.rows_table).list_entities()) == 20
    for job_id in kept_jobs:
        assert jobs.load_job(storage, job_id) is not None
        assert len(list(rowerrors.query(storage, job_id))) == 1
        assert blob_exists(storage, WORK_CONTAINER, f"{job_id}/leftover")


def test_a_delete_killed_after_its_last_transaction_leaves_no_job_index_behind(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = dataset_with_rows(storage, 10)
    delete_id = datasets.request_delete(storage=storage, principal=OWNER, dataset_id=dataset.id)
    real_index = jobs.jobs_index

    class Dying:
        def __init__(self, table: Any) -> None:
            self.table = table

        def __getattr__(self, name: str) -> Any:
            return getattr(self.table, name)

        def delete_entity(self, partition_key: str, row_key: str) -> None:
            if partition_key == delete_id:
                raise Killed("after the dataset and its delete job were gone, before the job's index")
            self.table.delete_entity(partition_key, row_key)

    monkeypatch.setattr(datasets.jobs, "jobs_index", lambda s: Dying(real_index(s)))
    with pytest.raises(Killed):
        datasets.delete_dataset(storage=storage, job_id=delete_id)
    monkeypatch.undo()

    assert datasets.delete_dataset(storage=storage, job_id=delete_id) in (
        "missing",
        jobs.COMPLETED,
    )  # the retry
    assert not index_exists(storage, delete_id)


def test_an_export_finishing_while_its_dataset_is_deleted_leaves_no_file(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = dataset_with_rows(storage, 30)
    export = exports.start_export(storage=storage, principal=OWNER, dataset_id=dataset.id, body={})
    rows_read, go_on = threading.Event(), threading.Event()
    real_pieces = exports._csv_pieces

    def pieces(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        produced = list(real_pieces(*args, **kwargs))  # every row read while the table is still there
        rows_read.set()
        assert go_on.wait(30)
        yield from produced

    monkeypatch.setattr(exports, "_csv_pieces", pieces)
    outcome: list[str] = []
    worker = threading.Thread(
        target=lambda: outcome.append(exports.run_export(storage=storage, job_id=export.id))
    )
    worker.start()
    assert rows_read.wait(30)

    delete_id = datasets.request_delete(storage=storage, principal=OWNER, dataset_id=dataset.id)
    real_index = jobs.jobs_index

    class Racing:
        def __init__(self, table: Any) -> None:
            self.table = table

        def __getattr__(self, name: str) -> Any:
            return getattr(self.table, name)

        def delete_entity(self, partition_key: str, row_key: str) -> None:
            if partition_key == export.id:  # the delete looked for the file before the export wrote it
                go_on.set()
                worker.join(30)
            self.table.delete_entity(partition_key, row_key)

    monkeypatch.setattr(datasets.jobs, "jobs_index", lambda s: Racing(real_index(s)))
    assert datasets.delete_dataset(storage=storage, job_id=delete_id) == jobs.COMPLETED
    go_on.set()
    worker.join(30)
    assert outcome and outcome[0] != jobs.COMPLETED
    assert_gone(storage, dataset.id, [export.id, delete_id])


def test_the_sweeper_keeps_a_command_written_while_it_sent_the_previous_one(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset_id, job_id, queue = new_id(), new_id(), f"lifecycle-{new_id()}"
    storage.queues.create_queue(queue)
    old = jobs.outbox_entity(dataset_id, job_id, queue)
    old["createdAt"] = jobs.now() - timedelta(minutes=5)
    jobs.datasets_table(storage).create_entity(old)
    real_send = storage.send

    def send(name: str, message: dict[str, Any]) -> None:
        real_send(name, message)
        if name == queue:  # meanwhile a new change and its command land (its process then dies)
            jobs.datasets_table(storage).upsert_entity(jobs.outbox_entity(dataset_id, job_id, queue))

    monkeypatch.setattr(storage, "send", send)
    assert jobs.sweep_outbox(storage) == 1
    monkeypatch.undo()
    try:
        # The new command's row is still there, so it is sent once it is old enough.
        jobs.datasets_table(storage).get_entity(dataset_id, jobs.outbox_row(job_id))
    finally:
        storage.queues.delete_queue(queue)
        jobs.datasets_table(storage).delete_entity(dataset_id, jobs.outbox_row(job_id))  # none is no error


@pytest.mark.parametrize("sender", ["start", "decision"])
def test_a_sender_keeps_a_command_written_while_it_sent_its_own(
    storage: Storage, monkeypatch: pytest.MonkeyPatch, sender: str
) -> None:
    """A job's start (and a review decision) clears its own outbox row only: not a newer one written by a
    change that landed while it sent, whose process then died before its own send."""
    dataset = datasets.create_dataset(
        storage=storage, owner=OWNER, body={"name": "outbox", "schema": {"fields": [{"name": "id"}]}}
    )
    upload = uploads.store_upload(
        storage=storage,
        settings=Settings(storage=storage.config),
        owner=OWNER,
        file_name="o.csv",
        body=b"id\nx\n",
    )
    uploads.profile_upload(storage=storage, settings=Settings(storage=storage.config), upload_id=upload["id"])
    job_id = new_id()
    real_send = storage.send

    def send(name: str, message: dict[str, Any]) -> None:
        real_send(name, message)
        if name == IMPORT_QUEUE and message["id"] == job_id:  # meanwhile: a newer command for the job
            jobs.datasets_table(storage).upsert_entity(jobs.outbox_entity(dataset.id, job_id, IMPORT_QUEUE))

    body = {"uploadId": upload["id"]}
    if sender == "decision":  # the import waits for its review; the newer command lands during the approve
        started = imports.start_import(
            storage=storage,
            settings=Settings(storage=storage.config),
            principal=OWNER,
            dataset_id=dataset.id,
            body=body,
        )
        job_id = started.id
        jobs.change_job(storage, job_id, lambda _: {"status": jobs.AWAITING_REVIEW})
        monkeypatch.setattr(storage, "send", send)
        imports.record_decision(storage=storage, principal=OWNER, job_id=job_id, action="approve")
    else:
        monkeypatch.setattr(storage, "send", send)
        monkeypatch.setattr(imports, "new_id", lambda: job_id)
        imports.start_import(
            storage=storage,
            settings=Settings(storage=storage.config),
            principal=OWNER,
            dataset_id=dataset.id,
            body=body,
        )
    monkeypatch.undo()
    jobs.datasets_table(storage).get_entity(
        dataset.id, jobs.outbox_row(job_id)
    )  # still there, for the sweeper
