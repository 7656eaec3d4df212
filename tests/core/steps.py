"""An import's steps called one by one, as its orchestration would, for tests that act between them."""

from __future__ import annotations

from typing import Any

from core import imports, jobs, uploads
from core.auth import Principal
from core.settings import Settings
from core.storage import Storage


def run_to_review(
    storage: Storage,
    owner: Principal,
    dataset_id: str,
    body: bytes,
    *,
    mode: str = "insert",
    settings: Settings | None = None,
) -> tuple[jobs.Job, dict[str, Any], dict[str, Any]]:
    """Upload `body`, import it (autoApply) and run the steps up to the review; return (job, plan, review
    step): the plan, the chunks, the key buckets and the groups of partitions that look keys up."""
    settings = settings or Settings(storage=storage.config)
    upload = uploads.store_upload(
        storage=storage, settings=settings, owner=owner, file_name="f.csv", body=body
    )
    assert (
        uploads.profile_upload(storage=storage, settings=settings, upload_id=upload["id"]) == uploads.PROFILED
    )
    job = imports.start_import(
        storage=storage,
        settings=settings,
        principal=owner,
        dataset_id=dataset_id,
        body={"uploadId": upload["id"], "mode": mode, "autoApply": True},
    )
    plan = imports.plan_import(storage=storage, settings=settings, job_id=job.id)
    for index in range(plan["chunks"]):
        imports.validate_chunk(storage=storage, job_id=job.id, index=index)
    for bucket in range(plan["buckets"]):
        imports.merge_key_bucket(storage=storage, job_id=job.id, bucket=bucket)
    for group in range(plan["groups"]):
        imports.check_existing_keys(storage=storage, job_id=job.id, group=group)
    return job, plan, imports.review_import(storage=storage, job_id=job.id)


def import_to_review(
    storage: Storage,
    owner: Principal,
    dataset_id: str,
    body: bytes,
    *,
    mode: str = "insert",
    settings: Settings | None = None,
) -> tuple[jobs.Job, int]:
    """Run an import of `body` up to its review, as run_to_review does; return (job, chunks).

    The file must be all valid rows: the review then says to apply.
    """
    job, plan, step = run_to_review(storage, owner, dataset_id, body, mode=mode, settings=settings)
    assert step["next"] == "apply"
    return job, plan["chunks"]


def apply_and_finish(storage: Storage, job_id: str, chunks: int) -> list[dict[str, Any]]:
    """Apply every chunk of an import and finish it (it must complete); return its rows table's rows."""
    for index in range(chunks):
        imports.apply_chunk(storage=storage, job_id=job_id, index=index)
    assert imports.finalize_import(storage=storage, job_id=job_id) == {"status": jobs.COMPLETED}
    job = jobs.load_job(storage, job_id)
    assert job is not None
    return list(storage.tables.get_table_client(job.get("rowsTable")).list_entities())
