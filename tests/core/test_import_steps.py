"""An import's steps called one by one against the session's real Azurite, where timing matters."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core import datasets, exports, imports, jobs, uploads, validation
from core.auth import Principal
from core.errors import Conflict, Invalid, NotFound
from core.settings import Settings
from core.storage import UPLOADS_CONTAINER, WORK_CONTAINER, Storage
from tests.core.steps import apply_and_finish, import_to_review

OWNER = Principal(user_id="race-test", user_details="r", identity_provider="aad", roles=frozenset())
SCHEMA = {"fields": [{"name": "id", "type": "integer"}], "primaryKey": "id"}


def started_import(storage: Storage) -> jobs.Job:
    """Start an import of a file with one invalid row (so it would wait for a review)."""
    settings = Settings(storage=storage.config)
    dataset = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "race", "schema": SCHEMA})
    upload = uploads.store_upload(
        storage=storage, settings=settings, owner=OWNER, file_name="race.csv", body=b"id\n1\n2\nx\n"
    )
    profiled = uploads.profile_upload(storage=storage, settings=settings, upload_id=upload["id"])
    assert profiled == uploads.PROFILED
    return imports.start_import(
        storage=storage,
        settings=settings,
        principal=OWNER,
        dataset_id=dataset.id,
        body={"uploadId": upload["id"]},
    )


def validated_import(storage: Storage) -> jobs.Job:
    """Run an import's steps up to its review."""
    job = started_import(storage)
    plan = imports.plan_import(storage=storage, settings=Settings(storage=storage.config), job_id=job.id)
    for index in range(plan["chunks"]):
        imports.validate_chunk(storage=storage, job_id=job.id, index=index)
    for bucket in range(plan["buckets"]):
        imports.merge_key_bucket(storage=storage, job_id=job.id, bucket=bucket)
    return job


