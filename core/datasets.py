"""Datasets: create from a Table Schema or an upload's inferred schema, list, show, and ask to delete.

The dataset entity is the ``dataset`` row of its partition in the ``datasets`` table (see
``core.jobs``). ``rowsTable`` names the table its rows are in (``core.rows.rows_table_name``);
``activeJob`` is the import or delete that holds the dataset, so two never overlap.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableEntity

from core import jobs, rowerrors, rows, uploads
from core.auth import Principal
from core.errors import Conflict, Invalid, LimitExceeded, NotFound
from core.ids import is_id, new_id
from core.paging import decode_cursor, encode_cursor, first_page
from core.storage import DELETE_QUEUE, EXPORTS_CONTAINER, WORK_CONTAINER, Storage
from core.tableschema import TableSchema, parse_table_schema

log = logging.getLogger(__name__)

ACTIVE, DELETING = "active", "deleting"
MAX_NAME_CHARS: Final = 200
MAX_DESCRIPTION_CHARS: Final = 2_000
MAX_SCHEMA_CHARS: Final = 30_000  # a Table Storage string holds 32K UTF-16 code units


@dataclass(frozen=True)
class Dataset:
    """A dataset entity as read."""

    id: str
    owner: str
    name: str
    description: str
    schema: TableSchema
    status: str
    rows_table: str
    row_count: int
    active_job: str
    created_at: datetime
    updated_at: datetime
    etag: str

    @classmethod
    def from_entity(cls, entity: TableEntity) -> Dataset:
        return cls(
            id=entity["PartitionKey"],
            owner=entity["owner"],
            name=entity["name"],
            description=entity.get("description", ""),
            schema=_schema(entity["schema"]),
            status=entity["status"],
            rows_table=entity.get("rowsTable")
            or rows.rows_table_name(entity["PartitionKey"], entity["PartitionKey"]),
            row_count=int(entity.get("rowCount", 0)),
            active_job=entity.get("activeJob", ""),
            created_at=entity["createdAt"],
            updated_at=entity["updatedAt"],
            etag=str(entity.metadata["etag"]),
        )


@functools.lru_cache(maxsize=256)
def _schema(text: str) -> TableSchema:
    # Stored schemas were checked when written; caching by text spares workers a parse per chunk.
    return parse_table_schema(json.loads(text), stored=True)


def view(dataset: Dataset) -> dict[str, Any]:
    """Return the API view of a dataset."""
    return {
        "id": dataset.id,
        "name": dataset.name,
        "description": dataset.description,
        "status": dataset.status,
        "schema": dataset.schema.to_json(),
        "properties": dataset.schema.property_names(),
        "rowCount": dataset.row_count,
        "activeJob": dataset.active_job or None,
        "createdAt": jobs.iso(dataset.created_at),
        "updatedAt": jobs.iso(dataset.updated_at),
    }


def create_dataset(*, storage: Storage, owner: Principal, body: dict[str, Any]) -> Dataset:
    """Create a dataset from `{name, description?, schema}` or `{name, description?, fromUpload}`."""
    name = _text(body, "name", MAX_NAME_CHARS, required=True)
    description = _text(body, "description", MAX_DESCRIPTION_CHARS, required=False)
    has_schema, from_upload = "schema" in body, body.get("fromUpload")
    if has_schema == (from_upload is not None):
        raise Invalid(
            "Give either schema (a Table Schema) or fromUpload (the id of a profiled upload), not both.",
            problems=[{"field": "schema", "code": "required"}],
        )
    if has_schema:
        descriptor = body["schema"]
    else:
        descriptor = _inferred_schema(storage, owner, from_upload, body.get("primaryKey"))
    schema = parse_table_schema(descriptor)
    schema_text = json.dumps(schema.to_json(), separators=(",", ":"), ensure_ascii=False)
    _schema(schema_text)  # what is stored must read back: a dataset that cannot be loaded cannot be deleted
    if rows.utf16_units(schema_text) > MAX_SCHEMA_CHARS:
        raise LimitExceeded(
            f"The schema is {rows.utf16_units(schema_text):,} characters as JSON (characters beyond U+FFFF, "
            f"such as emoji, count twice); the limit is {MAX_SCHEMA_CHARS:,}."
        )
    moment = jobs.now()
    dataset_id = new_id()
    entity = {
        "PartitionKey": dataset_id,
        "RowKey": jobs.DATASET_ROW,
        "owner": owner.user_id,
        "name": name,
        "description": description,
        "schema": schema_text,
        "status": ACTIVE,
        "rowsTable": rows.rows_table_name(dataset_id, dataset_id),
        "rowCount": 0,
        "activeJob": "",
        "createdAt": moment,
        "updatedAt": moment,
    }
    jobs.datasets_table(storage).create_entity(entity)
    created = load_dataset(storage, dataset_id)
    assert created is not None
    return created


def _text(body: dict[str, Any], key: str, limit: int, *, required: bool) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise Invalid(f"{key} must be a non-empty string.", problems=[{"field": key, "code": "required"}])
    if len(value) > limit:
        raise Invalid(
            f"{key} is {len(value)} characters long; the limit is {limit}.",
            problems=[{"field": key, "code": "maxLength"}],
        )
    return value.strip()


def _inferred_schema(storage: Storage, owner: Principal, upload_id: object, primary_key: object) -> Any:
    if not isinstance(upload_id, str):
        raise Invalid("fromUpload must be an upload id.", problems=[{"field": "fromUpload", "code": "type"}])
    upload = uploads.get_upload(storage=storage, principal=owner, upload_id=upload_id)
    if upload.status != uploads.PROFILED:
        raise Conflict(
            f"Upload {upload_id} is {upload.status}; a dataset can be made from it once it is profiled."
        )
    descriptor = dict(uploads.describe_upload(storage=storage, upload=upload)["inferredSchema"])
    if primary_key is not None:
        descriptor["primaryKey"] = primary_key
    return descriptor


def load_dataset(storage: Storage, dataset_id: str) -> Dataset | None:
    """Load a dataset by id; None if there is none."""
    if not is_id(dataset_id):
        return None
    try:
        return Dataset.from_entity(jobs.datasets_table(storage).get_entity(dataset_id, jobs.DATASET_ROW))
    except ResourceNotFoundError:
        return None


def get_dataset(*, storage: Storage, principal: Principal, dataset_id: str) -> Dataset:
    """Load a dataset the caller may see; someone else's is reported as not found."""
    dataset = load_dataset(storage, dataset_id)
    if dataset is None or (dataset.owner != principal.user_id and not principal.is_admin):
        raise NotFound(f"There is no dataset {dataset_id!r}.")
    return dataset


