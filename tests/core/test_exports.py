"""Exports racing a replace's table switch or a dataset delete, against the session's real Azurite."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from core import datasets, exports, imports, jobs, rows
from core.auth import Principal
from core.storage import EXPORT_QUEUE, EXPORTS_CONTAINER, Storage
from tests.core.steps import import_to_review

OWNER = Principal(user_id="export-test", user_details="e", identity_provider="aad", roles=frozenset())
SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "v", "type": "string"}], "primaryKey": "id"}


def csv_rows(first: int, count: int) -> bytes:
    return ("id,v\n" + "".join(f"{n},x{n}\n" for n in range(first, first + count))).encode()


def applied_import(storage: Storage, dataset_id: str, body: bytes, *, mode: str) -> jobs.Job:
    """Run an import's steps up to (not including) its finalize: its rows are written, not yet switched in."""
    job, chunks = import_to_review(storage, OWNER, dataset_id, body, mode=mode)
    for index in range(chunks):
        imports.apply_chunk(storage=storage, job_id=job.id, index=index)
    return job


def dataset_with_rows(storage: Storage, count: int) -> datasets.Dataset:
    dataset = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "export", "schema": SCHEMA})
    job = applied_import(storage, dataset.id, csv_rows(1, count), mode="insert")
    assert imports.finalize_import(storage=storage, job_id=job.id) == {"status": jobs.COMPLETED}
    loaded = datasets.load_dataset(storage, dataset.id)
    assert loaded is not None and loaded.row_count == count
    return loaded