def test_a_cancel_while_the_review_counts_cancels_the_import(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = validated_import(storage)
    counted = imports._summed

    def count_then_cancel(storage_: Storage, job_: jobs.Job) -> dict[str, Any]:
        totals = counted(storage_, job_)
        imports.record_decision(storage=storage, principal=OWNER, job_id=job.id, action="cancel")
        return totals

    monkeypatch.setattr(imports, "_summed", count_then_cancel)
    assert imports.review_import(storage=storage, job_id=job.id) == {"next": "stop", "status": jobs.CANCELLED}
    ended = jobs.load_job(storage, job.id)
    assert ended is not None and ended.status == jobs.CANCELLED
    dataset = datasets.load_dataset(storage, job.dataset_id)
    assert dataset is not None and dataset.active_job == ""  # released: a new import may start


def test_a_file_written_again_after_its_commit_fails_the_import_with_a_reason(storage: Storage) -> None:
    job = started_import(storage)
    upload_id = job.get("uploadId")
    storage.blobs.get_blob_client(UPLOADS_CONTAINER, upload_id).upload_blob(b"id\n7\n", overwrite=True)
    plan = imports.plan_import(storage=storage, settings=Settings(storage=storage.config), job_id=job.id)
    assert plan == {"stop": jobs.FAILED}
    ended = jobs.load_job(storage, job.id)
    assert ended is not None and ended.status == jobs.FAILED
    assert ended.get("error") == imports.FILE_CHANGED
    dataset = datasets.load_dataset(storage, job.dataset_id)
    assert dataset is not None and dataset.active_job == "" and dataset.row_count == 0


def test_a_file_written_again_while_validating_fails_the_import_with_a_reason(storage: Storage) -> None:
    job = started_import(storage)
    plan = imports.plan_import(storage=storage, settings=Settings(storage=storage.config), job_id=job.id)
    assert plan["chunks"] == 1
    storage.blobs.get_blob_client(UPLOADS_CONTAINER, job.get("uploadId")).upload_blob(
        b"id\n7\n", overwrite=True
    )
    assert imports.validate_chunk(storage=storage, job_id=job.id, index=0) == {"cancelled": True}
    running = jobs.load_job(storage, job.id)  # it ends once every chunk has ended, so nothing is missed
    assert running is not None and running.status == jobs.VALIDATING
    assert imports.validate_chunk(storage=storage, job_id=job.id, index=0) == {"cancelled": True}  # again
    assert imports.review_import(storage=storage, job_id=job.id) == {"next": "stop", "status": jobs.FAILED}
    ended = jobs.load_job(storage, job.id)
    assert ended is not None and ended.get("error") == imports.FILE_CHANGED


def test_what_a_chunk_or_bucket_stores_after_the_import_ended_is_dropped(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = started_import(storage)
    plan = imports.plan_import(storage=storage, settings=Settings(storage=storage.config), job_id=job.id)
    assert plan["buckets"] > 0
    work = storage.blobs.get_container_client(WORK_CONTAINER)
    store, merge = imports._store_key_buckets, imports.merge_keys

    def fail_then_store(storage_: Storage, job_: jobs.Job, index: int, digests: Any) -> list[list[int]]:
        # Another chunk failed the import (and cleaned up) while this one was validating.
        imports.fail_import(storage=storage, job_id=job.id, error="another chunk failed")
        return store(storage_, job_, index, digests)

    monkeypatch.setattr(imports, "_store_key_buckets", fail_then_store)
    imports.validate_chunk(storage=storage, job_id=job.id, index=0)
    assert not list(work.list_blobs(name_starts_with=f"{job.id}/"))

    # An attempt that stored its key runs after the clean-up and then crashed: the retry drops them.
    imports._work_blob(storage, job.id, "keys-00000").upload_blob(b"[]\n")
    assert imports.validate_chunk(storage=storage, job_id=job.id, index=0) == {"cancelled": True}
    assert not list(work.list_blobs(name_starts_with=f"{job.id}/"))

    # The same for a key bucket whose import ended while it merged.
    second = started_import(storage)
    imports.plan_import(storage=storage, settings=Settings(storage=storage.config), job_id=second.id)
    monkeypatch.setattr(imports, "_store_key_buckets", store)
    imports.validate_chunk(storage=storage, job_id=second.id, index=0)

    def fail_then_merge(digests: Any) -> Any:
        imports.fail_import(storage=storage, job_id=second.id, error="another bucket failed")
        return merge(digests)

    monkeypatch.setattr(imports, "merge_keys", fail_then_merge)
    imports.merge_key_bucket(storage=storage, job_id=second.id, bucket=0)
    assert not list(work.list_blobs(name_starts_with=f"{second.id}/"))
    imports._work_blob(storage, second.id, "dups-00000").upload_blob(b"[]")
    assert imports.merge_key_bucket(storage=storage, job_id=second.id, bucket=0) == {"cancelled": True}
    assert not list(work.list_blobs(name_starts_with=f"{second.id}/"))


def patterned_import_to_review(storage: Storage) -> tuple[datasets.Dataset, jobs.Job]:
    """Validate an import of two valid rows whose pattern is matched in a child process, to its review."""
    schema = {
        "fields": [
            {"name": "id", "type": "integer"},
            {"name": "code", "type": "string", "constraints": {"pattern": "(a|b)+"}},  # to a child
        ],
        "primaryKey": "id",
    }
    dataset = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "slow", "schema": schema})
    settings = Settings(storage=storage.config)
    job, _ = import_to_review(storage, OWNER, dataset.id, b"id,code\n1,ab\n2,ba\n", settings=settings)
    return dataset, job