def list_datasets(
    *, storage: Storage, principal: Principal, cursor: str | None, limit: int
) -> dict[str, Any]:
    """List the caller's datasets (an admin's: everyone's), a page at a time."""
    query = "RowKey eq @row"
    parameters: dict[str, Any] = {"row": jobs.DATASET_ROW}
    if not principal.is_admin:
        query += " and owner eq @owner"
        parameters["owner"] = principal.user_id
    query_pages = jobs.datasets_table(storage).query_entities(
        query, parameters=parameters, results_per_page=limit
    )
    entities, token = first_page(query_pages, decode_cursor(cursor))
    items = [view(dataset) for dataset in map(_readable, entities) if dataset is not None]
    return {"items": items, "next": encode_cursor(token)}


def _readable(entity: TableEntity) -> Dataset | None:
    """Read a listed dataset; one that cannot be read is logged and left out, not the whole list."""
    try:
        return Dataset.from_entity(entity)
    except (Invalid, KeyError, ValueError):  # a schema that no longer reads, or a row missing properties
        log.error("Dataset %s cannot be read; it is left out", entity.get("PartitionKey"), exc_info=True)
        return None


def request_delete(*, storage: Storage, principal: Principal, dataset_id: str) -> str:
    """Mark the dataset `deleting` and queue its deletion (rows, jobs, errors, exports); return the job id."""
    dataset = get_dataset(storage=storage, principal=principal, dataset_id=dataset_id)
    if dataset.status == DELETING:
        # Asked again: if the delete failed (its worker gave up), send it once more. One under way has
        # its command on the queue or in the outbox: another would only run beside it.
        requeued = jobs.change_job(
            storage,
            dataset.active_job,
            lambda job: {"status": jobs.QUEUED, "error": ""} if job.status == jobs.FAILED else None,
            command_to=DELETE_QUEUE,
        )
        if requeued is not None and requeued.outbox_etag:
            jobs.send_command(
                storage,
                dataset_id=dataset.id,
                job_id=dataset.active_job,
                queue=DELETE_QUEUE,
                traceparent=None,
                etag=requeued.outbox_etag,
            )
        return dataset.active_job
    if dataset.active_job:
        raise Conflict(
            f"Job {dataset.active_job} is working on this dataset; cancel it or wait for it to finish, "
            "then delete the dataset."
        )
    job = jobs.start_job(
        storage,
        dataset_id=dataset.id,
        kind=jobs.DELETE,
        owner=principal,
        queue=DELETE_QUEUE,
        fields={},
        conflict="The dataset changed meanwhile; try again.",
        claim_etag=dataset.etag,
        dataset_changes={"status": DELETING},
    )
    return job.id


