"""An import's steps called one by one against the session's real Azurite, where timing matters."""

from __future__ import annotations

from typing import Any

import pytest

from core import datasets, imports, jobs, uploads, validation
from core.auth import Principal
from core.settings import Settings
from core.storage import UPLOADS_CONTAINER, WORK_CONTAINER, Storage

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
    assert imports.validate_chunk(storage=storage, job_id=job.id, index=0) == {"stop": jobs.FAILED}
    ended = jobs.load_job(storage, job.id)
    assert ended is not None and ended.get("error") == imports.FILE_CHANGED
    assert imports.review_import(storage=storage, job_id=job.id) == {"next": "stop"}  # the rest stands down


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


def test_a_pattern_out_of_time_while_applying_fails_the_import_with_its_message(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(storage=storage.config)
    schema = {
        "fields": [
            {"name": "id", "type": "integer"},
            {"name": "code", "type": "string", "constraints": {"pattern": "(a|b)+"}},  # to a child
        ],
        "primaryKey": "id",
    }
    dataset = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "slow", "schema": schema})
    upload = uploads.store_upload(
        storage=storage, settings=settings, owner=OWNER, file_name="slow.csv", body=b"id,code\n1,ab\n2,ba\n"
    )
    assert uploads.profile_upload(storage=storage, settings=settings, upload_id=upload["id"]) == "profiled"
    job = imports.start_import(
        storage=storage,
        settings=settings,
        principal=OWNER,
        dataset_id=dataset.id,
        body={"uploadId": upload["id"], "autoApply": True},
    )
    plan = imports.plan_import(storage=storage, settings=settings, job_id=job.id)
    for index in range(plan["chunks"]):
        imports.validate_chunk(storage=storage, job_id=job.id, index=index)
    for bucket in range(plan["buckets"]):
        imports.merge_key_bucket(storage=storage, job_id=job.id, bucket=bucket)
    assert imports.review_import(storage=storage, job_id=job.id)["next"] == "apply"

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