def test_a_pattern_out_of_time_while_applying_fails_the_import_with_its_message(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, job = patterned_import_to_review(storage)

    validated_before_this_version(storage, job, 0)  # so applying validates the chunk again
    monkeypatch.setattr(validation, "PATTERN_BATCH_SECONDS", 0.0)  # validating passed; applying runs out
    assert imports.apply_chunk(storage=storage, job_id=job.id, index=0) == {"cancelled": True}
    assert imports.finalize_import(storage=storage, job_id=job.id) == {"status": jobs.FAILED}
    ended = jobs.load_job(storage, job.id)
    assert ended is not None and ended.status == jobs.FAILED
    assert ended.get("error", "").startswith(
        'Checking the schema\'s missing values (""): '
        'The pattern of field "code" ("(a|b)+") took longer than 0 seconds'
    )
    released = datasets.load_dataset(storage, dataset.id)
    assert released is not None and released.active_job == "" and released.row_count == 0


def validated_before_this_version(storage: Storage, job: jobs.Job, index: int) -> None:
    """Drop the valid rows a chunk's validation encoded, as an earlier version did not keep them."""
    storage.blobs.get_blob_client(WORK_CONTAINER, f"{job.id}/{imports._rows_name(index)}").delete_blob()


def test_validating_a_chunk_again_keeps_the_rows_an_earlier_run_stored(storage: Storage) -> None:
    job = validated_import(storage)
    encoded = storage.blobs.get_blob_client(WORK_CONTAINER, f"{job.id}/{imports._rows_name(0)}")
    stored = encoded.get_blob_properties().etag
    assert imports.validate_chunk(storage=storage, job_id=job.id, index=0)["rows"] == 3  # a late repeat
    assert encoded.get_blob_properties().etag == stored  # not written again under an apply reading it


def test_applying_writes_the_rows_validated_without_reading_or_checking_the_file_again(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, job = patterned_import_to_review(storage)
    upload = storage.blobs.get_blob_client(UPLOADS_CONTAINER, job.get("uploadId"))
    upload.upload_blob(b"id,code\n1,zz\n", overwrite=True)  # written again after the review counted it
    monkeypatch.setattr(validation, "PATTERN_BATCH_SECONDS", 0.0)  # a pattern would run out of time now

    assert imports.apply_chunk(storage=storage, job_id=job.id, index=0) == {
        "rows": 2, "inserted": 2, "cancelled": False
    }  # fmt: skip
    assert imports.finalize_import(storage=storage, job_id=job.id) == {"status": jobs.COMPLETED}
    table = storage.tables.get_table_client(datasets.load_dataset(storage, dataset.id).rows_table)
    stored = {entity["RowKey"]: entity["code"] for entity in table.list_entities()}
    assert stored == {"1": "ab", "2": "ba"}  # what the review counted, not the file as it is now


def ready_to_apply(storage: Storage, rows: range, *, mode: str = "insert", chunk_rows: int = 10_000) -> Any:
    """Start and validate an import of valid rows (ids `rows`) into a new dataset; return (job, chunks)."""
    settings = Settings(storage=storage.config, chunk_rows=chunk_rows)
    dataset = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "apply", "schema": SCHEMA})
    return import_into(storage, dataset.id, rows, mode=mode, settings=settings)


def import_into(storage: Storage, dataset_id: str, rows: range, *, mode: str, settings: Settings) -> Any:
    body = ("id\n" + "".join(f"{number}\n" for number in rows)).encode()
    return import_to_review(storage, OWNER, dataset_id, body, mode=mode, settings=settings)


def stored_rows(storage: Storage, dataset_id: str) -> tuple[int, int]:
    """Return the dataset's row count and the number of rows its table holds."""
    dataset = datasets.load_dataset(storage, dataset_id)
    assert dataset is not None
    if dataset.rows_table not in [table.name for table in storage.tables.list_tables()]:
        return dataset.row_count, 0
    table = storage.tables.get_table_client(dataset.rows_table)
    return dataset.row_count, sum(1 for _ in table.list_entities(select=["RowKey"]))


class Killed(BaseException):
    """The process died (BaseException: nothing on the way catches it)."""