def run_once_while_exporting(
    monkeypatch: pytest.MonkeyPatch, event: Callable[[], object], *, after: int
) -> None:
    """Make `event` happen once, when the export has made its file's piece `after` (0: the header, before
    any page of rows is read)."""
    real_pieces = exports._csv_pieces
    happened = []

    def pieces(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        for written, piece in enumerate(real_pieces(*args, **kwargs)):
            if written == after and not happened:
                happened.append(True)  # before the event, which may export too
                event()
            yield piece

    monkeypatch.setattr(exports, "_csv_pieces", pieces)


def delete_whole(storage: Storage, dataset: datasets.Dataset) -> None:
    """Delete a dataset from start to end, as the delete worker does."""
    delete_id = datasets.request_delete(storage=storage, principal=OWNER, dataset_id=dataset.id)
    assert datasets.delete_dataset(storage=storage, job_id=delete_id) == jobs.COMPLETED


def exported_ids(storage: Storage, job_id: str) -> list[int]:
    content = storage.blobs.get_blob_client(EXPORTS_CONTAINER, f"{job_id}.csv").download_blob().readall()
    records = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert records[0] == ["id", "v"]
    assert all(record == [record[0], f"x{record[0]}"] for record in records[1:])
    return sorted(int(record[0]) for record in records[1:])


def export_blob_exists(storage: Storage, job_id: str) -> bool:
    return bool(storage.blobs.get_blob_client(EXPORTS_CONTAINER, f"{job_id}.csv").exists())


def test_a_replace_switching_tables_before_the_first_page_exports_the_new_rows(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = dataset_with_rows(storage, 300)
    replace = applied_import(storage, dataset.id, csv_rows(1_000, 200), mode="replace")
    export = exports.start_export(storage=storage, principal=OWNER, dataset_id=dataset.id, body={})

    # The export has read the dataset (the old table); the replace finishes, switches and drops the old table.
    run_once_while_exporting(
        monkeypatch, lambda: imports.finalize_import(storage=storage, job_id=replace.id), after=0
    )
    assert exports.run_export(storage=storage, job_id=export.id) == jobs.COMPLETED

    switched = datasets.load_dataset(storage, dataset.id)
    assert switched is not None and switched.rows_table != dataset.rows_table and switched.row_count == 200
    assert not list(
        storage.tables.query_tables("TableName eq @name", parameters={"name": dataset.rows_table})
    )
    job = jobs.load_job(storage, export.id)
    assert job is not None and job.get("rows") == 200
    assert exported_ids(storage, export.id) == list(range(1_000, 1_200))


def test_a_replace_switching_tables_part_way_restarts_the_file_from_the_new_rows(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = dataset_with_rows(storage, 1_200)  # two pages of 1,000
    replace = applied_import(storage, dataset.id, csv_rows(5_000, 200), mode="replace")
    export = exports.start_export(storage=storage, principal=OWNER, dataset_id=dataset.id, body={})

    # 500 old rows are already in the file's first blocks when the old table goes; the next page is a 404.
    monkeypatch.setattr(exports, "ROWS_PER_PIECE", 500)
    run_once_while_exporting(
        monkeypatch, lambda: imports.finalize_import(storage=storage, job_id=replace.id), after=1
    )
    assert exports.run_export(storage=storage, job_id=export.id) == jobs.COMPLETED

    job = jobs.load_job(storage, export.id)
    assert job is not None and job.get("rows") == 200
    assert exported_ids(storage, export.id) == list(range(5_000, 5_200))  # one generation, no old rows


def test_a_delete_before_the_first_page_leaves_no_export(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = dataset_with_rows(storage, 50)
    export = exports.start_export(storage=storage, principal=OWNER, dataset_id=dataset.id, body={})
    run_once_while_exporting(monkeypatch, lambda: delete_whole(storage, dataset), after=0)
    assert exports.run_export(storage=storage, job_id=export.id) == "missing"
    assert jobs.load_job(storage, export.id) is None
    assert not export_blob_exists(storage, export.id)  # nothing of the deleted dataset outlives it


def test_a_delete_after_the_rows_were_read_leaves_no_file(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = dataset_with_rows(storage, 50)
    export = exports.start_export(storage=storage, principal=OWNER, dataset_id=dataset.id, body={})
    run_once_while_exporting(monkeypatch, lambda: delete_whole(storage, dataset), after=1)  # rows read
    assert exports.run_export(storage=storage, job_id=export.id) == "missing"
    assert not export_blob_exists(storage, export.id)


def test_a_delete_under_way_before_the_first_page_fails_the_export_instead_of_completing_it_empty(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "empty", "schema": SCHEMA})
    nothing = exports.start_export(storage=storage, principal=OWNER, dataset_id=empty.id, body={})
    assert exports.run_export(storage=storage, job_id=nothing.id) == jobs.COMPLETED  # no table: header only
    assert exported_ids(storage, nothing.id) == []

    dataset = dataset_with_rows(storage, 50)
    export = exports.start_export(storage=storage, principal=OWNER, dataset_id=dataset.id, body={})
    delete_id = ""

    def start_deleting() -> None:
        # The delete's first step: the dataset is `deleting` and its rows tables are gone; its jobs remain.
        nonlocal delete_id
        delete_id = datasets.request_delete(storage=storage, principal=OWNER, dataset_id=dataset.id)
        for table in storage.tables.list_tables():
            if table.name.startswith(rows.rows_table_prefix(dataset.id)):
                storage.tables.delete_table(table.name)

    run_once_while_exporting(monkeypatch, start_deleting, after=0)
    assert exports.run_export(storage=storage, job_id=export.id) == jobs.FAILED
    job = jobs.load_job(storage, export.id)
    assert job is not None and job.status == jobs.FAILED and job.get("error") == exports.DATASET_DELETED
    assert not export_blob_exists(storage, export.id)
    assert exports.run_export(storage=storage, job_id=export.id) == jobs.FAILED  # a repeat delivery

    assert datasets.delete_dataset(storage=storage, job_id=delete_id) == jobs.COMPLETED
    assert jobs.load_job(storage, export.id) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Müller 2024", "Muller-2024-j.csv"),
        ("日本", "dataset-j.csv"),
        ('a/b\\c"d', "a-b-c-d-j.csv"),
        ("ﬁle", "file-j.csv"),
    ],
)
def test_an_export_file_name_is_plain_ascii(name: str, expected: str) -> None:
    assert exports.export_file_name(name, "j") == expected


def one_slice(storage: Storage, job_id: str) -> str:
    """Run one slice of an export (with slices of no time, a page of rows), as its worker does."""
    return exports.run_export(storage=storage, job_id=job_id, slice_seconds=0)


def export_in_slices(storage: Storage, job_id: str, *, most: int = 50) -> tuple[str, int]:
    """Run an export slice after slice, as its worker does on each command; return (status, slices)."""
    for slices in range(1, most + 1):
        status = one_slice(storage, job_id)
        if status != jobs.RUNNING:
            return status, slices
    raise AssertionError(f"the export did not finish in {most} slices")


def commands_sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the job ids whose commands are sent (and send them)."""
    sent: list[str] = []
    real_send = jobs.send_command

    def send(storage: Storage, **kwargs: Any) -> bool:
        sent.append(kwargs["job_id"])
        return real_send(storage, **kwargs)

    monkeypatch.setattr(jobs, "send_command", send)
    return sent


def paged_export(
    storage: Storage, monkeypatch: pytest.MonkeyPatch, count: int
) -> tuple[datasets.Dataset, jobs.Job]:
    """Start an export of a new dataset of `count` rows, read in pages of 500."""
    dataset = dataset_with_rows(storage, count)
    monkeypatch.setattr(exports, "ROWS_PER_PIECE", 500)
    return dataset, exports.start_export(storage=storage, principal=OWNER, dataset_id=dataset.id, body={})


def file_progress(storage: Storage, job_id: str) -> dict[str, Any]:
    """Return how far an export's file got, as its last commit recorded it in the file's metadata."""
    found = storage.blobs.get_blob_client(EXPORTS_CONTAINER, f"{job_id}.csv").get_blob_properties()
    progress: dict[str, Any] = json.loads(found.metadata["progress"])
    return progress


def export_content(storage: Storage, job_id: str) -> bytes:
    return bytes(storage.blobs.get_blob_client(EXPORTS_CONTAINER, f"{job_id}.csv").download_blob().readall())


def test_an_export_in_slices_writes_the_file_one_slice_writes(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, sliced = paged_export(storage, monkeypatch, 2_300)
    monkeypatch.setattr(exports, "BLOCK_BYTES", 3_000)  # a page (~6 KB) fills a block
    whole = exports.start_export(storage=storage, principal=OWNER, dataset_id=dataset.id, body={})
    assert exports.run_export(storage=storage, job_id=whole.id) == jobs.COMPLETED  # no slices: at once

    sent = commands_sent(monkeypatch)
    status, slices = export_in_slices(storage, sliced.id)
    assert status == jobs.COMPLETED and slices == 5  # 2,300 rows, a page of 500 a slice
    assert sent == [sliced.id] * 4  # each slice but the last sent the command for the next
    assert not list(jobs.partition_rows(storage, dataset.id, jobs.outbox_row(sliced.id)))  # and cleared it
    assert export_content(storage, sliced.id) == export_content(storage, whole.id)
    assert exported_ids(storage, sliced.id) == list(range(1, 2_301))
    job = jobs.load_job(storage, sliced.id)
    assert job is not None and job.get("rows") == 2_300
    progress = file_progress(storage, sliced.id)
    assert progress["done"] and progress["rows"] == 2_300 and progress["blocks"] == 5
    assert exports.run_export(storage=storage, job_id=sliced.id) == jobs.COMPLETED  # a repeat delivery


def test_a_delivery_racing_another_of_the_same_slice_stops_and_the_file_stays_whole(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, export = paged_export(storage, monkeypatch, 1_500)
    ahead: list[str] = []
    # The same command, delivered twice: the other delivery runs a whole slice while this one reads.
    run_once_while_exporting(monkeypatch, lambda: ahead.append(one_slice(storage, export.id)), after=1)
    sent = commands_sent(monkeypatch)
    late = one_slice(storage, export.id)
    assert ahead == [jobs.RUNNING] and late == jobs.RUNNING
    assert sent == [export.id]  # the other delivery's command for the next slice; this one stood down
    monkeypatch.undo()
    finished = exports.run_export(storage=storage, job_id=export.id)  # the next slice, to the end
    assert finished == jobs.COMPLETED
    assert exported_ids(storage, export.id) == list(range(1, 1_501))


def test_blocks_an_earlier_version_left_uncommitted_do_not_stop_an_export(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    for committed_before in (False, True):
        _, export = paged_export(storage, monkeypatch, 700)
        blob = storage.blobs.get_blob_client(EXPORTS_CONTAINER, f"{export.id}.csv")
        if committed_before:  # a whole file written the old way (no progress in its metadata) ...
            blob.upload_blob(b"id,v\r\n1,x1\r\n")
        blob.stage_block("0" * 48, b"id,v\r\n1,x1\r\n")  # ... and blocks as upload_blob names them
        status, _ = export_in_slices(storage, export.id)
        assert status == jobs.COMPLETED
        assert exported_ids(storage, export.id) == list(range(1, 701))


def test_a_delete_goes_on_when_an_exports_command_leaves_the_outbox_under_it(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, export = paged_export(storage, monkeypatch, 700)
    with monkeypatch.context() as patched:  # the slice's lease on its command stays in the outbox
        patched.setattr(jobs, "send_command", lambda *args, **kwargs: False)
        assert one_slice(storage, export.id) == jobs.RUNNING
    delete_id = datasets.request_delete(storage=storage, principal=OWNER, dataset_id=dataset.id)
    real_delete_job_data = datasets._delete_job_data

    def swept_meanwhile(*args: Any, **kwargs: Any) -> None:  # after the delete listed the partition
        with contextlib.suppress(ResourceNotFoundError):
            jobs.datasets_table(storage).delete_entity(dataset.id, jobs.outbox_row(export.id))
        real_delete_job_data(*args, **kwargs)

    monkeypatch.setattr(datasets, "_delete_job_data", swept_meanwhile)
    assert datasets.delete_dataset(storage=storage, job_id=delete_id) == jobs.COMPLETED
    assert datasets.load_dataset(storage, dataset.id) is None


def test_a_replace_switching_tables_between_slices_starts_the_file_again_from_the_new_rows(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, export = paged_export(storage, monkeypatch, 1_200)
    replace = applied_import(storage, dataset.id, csv_rows(7_000, 300), mode="replace")
    assert one_slice(storage, export.id) == jobs.RUNNING  # the header and 500 of the old rows
    assert imports.finalize_import(storage=storage, job_id=replace.id) == {"status": jobs.COMPLETED}
    status, _ = export_in_slices(storage, export.id)
    assert status == jobs.COMPLETED
    assert exported_ids(storage, export.id) == list(range(7_000, 7_300))  # one generation, no old rows
    job = jobs.load_job(storage, export.id)
    assert job is not None and job.get("rows") == 300
    assert file_progress(storage, export.id)["switches"] == 1


def test_a_slice_that_died_before_sending_the_next_command_leaves_it_to_the_outbox_sweeper(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, export = paged_export(storage, monkeypatch, 1_200)
    assert one_slice(storage, export.id) == jobs.RUNNING
    with monkeypatch.context() as patched:

        def killed(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("killed after committing its slice, before sending the next command")

        patched.setattr(jobs, "send_command", killed)
        with pytest.raises(RuntimeError, match="killed"):
            one_slice(storage, export.id)
    assert file_progress(storage, export.id)["rows"] == 1_000  # the file records both slices
    [outbox] = jobs.partition_rows(storage, dataset.id, jobs.outbox_row(export.id))
    assert outbox["queue"] == EXPORT_QUEUE  # the slice's lease on the command, never cleared
    jobs.sweep_outbox(storage, at=jobs.now() + timedelta(minutes=5))
    assert not list(jobs.partition_rows(storage, dataset.id, jobs.outbox_row(export.id)))  # sent
    status, slices = export_in_slices(storage, export.id)  # what the sent command does
    assert status == jobs.COMPLETED and slices == 1  # it goes on from the file: the last 200 rows
    assert exported_ids(storage, export.id) == list(range(1, 1_201))
    assert not list(jobs.partition_rows(storage, dataset.id, jobs.outbox_row(export.id)))  # none left


def test_a_delivery_that_read_the_file_before_another_finished_it_leaves_the_file_whole(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, export = paged_export(storage, monkeypatch, 1_200)
    assert one_slice(storage, export.id) == jobs.RUNNING
    assert one_slice(storage, export.id) == jobs.RUNNING
    finished: list[str] = []
    # A stale delivery reads the file (1,000 rows in); the other finishes and completes the export meanwhile.
    run_once_while_exporting(monkeypatch, lambda: finished.append(one_slice(storage, export.id)), after=0)
    assert one_slice(storage, export.id) == jobs.COMPLETED  # it stood down: its commit found the file changed
    assert finished == [jobs.COMPLETED]
    assert exported_ids(storage, export.id) == list(range(1, 1_201))
    job = jobs.load_job(storage, export.id)
    assert job is not None and job.get("rows") == 1_200


def test_an_export_given_up_on_keeps_no_part_written_file(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, export = paged_export(storage, monkeypatch, 1_200)
    assert one_slice(storage, export.id) == jobs.RUNNING
    assert export_blob_exists(storage, export.id)  # the header and 500 rows, so far
    assert exports.fail_export(storage=storage, job_id=export.id, error="gave up") == jobs.FAILED
    assert not export_blob_exists(storage, export.id)
    assert one_slice(storage, export.id) == jobs.FAILED  # a delivery still on its way does nothing
    assert not export_blob_exists(storage, export.id)


def test_an_export_past_the_blob_block_limit_fails_at_once_and_says_why(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, export = paged_export(storage, monkeypatch, 1_200)
    monkeypatch.setattr(exports, "MAX_BLOCKS", 2)  # slices of no time add a block each: 3 are needed
    status, slices = export_in_slices(storage, export.id)
    assert (status, slices) == (jobs.FAILED, 3)
    job = jobs.load_job(storage, export.id)
    assert job is not None and job.get("error") == exports.TOO_MANY_BLOCKS
    assert "LOADBAY_EXPORT_SLICE_SECONDS" in exports.TOO_MANY_BLOCKS
    assert not export_blob_exists(storage, export.id)
    assert not list(jobs.partition_rows(storage, dataset.id, jobs.outbox_row(export.id)))  # nothing to resend


def test_an_export_whose_rows_keep_being_replaced_fails_and_says_why(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, export = paged_export(storage, monkeypatch, 1_200)
    monkeypatch.setattr(exports, "MAX_TABLE_SWITCHES", 0)
    replace = applied_import(storage, dataset.id, csv_rows(7_000, 300), mode="replace")
    assert one_slice(storage, export.id) == jobs.RUNNING
    assert imports.finalize_import(storage=storage, job_id=replace.id) == {"status": jobs.COMPLETED}
    assert one_slice(storage, export.id) == jobs.FAILED
    job = jobs.load_job(storage, export.id)
    assert job is not None and job.get("error") == exports.KEPT_SWITCHING
    assert not export_blob_exists(storage, export.id)
    assert not list(jobs.partition_rows(storage, dataset.id, jobs.outbox_row(export.id)))