def delete_dataset(*, storage: Storage, job_id: str) -> str:
    """Delete a dataset: its row tables, jobs' errors and files, then its partition. Safe to run twice."""
    job = jobs.load_job(storage, job_id)
    if job is None:
        _forget_finished_delete(storage, job_id)
        return "missing"
    if job.kind != jobs.DELETE:
        return "missing"
    dataset = load_dataset(storage, job.dataset_id)
    if dataset is None or dataset.active_job != job_id:
        return "missing"
    prefix = rows.rows_table_prefix(dataset.id)
    for table_item in storage.tables.list_tables():  # the current table and any a replace left behind
        if table_item.name.startswith(prefix):
            storage.tables.delete_table(table_item.name)
    table = jobs.datasets_table(storage)
    partition = list(table.query_entities("PartitionKey eq @pk", parameters={"pk": dataset.id}))
    for entity in partition:
        if entity["RowKey"].startswith("job-"):
            _delete_job_data(
                storage,
                entity["RowKey"].removeprefix("job-"),
                keep_index=entity["RowKey"] == jobs.job_row(job_id),
            )
    # The dataset row and this job's row go last, together, so a re-run after a crash still finds both
    # (without the job's row it would take the job for one long gone and leave the dataset `deleting`).
    last = {jobs.DATASET_ROW, jobs.job_row(job_id)}
    # Outbox rows come and go under a running export (its slice's lease): one by one, gone is fine.
    for entity in partition:
        if entity["RowKey"].startswith("outbox-"):
            with contextlib.suppress(ResourceNotFoundError):
                table.delete_entity(dataset.id, entity["RowKey"])
    others = [
        entity
        for entity in partition
        if entity["RowKey"] not in last and not entity["RowKey"].startswith("outbox-")
    ]
    for start in range(0, len(others), 100):
        table.submit_transaction([("delete", entity) for entity in others[start : start + 100]])
    table.submit_transaction(
        [("delete", {"PartitionKey": dataset.id, "RowKey": row_key}) for row_key in sorted(last)]
    )
    jobs.jobs_index(storage).delete_entity(job_id, "job")
    return jobs.COMPLETED


def _delete_job_data(storage: Storage, job_id: str, *, keep_index: bool) -> None:
    rowerrors.delete_all(storage, job_id)
    for container, prefix in ((WORK_CONTAINER, f"{job_id}/"), (EXPORTS_CONTAINER, f"{job_id}.csv")):
        client = storage.blobs.get_container_client(container)
        for blob in client.list_blobs(name_starts_with=prefix):
            with contextlib.suppress(ResourceNotFoundError):
                client.delete_blob(blob.name)
    if not keep_index:
        jobs.jobs_index(storage).delete_entity(job_id, "job")


def _forget_finished_delete(storage: Storage, job_id: str) -> None:
    """Drop the index row of a delete that died after removing its dataset and job, before its index row."""
    if not is_id(job_id):
        return
    index = jobs.jobs_index(storage)
    try:
        entity = index.get_entity(job_id, "job")
    except ResourceNotFoundError:
        return
    # A delete's index row is written before its job; while the dataset is there, the job may be coming.
    if entity.get("kind") == jobs.DELETE and load_dataset(storage, entity["datasetId"]) is None:
        index.delete_entity(job_id, "job")