def test_rows_a_chunk_wrote_before_it_died_are_counted_when_a_cancel_stops_its_retry(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, _ = ready_to_apply(storage, range(1, 501))

    def killed(*_args: Any) -> None:
        raise Killed("after the rows were written, before the chunk counted them")

    with monkeypatch.context() as patched:
        patched.setattr(imports.rowerrors, "store", killed)
        with pytest.raises(Killed):
            imports.apply_chunk(storage=storage, job_id=job.id, index=0)
    imports.record_decision(storage=storage, principal=OWNER, job_id=job.id, action="cancel")
    assert imports.apply_chunk(storage=storage, job_id=job.id, index=0) == {"cancelled": True}  # the retry
    assert imports.finalize_import(storage=storage, job_id=job.id) == {"status": jobs.CANCELLED}
    ended = jobs.load_job(storage, job.id)
    assert ended is not None and ended.json_property("counts", {})["inserted"] == 500
    assert stored_rows(storage, job.dataset_id) == (500, 500)


@pytest.mark.parametrize("mode", ["insert", "replace"])
def test_a_file_written_again_while_applying_fails_the_import_once_every_chunk_stopped(
    storage: Storage, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    job, chunks = ready_to_apply(storage, range(1, 601), mode=mode, chunk_rows=300)
    assert chunks == 2
    validated_before_this_version(storage, job, 1)  # chunk 1 reads the file again
    write = imports._RowWriter._batch
    during: list[dict[str, Any]] = []

    def written_again_while_writing(writer: Any, batch: Any) -> Any:
        if not during:  # chunk 0 is writing; the file is written again and chunk 1 starts
            during.append({})
            upload = storage.blobs.get_blob_client(UPLOADS_CONTAINER, job.get("uploadId"))
            upload.upload_blob(b"id\n1\n", overwrite=True)
            during[0] = imports.apply_chunk(storage=storage, job_id=job.id, index=1)
            running = jobs.load_job(storage, job.id)
            assert running is not None and running.status == jobs.APPLYING  # not finished under chunk 0
        return write(writer, batch)

    monkeypatch.setattr(imports._RowWriter, "_batch", written_again_while_writing)
    imports.apply_chunk(storage=storage, job_id=job.id, index=0)
    assert during == [{"cancelled": True}]
    assert imports.finalize_import(storage=storage, job_id=job.id) == {"status": jobs.FAILED}
    ended = jobs.load_job(storage, job.id)
    assert ended is not None and ended.get("error") == imports.FILE_CHANGED
    count, held = stored_rows(storage, job.dataset_id)
    if mode == "insert":  # what chunk 0 wrote stays, and is counted
        assert count == held == ended.json_property("counts", {})["inserted"] > 0
    else:  # the dataset keeps its first (empty) table; the new one is gone, not filled again
        assert (count, held) == (0, 0)
        assert job.get("rowsTable") not in [table.name for table in storage.tables.list_tables()]


def test_a_cancel_accepted_while_a_replace_finishes_leaves_the_old_rows(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, chunks = ready_to_apply(storage, range(1, 51))
    for index in range(chunks):
        imports.apply_chunk(storage=storage, job_id=first.id, index=index)
    assert imports.finalize_import(storage=storage, job_id=first.id) == {"status": jobs.COMPLETED}
    settings = Settings(storage=storage.config)
    job, chunks = import_into(storage, first.dataset_id, range(1000, 1020), mode="replace", settings=settings)
    for index in range(chunks):
        imports.apply_chunk(storage=storage, job_id=job.id, index=index)
    count = imports._final_counts

    def cancelled_meanwhile(storage_: Storage, job_: jobs.Job) -> Any:
        if not job_.get("cancelRequested"):
            imports.record_decision(storage=storage, principal=OWNER, job_id=job.id, action="cancel")
        return count(storage_, job_)

    monkeypatch.setattr(imports, "_final_counts", cancelled_meanwhile)
    assert imports.finalize_import(storage=storage, job_id=job.id) == {"status": jobs.CANCELLED}
    assert stored_rows(storage, first.dataset_id) == (50, 50)
    ended = jobs.load_job(storage, job.id)
    assert ended is not None  # the 20 rows it wrote went with its table: none is said to be inserted
    assert json.loads(ended.get("counts")) == {
        "rows": 20,
        "valid": 20,
        "invalid": 0,
        "inserted": 0,
        "updated": 0,
        "unchanged": 0,
    }


def test_a_decision_after_the_review_window_is_refused(storage: Storage) -> None:
    job = validated_import(storage)
    assert imports.review_import(storage=storage, job_id=job.id)["next"] == "review"
    jobs.change_job(storage, job.id, lambda _: {"expiresAt": jobs.now()})
    with pytest.raises(Conflict, match="The review of this import ended at"):
        imports.record_decision(storage=storage, principal=OWNER, job_id=job.id, action="approve")
    cancelled = imports.record_decision(storage=storage, principal=OWNER, job_id=job.id, action="cancel")
    assert cancelled.get("cancelRequested")


def test_a_chunk_that_failed_on_every_retry_makes_the_others_stand_down(storage: Storage) -> None:
    job, chunks = ready_to_apply(storage, range(1, 601), chunk_rows=300)
    assert chunks == 2
    imports.stop_import(storage=storage, job_id=job.id)  # chunk 0 failed on every retry
    assert imports.apply_chunk(storage=storage, job_id=job.id, index=1) == {"cancelled": True}
    assert stored_rows(storage, job.dataset_id) == (0, 0)
    ended = imports.fail_import(storage=storage, job_id=job.id, error=imports.INTERNAL_FAILURE)
    assert ended == {"status": jobs.FAILED}


def test_a_finish_that_died_before_its_clean_up_is_cleaned_up_by_the_next_run(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, chunks = ready_to_apply(storage, range(1, 21))
    for index in range(chunks):
        imports.apply_chunk(storage=storage, job_id=first.id, index=index)
    imports.finalize_import(storage=storage, job_id=first.id)
    settings = Settings(storage=storage.config)
    job, chunks = import_into(storage, first.dataset_id, range(100, 110), mode="replace", settings=settings)
    for index in range(chunks):
        imports.apply_chunk(storage=storage, job_id=job.id, index=index)
    clean_up = imports._clean_up

    def killed(*_args: Any) -> None:
        raise Killed("after the switch, before the clean-up")

    with monkeypatch.context() as patched:
        patched.setattr(imports, "_clean_up", killed)
        with pytest.raises(Killed):
            imports.finalize_import(storage=storage, job_id=job.id)
    old_table = first.get("rowsTable")
    tables = [table.name for table in storage.tables.list_tables()]
    work = storage.blobs.get_container_client(WORK_CONTAINER)
    assert old_table in tables and list(work.list_blobs(name_starts_with=f"{job.id}/"))  # left behind
    assert imports._clean_up is clean_up
    assert imports.finalize_import(storage=storage, job_id=job.id) == {"status": jobs.COMPLETED}  # the retry
    assert old_table not in [table.name for table in storage.tables.list_tables()]
    assert not list(work.list_blobs(name_starts_with=f"{job.id}/"))
    assert stored_rows(storage, first.dataset_id) == (10, 10)


def test_repeating_a_decision_made_in_time_is_no_error_after_the_window(storage: Storage) -> None:
    job = validated_import(storage)
    assert imports.review_import(storage=storage, job_id=job.id)["next"] == "review"
    imports.record_decision(storage=storage, principal=OWNER, job_id=job.id, action="approve")
    jobs.change_job(storage, job.id, lambda _: {"expiresAt": jobs.now()})
    again = imports.record_decision(storage=storage, principal=OWNER, job_id=job.id, action="approve")
    assert again.get("decision") == "approved"
    with pytest.raises(Conflict, match="already approved"):
        imports.record_decision(storage=storage, principal=OWNER, job_id=job.id, action="reject")


def test_a_row_opening_with_u_feff_keeps_it_when_its_chunk_starts_there(storage: Storage) -> None:
    """Only the file's first bytes can hold a byte order mark: a chunk starting at such a row keeps it."""
    settings = Settings(storage=storage.config, chunk_rows=1)
    schema = {"fields": [{"name": "code", "type": "string"}], "primaryKey": "code"}
    dataset = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "bom", "schema": schema})
    body = "\ufeffcode\na\n\ufeffb\n".encode()  # a BOM, then a header and two rows
    job, chunks = import_to_review(storage, OWNER, dataset.id, body, settings=settings)
    assert chunks == 2
    stored = apply_and_finish(storage, job.id, chunks)
    assert sorted(entity["code"] for entity in stored) == ["a", "\ufeffb"]


def test_a_file_opening_with_an_excel_sep_line_imports_its_rows(storage: Storage) -> None:
    settings = Settings(storage=storage.config, chunk_rows=2)
    schema = {"fields": [{"name": "id", "type": "integer"}, {"name": "note", "type": "string"}]}
    dataset = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "sep", "schema": schema})
    body = "\ufeffsep=;\r\nid;note\r\n1;a,b\r\n2;c\r\n3;d\r\n".encode()
    job, chunks = import_to_review(storage, OWNER, dataset.id, body, settings=settings)
    assert chunks == 2
    stored = apply_and_finish(storage, job.id, chunks)
    assert sorted((entity["id"].value, entity["note"]) for entity in stored) == [
        (1, "a,b"),
        (2, "c"),
        (3, "d"),
    ]


def test_a_file_with_no_column_for_any_field_is_refused_before_any_work(storage: Storage) -> None:
    settings = Settings(storage=storage.config)
    schema = {"fields": [{"name": "id", "type": "integer"}, {"name": "n", "type": "integer"}]}
    dataset = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "none", "schema": schema})
    upload = uploads.store_upload(
        storage=storage, settings=settings, owner=OWNER, file_name="x.csv", body=b"x,y\n1,2\n3,4\n"
    )
    assert (
        uploads.profile_upload(storage=storage, settings=settings, upload_id=upload["id"]) == uploads.PROFILED
    )
    request = {"uploadId": upload["id"], "autoApply": True}
    with pytest.raises(Invalid) as refused:
        imports.start_import(
            storage=storage, settings=settings, principal=OWNER, dataset_id=dataset.id, body=request
        )
    assert refused.value.status == 422
    [problem] = refused.value.problems
    assert problem["code"] == "noMappedColumn"
    assert problem["message"] == (
        'None of the file\'s columns ("x", "y") matches a field of the dataset ("id", "n"): rename the '
        "columns, or map them with mapping {field: column}."
    )
    loaded = datasets.load_dataset(storage, dataset.id)
    assert loaded is not None and not loaded.active_job  # nothing started
    mapped = {**request, "mapping": {"id": "x"}}  # a mapping that feeds one field is enough
    job = imports.start_import(
        storage=storage, settings=settings, principal=OWNER, dataset_id=dataset.id, body=mapped
    )
    assert json.loads(job.get("mapping"))["fields"] == {"id": "x", "n": None}


def test_a_cancel_after_a_reject_is_refused_and_the_reject_stands(storage: Storage) -> None:
    job = validated_import(storage)
    assert imports.review_import(storage=storage, job_id=job.id)["next"] == "review"
    imports.record_decision(storage=storage, principal=OWNER, job_id=job.id, action="reject")
    with pytest.raises(Conflict, match="already rejected"):
        imports.record_decision(storage=storage, principal=OWNER, job_id=job.id, action="cancel")
    step = imports.decide_import(storage=storage, job_id=job.id, timed_out=False)
    assert step == {"next": "stop", "status": jobs.REJECTED}


def test_work_an_admin_started_on_a_dataset_is_its_owners_to_see_and_stop(storage: Storage) -> None:
    admin = Principal(
        user_id="race-admin", user_details="a", identity_provider="aad", roles=frozenset({"admin"})
    )
    stranger = Principal(user_id="race-other", user_details="o", identity_provider="aad", roles=frozenset())
    started = started_import(storage)  # OWNER's dataset and upload
    imports.record_decision(storage=storage, principal=OWNER, job_id=started.id, action="cancel")
    settings = Settings(storage=storage.config)
    upload = uploads.store_upload(
        storage=storage, settings=settings, owner=OWNER, file_name="a.csv", body=b"id\n1\n"
    )
    assert (
        uploads.profile_upload(storage=storage, settings=settings, upload_id=upload["id"]) == uploads.PROFILED
    )
    assert imports.finalize_import(storage=storage, job_id=started.id) == {"status": jobs.CANCELLED}
    job = imports.start_import(
        storage=storage,
        settings=settings,
        principal=admin,
        dataset_id=started.dataset_id,
        body={"uploadId": upload["id"]},
    )
    assert job.owner == admin.user_id
    assert imports.get_import(storage=storage, principal=OWNER, job_id=job.id).id == job.id
    imports.record_decision(storage=storage, principal=OWNER, job_id=job.id, action="cancel")
    with pytest.raises(NotFound):
        imports.get_import(storage=storage, principal=stranger, job_id=job.id)
    with pytest.raises(NotFound):
        imports.record_decision(storage=storage, principal=stranger, job_id=job.id, action="cancel")
    assert imports.finalize_import(storage=storage, job_id=job.id) == {"status": jobs.CANCELLED}
    export = exports.start_export(storage=storage, principal=admin, dataset_id=started.dataset_id, body={})
    assert jobs.job_for(storage, OWNER, export.id, kind=jobs.EXPORT).id == export.id
    with pytest.raises(NotFound):
        jobs.job_for(storage, stranger, export.id, kind=jobs.EXPORT)


def test_a_one_column_file_keeps_delimiters_beyond_its_sample_in_its_values(storage: Storage) -> None:
    schema = {"fields": [{"name": "name", "type": "string"}]}
    dataset = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "names", "schema": schema})
    names = [f"Doe{n}, Jane" for n in range(8_000)] + ["Smith; John", "Roe\tRichard", "A|B"]  # past 64 KiB
    settings = Settings(storage=storage.config, chunk_rows=3_000)
    job, chunks = import_to_review(
        storage, OWNER, dataset.id, ("name\n" + "\n".join(names) + "\n").encode(), settings=settings
    )
    stored = apply_and_finish(storage, job.id, chunks)
    assert sorted(entity["name"] for entity in stored) == sorted(names)
