"""Imports: start one, show it, decide its review, and the idempotent steps its orchestration runs.

The job entity (``core.jobs``) is the truth users see. The steps, each safe to run twice:

1. ``plan_import``: read the file once, cut it into chunks of whole records (``core.chunking``) and
   record each chunk's byte range and first row; status ``validating``.
2. ``validate_chunk`` (in parallel): read only the chunk's bytes, validate them, store the row errors
   and the chunk's counts; with key constraints, store the chunk's sorted keys split into buckets.
3. ``merge_keys`` (one per bucket, in parallel): find keys used twice anywhere in the file; the later
   rows are invalid. Buckets hold ``KEYS_PER_BUCKET`` keys, so memory does not grow with the file.
4. ``review_import``: add the counts up; ``awaiting_review`` unless ``autoApply`` and nothing is
   invalid. The orchestration waits for a decision (``decide_import``) or the review window to end.
5. ``apply_chunk`` (in parallel): validate the chunk again (cheap next to writing), drop duplicates,
   and write the rows in transactions of ≤ 100 entities of one partition. Every row carries the job id
   and what the job did to it, so a re-run counts a row it wrote before the same way.
6. ``finalize_import``: counts, status, and in the same transaction the dataset's row count, its
   release and, for ``replace``, the switch to the new table.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import logging
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableTransactionError, TransactionOperation, UpdateMode

from core import datasets, jobs, rowerrors, rows, uploads
from core.auth import Principal
from core.chunking import ChunkPlan, chunk_encoding, plan_chunks
from core.csvformat import DecodedText, Dialect, read_records
from core.datasets import Dataset
from core.errors import BadRequest, Conflict, Invalid, LimitExceeded, NotFound
from core.ids import new_id
from core.jobs import Job
from core.mapping import ColumnMapping, map_columns
from core.paging import decode_cursor, encode_cursor, first_page
from core.patterns import PatternTooSlow
from core.settings import Settings
from core.storage import IMPORT_QUEUE, UPLOADS_CONTAINER, WORK_CONTAINER, Storage, retrying
from core.tablebatch import BatchRejected, BatchTooLarge, Encoded, entity_from_json, submit_batch
from core.tableschema import TableSchema
from core.validation import VALUE_CHARS, ChunkResult, KeyDigests, KeyRun, RowError, Validator, merge_keys

log = logging.getLogger(__name__)

MODES: Final = ("insert", "upsert", "replace")
DECISIONS: Final = {"approve": "approved", "reject": "rejected", "cancel": "cancelled"}
# Duplicate keys are spread over the whole file, so each bucket stores its few errors per row-error
# partition in small transactions: 4 buckets of 25,000 keys took 1.0 s of a 100,000-row import, one 0.4 s.
KEYS_PER_BUCKET: Final = 100_000
ALL_DUPS: Final = "dups-all"  # the union of the rows the key steps found invalid, stored by the review
# An insert into a dataset that has rows looks its keys up in the dataset before the review, in this many
# groups of the rows table's partitions (see check_existing_keys).
EXISTS_GROUPS: Final = 8
# A partition's keys are read one by one while they are at most this many per page a scan of the
# partition would read (a page: 1,000 keys); more, and the partition's key range is scanned instead.
POINT_READS_PER_PAGE: Final = 10  # on Azurite a page of 1,000 keys costs about as much as 19 reads
STORED_ERRORS_PER_CHUNK: Final = 2_000
STORED_ERRORS_PER_BUCKET: Final = 8_000  # a bucket takes the keys of ten default chunks
# Errors a group stores: a group's rows spread over the whole file, so every one stored is an upsert of its
# own in its row-error partition (100,000 errors took 22 s here). With 8 groups, as many as a key bucket.
STORED_ERRORS_PER_GROUP: Final = STORED_ERRORS_PER_BUCKET // EXISTS_GROUPS
MAX_CSV_ERRORS: Final = 100_000  # errors.csv is built in one request: bounded, about 20 MB at most
BATCH_ENTITIES: Final = 100  # Table Storage's transaction limit
INTERNAL_FAILURE: Final = (
    "The import stopped because of an internal error; the operators can look it up by its id."
)
FILE_CHANGED: Final = "The file was changed after it was committed; upload it again and start a new import."
MAX_HEADER_CHARS: Final = 30_000  # the job keeps the header and mapping as JSON: 32K UTF-16 units each
APPLY_THREADS: Final = 4  # per chunk; with 4 activities at once (host.json), 16 transactions in flight
CHECK_SECONDS: Final = 2.0  # how often a chunk's writer records progress and looks for a cancel
APPLY_PATTERN_PATIENCE: Final = 3.0  # see validation.PatternTime


# --- the front end -------------------------------------------------------------------------------


def start_import(
    *, storage: Storage, settings: Settings, principal: Principal, dataset_id: str, body: dict[str, Any]
) -> Job:
    """Check the request, then write the job, its command and the dataset's claim in one transaction."""
    dataset = datasets.get_dataset(storage=storage, principal=principal, dataset_id=dataset_id)
    upload_id, mode, explicit, auto_apply = _import_request(body, dataset.schema)
    upload = uploads.get_upload(storage=storage, principal=principal, upload_id=upload_id)
    if upload.status != uploads.PROFILED:
        raise Conflict(f"Upload {upload_id} is {upload.status}; it can be imported once it is profiled.")
    profile = uploads.describe_upload(storage=storage, upload=upload)
    header = [column["name"] for column in profile["columns"]]
    mapping = map_columns(dataset.schema, header, explicit)  # refused here, before any work starts
    if all(source is None for source in mapping.sources):
        raise Invalid(
            "No column of the file feeds a field of the dataset, so every row would be empty.",
            problems=[{"field": "mapping", "code": "noMappedColumn", "message": _no_column(header, dataset)}],
        )
    header_json = json.dumps(header, ensure_ascii=False)
    mapping_json = json.dumps(mapping.to_json(), ensure_ascii=False)
    longest = max(rows.utf16_units(header_json), rows.utf16_units(mapping_json))
    if longest > MAX_HEADER_CHARS:
        raise LimitExceeded(
            f"The file's column names are too long to import: they take {longest:,} characters as JSON "
            f"(characters beyond U+FFFF, such as emoji, count twice); the limit is {MAX_HEADER_CHARS:,}. "
            "Shorten the header row and upload the file again."
        )
    _claimable(dataset)
    job_id = new_id()
    fields = {
        "phase": "queued",
        "uploadId": upload.id,
        "fileName": upload.file_name,
        "blobEtag": upload.blob_etag or "",
        "mode": mode,
        "autoApply": auto_apply,
        "mapping": mapping_json,
        "header": header_json,
        "encoding": profile["encoding"],
        "dialect": json.dumps(profile["dialect"]),
        "rowsTotal": int(profile["rowCount"]),  # data rows; the plan counts them exactly
        "rowsTable": rows.rows_table_name(dataset.id, job_id) if mode == "replace" else dataset.rows_table,
        "startRowCount": dataset.row_count,
        "reviewSeconds": settings.review_seconds,
    }
    return jobs.start_job(
        storage,
        dataset_id=dataset.id,
        kind=jobs.IMPORT,
        owner=principal,
        queue=IMPORT_QUEUE,
        fields=fields,
        conflict="Another job started on this dataset meanwhile; try again.",
        claim_etag=dataset.etag,
        job_id=job_id,
    )


def _no_column(header: list[str], dataset: Dataset) -> str:
    def listed(names: Any) -> str:
        names = list(names)
        shown = ", ".join(f'"{name[:40]}"' for name in names[:5])
        return shown + (f" and {len(names) - 5:,} more" if len(names) > 5 else "")

    return (
        f"None of the file's columns ({listed(header)}) matches a field of the dataset "
        f"({listed(dataset.schema.field_names)}): rename the columns, or map them with mapping "
        "{field: column}."
    )


def _import_request(
    body: dict[str, Any], schema: TableSchema
) -> tuple[str, str, dict[str, Any] | None, bool]:
    problems: list[dict[str, Any]] = []
    upload_id = body.get("uploadId")
    if not isinstance(upload_id, str) or not upload_id:
        problems.append({"field": "uploadId", "code": "required", "message": "uploadId is required."})
    mode = body.get("mode", "insert")
    if mode not in MODES:
        problems.append(
            {"field": "mode", "code": "enum", "message": f"mode must be one of {', '.join(MODES)}."}
        )
    elif mode == "upsert" and not schema.primary_key:
        problems.append(
            {
                "field": "mode",
                "code": "needsPrimaryKey",
                "message": "upsert needs a schema with a primaryKey.",
            }
        )
    mapping = body.get("mapping")
    if mapping is not None and not isinstance(mapping, dict):
        problems.append({"field": "mapping", "code": "type", "message": "mapping must be {field: column}."})
    auto_apply = body.get("autoApply", False)
    if not isinstance(auto_apply, bool):
        problems.append({"field": "autoApply", "code": "type", "message": "autoApply must be true or false."})
    if problems:
        raise Invalid(
            "The import request is not valid: " + " ".join(p["message"] for p in problems), problems=problems
        )
    return str(upload_id), str(mode), mapping, bool(auto_apply)


def _claimable(dataset: Dataset) -> None:
    if dataset.status != datasets.ACTIVE:
        raise Conflict("This dataset is being deleted.")
    if dataset.active_job:
        raise Conflict(
            f"Import {dataset.active_job} is still working on this dataset; wait for it to finish, "
            "or cancel it, then start this import."
        )


def get_import(*, storage: Storage, principal: Principal, job_id: str) -> Job:
    """Load an import the caller may see."""
    return jobs.job_for(storage, principal, job_id, kind=jobs.IMPORT)


def import_view(storage: Storage, job: Job) -> dict[str, Any]:
    """Return the API view of an import, with live progress while it runs."""
    counts = job.json_property("counts", {})
    total, done = _progress(storage, job)
    view: dict[str, Any] = {
        "id": job.id,
        "datasetId": job.dataset_id,
        "uploadId": job.get("uploadId"),
        "fileName": job.get("fileName"),
        "mode": job.get("mode"),
        "autoApply": bool(job.get("autoApply")),
        "status": job.status,
        "phase": job.get("phase", job.status),
        "progress": {
            "done": done,
            "total": total,
            "percent": round(100 * done / total, 1) if total else 100.0,
        },
        "counts": {
            key: counts.get(key) for key in ("rows", "valid", "invalid", "inserted", "updated", "unchanged")
        },
        "errorSummary": job.json_property("errorSummary", []),
        "errorsStored": job.get("errorsStored"),
        "mapping": job.json_property("mapping", {}),
        "createdAt": jobs.iso(job.get("createdAt")),
        "updatedAt": jobs.iso(job.get("updatedAt")),
        "links": {
            "self": f"/api/imports/{job.id}",
            "errors": f"/api/imports/{job.id}/errors",
            "errorsCsv": f"/api/imports/{job.id}/errors.csv",
            "dataset": f"/api/datasets/{job.dataset_id}",
        },
    }
    for key in ("expiresAt", "decidedAt"):
        if job.get(key) is not None:
            view[key] = jobs.iso(job.get(key))
    if job.get("decision"):
        view["decision"] = job.get("decision")
    if job.get("error"):
        view["error"] = job.get("error")
    if job.get("cancelRequested") and job.status not in jobs.FINISHED:
        view["cancelRequested"] = True
    return view


def _progress(storage: Storage, job: Job) -> tuple[int, int]:
    """Return (total, done) rows of the current phase: validating counts all rows, applying valid ones."""
    counts = job.json_property("counts", {})
    phases = {
        jobs.VALIDATING: ("validatedRows", job.get("rowsTotal")),
        jobs.APPLYING: ("appliedRows", counts.get("valid")),
    }
    if job.status not in phases:
        total = int(counts.get("rows") or job.get("rowsTotal") or 0)
        return total, 0 if job.status == jobs.QUEUED else total
    key, total_rows = phases[job.status]
    total = int(total_rows or 0)
    done = sum(
        int(chunk.get(key, 0)) for chunk in jobs.partition_rows(storage, job.dataset_id, f"chunk-{job.id}-")
    )
    return total, min(done, total)


def list_imports(
    *, storage: Storage, principal: Principal, dataset_id: str, cursor: str | None, limit: int
) -> dict[str, Any]:
    """List a dataset's imports, newest first."""
    dataset = datasets.get_dataset(storage=storage, principal=principal, dataset_id=dataset_id)
    found = [jobs.Job.from_entity(e) for e in jobs.partition_rows(storage, dataset.id, "job-")]
    found = sorted((job for job in found if job.kind == jobs.IMPORT), key=lambda job: job.id, reverse=True)
    state = decode_cursor(cursor) or {}
    before = state.get("before")
    if before is not None and not isinstance(before, str):
        raise BadRequest("The cursor is not one this API handed out; start again without it.")
    if before is not None:
        found = [job for job in found if job.id < before]
    page = found[:limit]
    more = len(found) > limit
    return {
        "items": [import_view(storage, job) for job in page],
        "next": encode_cursor({"before": page[-1].id}) if more else None,
    }


def record_decision(*, storage: Storage, principal: Principal, job_id: str, action: str) -> Job:
    """Record approve / reject (review only) or cancel (any time before the end), and relay it."""
    job = get_import(storage=storage, principal=principal, job_id=job_id)
    decision = DECISIONS[action]

    def change(current: Job) -> dict[str, Any] | None:
        if current.status in jobs.FINISHED:
            raise Conflict(f"This import is already {current.status}; it can no longer be {decision}.")
        if action == "cancel":
            if current.get("cancelRequested"):
                return None
            if current.get("decision") == "rejected":  # on its way to `rejected`: that decision stands
                raise Conflict("This import was already rejected; it is ending.")
            fields: dict[str, Any] = {"cancelRequested": True}
            if current.status == jobs.AWAITING_REVIEW:
                fields.update(decision=decision, decidedAt=jobs.now())
            return fields
        if current.status != jobs.AWAITING_REVIEW:
            raise Conflict(
                f"This import is {current.status}; only an import awaiting review can be {decision}."
            )
        if current.get("decision"):  # a repeat of the decision made in time is no error, even now
            if current.get("decision") == decision:
                return None
            raise Conflict(f"This import was already {current.get('decision')}.")
        expires_at = current.get("expiresAt")
        if expires_at is not None and jobs.now() >= expires_at:  # the orchestration is ending it as expired
            raise Conflict(
                f"The review of this import ended at {jobs.iso(expires_at)}; it can no longer be {decision}."
            )
        return {"decision": decision, "decidedAt": jobs.now(), "decidedBy": principal.user_id}

    # The decision and the command that relays it to the orchestration land in one transaction.
    updated = jobs.change_job(storage, job.id, change, command_to=IMPORT_QUEUE)
    if updated is None:  # its dataset was deleted meanwhile
        raise NotFound(f"There is no import {job_id!r}.")
    jobs.send_command(
        storage,
        dataset_id=updated.dataset_id,
        job_id=updated.id,
        queue=IMPORT_QUEUE,
        traceparent=None,
        etag=updated.outbox_etag,  # None for a repeated decision: it wrote no command
    )
    return updated


# --- row errors ----------------------------------------------------------------------------------


def errors_page(*, storage: Storage, job: Job, cursor: str | None, limit: int) -> dict[str, Any]:
    """Return one page of an import's row errors, in row order."""
    query = rowerrors.query(storage, job.id, results_per_page=limit)
    entities, token = first_page(query, decode_cursor(cursor))
    items = [_error_view(entity) for entity in entities]
    return {"items": items, "next": encode_cursor(token)}


def errors_csv(*, storage: Storage, job: Job) -> str:
    """Return an import's stored row errors (the first MAX_CSV_ERRORS) as CSV, safe from CSV injection."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["row", "column", "code", "message", "value"])
    found = rowerrors.query(storage, job.id)
    for entity in itertools.islice(found, MAX_CSV_ERRORS):
        error = _error_view(entity)
        writer.writerow(
            [
                error["row"],
                rows.safe_cell(error["column"]),
                error["code"],
                rows.safe_cell(error["message"]),
                rows.safe_cell(error["value"]),
            ]
        )
    return out.getvalue()


def _error_view(entity: Any) -> dict[str, Any]:
    return {
        "row": int(entity["row"]),
        "column": entity.get("column", ""),
        "code": entity["code"],
        "message": entity["message"],
        "value": entity.get("value", ""),
    }


def _positions(schema: TableSchema) -> dict[str, int]:
    positions = {item.name: index for index, item in enumerate(schema.fields)}
    if len(schema.primary_key) > 1:
        positions[", ".join(schema.primary_key)] = positions[schema.primary_key[0]]
    return positions


# --- the worker: relay commands ------------------------------------------------------------------


def command_for(storage: Storage, job_id: str) -> tuple[str, Job | None]:
    """Tell the import worker what a command means now: "start", "decide" or "none"."""
    job = jobs.load_job(storage, job_id)
    if job is None or job.kind != jobs.IMPORT or job.status in jobs.FINISHED:
        return "none", job
    if job.status == jobs.QUEUED:
        return "start", job  # a cancel before the start is seen by the plan step
    if job.status == jobs.AWAITING_REVIEW and job.get("decision"):
        return "decide", job  # only a review waits for an event; running steps read cancelRequested
    return "none", job


# --- the orchestration's activities ----------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    job: Job
    dataset: Dataset
    schema: TableSchema
    mapping: ColumnMapping
    dialect: Dialect


def _context(storage: Storage, job_id: str) -> _Context:
    job = jobs.load_job(storage, job_id)
    if job is None:
        raise NotFound(f"import {job_id} is gone")
    dataset = datasets.load_dataset(storage, job.dataset_id)
    if dataset is None:
        raise NotFound(f"the dataset of import {job_id} is gone")
    schema = dataset.schema
    header = job.json_property("header", [])
    explicit = job.json_property("mapping", {}).get("fields", {})
    dialect_json = job.json_property("dialect", {})
    dialect = Dialect(
        delimiter=dialect_json["delimiter"],
        quote_char=dialect_json["quoteChar"],
        header=dialect_json["header"],
        sep_line=dialect_json.get("sepLine", False),  # none in an import started by an earlier version
    )
    return _Context(job, dataset, schema, map_columns(schema, header, explicit), dialect)


def plan_import(*, storage: Storage, settings: Settings, job_id: str) -> dict[str, Any]:
    """Cut the file into chunks and record them; return what the orchestration needs to go on."""
    ctx = _context(storage, job_id)
    job = ctx.job
    if job.status in jobs.FINISHED:
        return {"stop": job.status}
    if job.get("cancelRequested"):
        return {"stop": _finish(storage, job_id, status=jobs.CANCELLED, phase="cancelled")}
    try:
        _header, chunks = plan_chunks(
            _blob(storage, job, None),
            encoding=job.get("encoding"),
            dialect=ctx.dialect,
            max_field_chars=uploads.MAX_FIELD_CHARS,
            chunk_rows=settings.chunk_rows,
        )
    except ResourceModifiedError:
        return {"stop": fail_import(storage=storage, job_id=job_id, error=FILE_CHANGED)["status"]}
    table = jobs.datasets_table(storage)
    for chunk in chunks:
        table.upsert_entity(
            {
                "PartitionKey": job.dataset_id,
                "RowKey": jobs.chunk_row(job_id, chunk.index),
                "start": chunk.start,
                "end": chunk.end,
                "firstRow": chunk.first_row,
                "rows": chunk.rows,
            },
            mode=UpdateMode.MERGE,
        )
    total = sum(chunk.rows for chunk in chunks)
    buckets = max(1, -(-total // KEYS_PER_BUCKET)) if _key_constraints(ctx.schema) else 0
    groups = EXISTS_GROUPS if _checks_existing_keys(job, ctx.schema) else 0
    jobs.change_job(
        storage,
        job_id,
        lambda current: (
            {
                "status": jobs.VALIDATING,
                "phase": "validating",
                "rowsTotal": total,
                "chunks": len(chunks),
                "buckets": buckets,
                "existsGroups": groups,
            }
            if current.status == jobs.QUEUED
            else None
        ),
    )
    return {"chunks": len(chunks), "buckets": buckets, "groups": groups, "rows": total}


def _key_constraints(schema: TableSchema) -> bool:
    return bool(schema.primary_key) or any(item.constraints.unique for item in schema.fields)


def _checks_existing_keys(job: Job, schema: TableSchema) -> bool:
    """Whether the review must know which keys the dataset has already: an insert into rows (the dataset
    stays locked to this import, so the rows it started with are the rows it meets)."""
    return job.get("mode") == "insert" and bool(schema.primary_key) and int(job.get("startRowCount") or 0) > 0


def _chunk(storage: Storage, job: Job, index: int) -> tuple[ChunkPlan, Any]:
    entity = jobs.datasets_table(storage).get_entity(job.dataset_id, jobs.chunk_row(job.id, index))
    plan = ChunkPlan(
        index, int(entity["start"]), int(entity["end"]), int(entity["firstRow"]), int(entity["rows"])
    )
    return plan, entity


def _records(storage: Storage, ctx: _Context, chunk: ChunkPlan) -> Iterator[list[str]]:
    encoding = chunk_encoding(ctx.job.get("encoding"), chunk.start)
    text = DecodedText(_blob(storage, ctx.job, chunk), encoding=encoding, opens_file=chunk.start == 0)
    return read_records(
        text,
        ctx.dialect,
        max_columns=len(ctx.mapping.header) + 1_000,
        max_field_chars=uploads.MAX_FIELD_CHARS,
    )


def _blob(storage: Storage, job: Job, chunk: ChunkPlan | None) -> Iterator[bytes]:
    blob = storage.blobs.get_blob_client(UPLOADS_CONTAINER, job.get("uploadId"))
    etag = job.get("blobEtag") or None
    condition = MatchConditions.IfNotModified if etag else None
    if chunk is None:
        stream = blob.download_blob(max_concurrency=1, etag=etag, match_condition=condition)
    elif chunk.end == chunk.start:
        return iter([b""])
    else:
        stream = blob.download_blob(
            offset=chunk.start,
            length=chunk.end - chunk.start,
            max_concurrency=1,
            etag=etag,
            match_condition=condition,
        )
    return iter(stream.chunks())


def validate_chunk(*, storage: Storage, job_id: str, index: int) -> dict[str, Any]:
    """Validate one chunk: store its row errors, counts and key buckets. Safe to run twice."""
    ctx = _context(storage, job_id)
    if _stopping(ctx.job):
        for name in _chunk_work(index):  # an earlier attempt's, too late
            _drop_if_ended(storage, job_id, name, ctx.job)
        return {"cancelled": True}
    chunk, _ = _chunk(storage, ctx.job, index)
    try:
        result = Validator(ctx.schema, ctx.mapping).validate_chunk(
            _records(storage, ctx, chunk), first_row=chunk.first_row, keep_rows=True
        )
    except ResourceModifiedError:
        return _cannot_go_on(storage, job_id, FILE_CHANGED)
    except PatternTooSlow as error:
        return _cannot_go_on(storage, job_id, str(error))
    if result.row_count != chunk.rows:
        raise RuntimeError(
            f"chunk {index} of import {job_id} has {result.row_count} rows, planned {chunk.rows}"
        )
    # The valid rows, encoded once as their apply writes them: the apply neither reads the file again nor
    # validates it again, and writes exactly the rows the review counted. A run again keeps the blob an
    # earlier run stored (the same bytes): rewriting it could break an apply reading it in ranges.
    groups = int(ctx.job.get("existsGroups") or 0)
    keyed: list[tuple[int, str, str, str]] | None = [] if groups else None
    encoded = _encoded_rows(ctx, result, keyed)
    with contextlib.suppress(ResourceExistsError):
        _work_blob(storage, job_id, _rows_name(index)).upload_blob(encoded, overwrite=False)
    stored = result.errors[:STORED_ERRORS_PER_CHUNK]
    rowerrors.store(storage, job_id, _positions(ctx.schema), stored)
    offsets = _store_key_buckets(storage, ctx.job, index, result.keys)
    exists_offsets = _store_exists_groups(storage, ctx.job, index, keyed or [], groups)
    jobs.datasets_table(storage).upsert_entity(
        {
            "PartitionKey": ctx.job.dataset_id,
            "RowKey": jobs.chunk_row(job_id, index),
            "validatedRows": result.row_count,
            "invalid": result.invalid_count,
            "errorCounts": _counts_json(result.errors),
            "errorsStored": len(stored),
            "errorsFound": len(result.errors),
            "keyOffsets": json.dumps(offsets),
            "existsOffsets": json.dumps(exists_offsets),
        },
        mode=UpdateMode.MERGE,
    )
    job = jobs.load_job(storage, job_id)
    for name in _chunk_work(index):
        _drop_if_ended(storage, job_id, name, job)
    return {"rows": result.row_count, "invalid": result.invalid_count}


def _chunk_work(index: int) -> tuple[str, ...]:
    """Name the work blobs a chunk's validation stores."""
    return _rows_name(index), _key_runs_name(index), _exists_keys_name(index)


def _drop_if_ended(storage: Storage, job_id: str, name: str, job: Job | None) -> None:
    """Delete the work blob `name` of an import that has ended.

    Chunks (and key buckets) run side by side. When one ends the import (a changed file, a slow pattern,
    an error on every retry), the others may store their work after its clean-up ran. The job ends
    before its clean-up starts, so a blob stored before this check is deleted by one or the other.
    """
    if job is not None and job.status not in jobs.FINISHED:
        return
    with contextlib.suppress(ResourceNotFoundError):
        _work_blob(storage, job_id, name).delete_blob()


def _counts_json(errors: list[RowError]) -> str:
    counts = Counter((error.code, error.column) for error in errors)
    return json.dumps([[code, column, count] for (code, column), count in counts.items()], ensure_ascii=False)


def _bucket(key: str, buckets: int) -> int:
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % buckets


def _store_key_buckets(storage: Storage, job: Job, index: int, digests: KeyDigests) -> list[list[int]]:
    """Write the chunk's key runs split into buckets, one JSON line per bucket; return their byte ranges."""
    buckets = int(job.get("buckets") or 0)
    if not buckets or not digests.runs:
        return []
    picked: list[list[list[int]]] = [[[] for _ in digests.runs] for _ in range(buckets)]
    for number, run in enumerate(digests.runs):
        for i, key in enumerate(run.keys):  # each key hashed once, whatever the number of buckets
            picked[_bucket(str(key), buckets)][number].append(i)
    lines: list[bytes] = []
    for bucket in range(buckets):
        runs = [_run_part(run, picked[bucket][number]) for number, run in enumerate(digests.runs)]
        lines.append(json.dumps([run.to_json() for run in runs], ensure_ascii=False).encode() + b"\n")
    return _store_parts(storage, job.id, _key_runs_name(index), lines)


def _store_parts(storage: Storage, job_id: str, name: str, lines: list[bytes]) -> list[list[int]]:
    """Write a chunk's parts (one line each) as the work blob `name`; return each line's byte range, for
    the step that reads one part of every chunk (see _chunk_parts)."""
    offsets, position = [], 0
    for line in lines:
        offsets.append([position, position + len(line)])
        position += len(line)
    _work_blob(storage, job_id, name).upload_blob(b"".join(lines), overwrite=True)
    return offsets


def _run_part(run: KeyRun, picked: list[int]) -> KeyRun:
    return KeyRun(
        code=run.code,
        columns=run.columns,
        keys=[run.keys[i] for i in picked],
        rows=[run.rows[i] for i in picked],
        values=[run.values[i] for i in picked],
        valid=bytes(run.valid[i] for i in picked),
    )


def _key_runs_name(index: int) -> str:
    """Name the work blob of a chunk's key runs, split into buckets (see _store_key_buckets)."""
    return f"keys-{index:05d}"


def _work_blob(storage: Storage, job_id: str, name: str) -> Any:
    return storage.blobs.get_blob_client(WORK_CONTAINER, f"{job_id}/{name}")


def _store_exists_groups(
    storage: Storage, job: Job, index: int, keyed: list[tuple[int, str, str, str]], groups: int
) -> list[list[int]]:
    """Write the chunk's valid rows' keys split into the groups of partitions check_existing_keys looks
    them up in, one JSON line per group of [PartitionKey, RowKey, row, key shown]; return the byte ranges."""
    if not groups:
        return []
    split: list[list[list[Any]]] = [[] for _ in range(groups)]
    for number, partition_key, row_key, key in keyed:
        split[_exists_group(partition_key, groups)].append([partition_key, row_key, number, key])
    lines = [json.dumps(part, ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n" for part in split]
    return _store_parts(storage, job.id, _exists_keys_name(index), lines)


def _chunk_parts(
    storage: Storage, job: Job, offsets: str, name: Callable[[int], str], part: int
) -> Iterator[Any]:
    """Yield, chunk by chunk, line `part` of the work blob `name(chunk)` that each chunk's validation split
    into parts (a key bucket, a group of partitions), read by its byte range on the chunk record."""
    for entity in jobs.partition_rows(storage, job.dataset_id, f"chunk-{job.id}-"):
        ranges = json.loads(entity.get(offsets) or "[]")
        if not ranges:
            continue
        start, end = ranges[part]
        blob = _work_blob(storage, job.id, name(jobs.chunk_index(entity["RowKey"])))
        yield json.loads(blob.download_blob(offset=start, length=end - start).readall())


def _exists_group(partition_key: str, groups: int) -> int:
    return int(partition_key[1:]) % groups  # "p017" → 17


def _exists_keys_name(index: int) -> str:
    """Name the work blob of a chunk's keys split into groups of partitions (see _store_exists_groups)."""
    return f"exists-keys-{index:05d}"


def _exists_name(group: int) -> str:
    """Name the work blob of the rows one group found with a key the dataset has already."""
    return f"exists-{group:05d}"


def check_existing_keys(*, storage: Storage, job_id: str, group: int) -> dict[str, Any]:
    """Find the rows of an insert whose key the dataset has already, in one group of its partitions; store
    their `keyExists` errors and the rows, so the review counts them and the apply skips them.

    Each partition's keys are read one by one when they are few, else the partition is scanned between
    its lowest and highest key for the keys it has: the cost follows the import, not the dataset.
    """
    ctx = _context(storage, job_id)
    if _stopping(ctx.job):
        _drop_if_ended(storage, job_id, _exists_name(group), ctx.job)
        return {"cancelled": True}
    if ctx.job.status != jobs.VALIDATING:  # a late repeat: the review has counted, the apply may be writing
        return {"existing": None}
    wanted: dict[str, dict[str, list[tuple[int, str]]]] = {}  # PartitionKey → RowKey → [(row, key)]
    for part in _chunk_parts(storage, ctx.job, "existsOffsets", _exists_keys_name, group):
        for partition_key, row_key, number, key in part:
            wanted.setdefault(partition_key, {}).setdefault(row_key, []).append((number, key))
    table = storage.tables.get_table_client(ctx.job.get("rowsTable"))
    pages = max(1, -(-int(ctx.job.get("startRowCount") or 0) // (rows.PARTITIONS * 1_000)))

    def existing(item: tuple[str, dict[str, Any]]) -> set[str]:
        return _existing(table, *item, pages=pages, job_id=job_id)

    with ThreadPoolExecutor(APPLY_THREADS, thread_name_prefix="exists") as pool:
        found = list(pool.map(existing, wanted.items()))
    errors = [
        _key_exists_error(ctx.schema, number, key)
        for partition_key, existing in zip(wanted, found, strict=True)
        for row_key in existing
        for number, key in wanted[partition_key][row_key]
    ]
    errors.sort(key=lambda error: error.row)
    stored = errors[:STORED_ERRORS_PER_GROUP]
    rowerrors.store(storage, job_id, _positions(ctx.schema), stored)
    _work_blob(storage, job_id, _exists_name(group)).upload_blob(
        json.dumps([error.row for error in errors]).encode(), overwrite=True
    )
    jobs.datasets_table(storage).upsert_entity(
        {
            "PartitionKey": ctx.job.dataset_id,
            "RowKey": f"exists-{job_id}-{group:05d}",
            "errorCounts": _counts_json(errors),
            "errorsStored": len(stored),
            "errorsFound": len(errors),
        }
    )
    _drop_if_ended(storage, job_id, _exists_name(group), jobs.load_job(storage, job_id))
    return {"existing": len(errors)}


def _existing(table: Any, partition_key: str, keyed: dict[str, Any], *, pages: int, job_id: str) -> set[str]:
    """Return which of the RowKeys `keyed` names the partition has (rows of the import `job_id` aside: a
    check still running when its own apply began must not count the rows it writes)."""
    wanted = ["RowKey", rows.JOB_PROPERTY]

    def other(entity: Mapping[str, Any]) -> bool:
        return rows.written_by(entity)[0] != job_id

    if len(keyed) <= POINT_READS_PER_PAGE * pages:

        def has(row_key: str) -> bool:
            try:
                return other(retrying(lambda: table.get_entity(partition_key, row_key, select=wanted)))
            except ResourceNotFoundError:
                return False

        return {row_key for row_key in keyed if has(row_key)}
    # Between the lowest and the highest key as the service orders them: by UTF-16 code unit (Azurite's
    # JavaScript strings; .NET's ordinal order), which puts U+1F600 (D83D DE00) before U+FF46.
    query = "PartitionKey eq @partition and RowKey ge @low and RowKey le @high"
    bounds = {"partition": partition_key, "low": min(keyed, key=_utf16), "high": max(keyed, key=_utf16)}
    try:
        present = retrying(
            lambda: [
                entity["RowKey"]
                for entity in table.query_entities(
                    query, parameters=bounds, select=wanted, results_per_page=1_000
                )
                if other(entity)
            ]
        )
    except ResourceNotFoundError:  # no rows table (yet): no row
        return set()
    return keyed.keys() & set(present)


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-be", "surrogatepass")


def _key_exists_error(schema: TableSchema, number: int, key: str) -> RowError:
    column = ", ".join(schema.primary_key)
    message = (
        f'Row {number}: the dataset already has a row with key "{key[:60]}"; '
        "insert adds new rows only (use upsert to update existing rows)."
    )
    return RowError(number, column, "keyExists", message, key[:200])


def merge_key_bucket(*, storage: Storage, job_id: str, bucket: int) -> dict[str, Any]:
    """Find keys used twice across the file in one bucket; store the errors and the rows they invalidate."""
    ctx = _context(storage, job_id)
    if _stopping(ctx.job):
        _drop_if_ended(storage, job_id, _dups_name(bucket), ctx.job)
        return {"cancelled": True}
    parts = _chunk_parts(storage, ctx.job, "keyOffsets", _key_runs_name, bucket)
    merged = merge_keys([KeyDigests.from_json(part) for part in parts])
    stored = merged.errors[:STORED_ERRORS_PER_BUCKET]
    rowerrors.store(storage, job_id, _positions(ctx.schema), stored)
    _work_blob(storage, job_id, _dups_name(bucket)).upload_blob(
        json.dumps(merged.newly_invalid_rows).encode(), overwrite=True
    )
    jobs.datasets_table(storage).upsert_entity(
        {
            "PartitionKey": ctx.job.dataset_id,
            "RowKey": f"keys-{job_id}-{bucket:05d}",
            "newlyInvalid": len(merged.newly_invalid_rows),
            "errorCounts": _counts_json(merged.errors),
            "errorsStored": len(stored),
            "errorsFound": len(merged.errors),
        }
    )
    _drop_if_ended(storage, job_id, _dups_name(bucket), jobs.load_job(storage, job_id))
    return {"duplicates": len(merged.errors)}


def _dups_name(bucket: int) -> str:
    """Name the work blob of the rows one key bucket found repeating a key."""
    return f"dups-{bucket:05d}"


def _summed(storage: Storage, job: Job) -> dict[str, Any]:
    """Add up the chunk and key-bucket records of an import."""
    totals: Counter[str] = Counter()
    errors: Counter[tuple[str, str]] = Counter()
    unsettled: list[int] = []  # chunks that wrote rows but could not count them (see apply_chunk)
    for prefix in (f"chunk-{job.id}-", f"keys-{job.id}-", f"exists-{job.id}-"):
        for entity in jobs.partition_rows(storage, job.dataset_id, prefix):
            for key in (
                "rows",
                "invalid",
                "newlyInvalid",
                "errorsStored",
                "errorsFound",
                "inserted",
                "updated",
                "unchanged",
                "conflicts",
                "appliedRows",
                "applyErrorsStored",
            ):
                totals[key] += int(entity.get(key) or 0)
            if entity.get("applyStarted") and entity.get("inserted") is None:
                unsettled.append(jobs.chunk_index(entity["RowKey"]))
            for code, column, count in json.loads(entity.get("errorCounts") or "[]"):
                errors[(code, column)] += count
            for code, column, count in json.loads(entity.get("applyErrorCounts") or "[]"):
                errors[(code, column)] += count
    summary = [
        {"code": code, "column": column, "count": count} for (code, column), count in errors.most_common()
    ]
    return {"totals": totals, "summary": summary, "unsettled": unsettled}


def review_import(*, storage: Storage, job_id: str) -> dict[str, Any]:
    """Count what validation found; go on to apply, or wait for a review. Returns {next, expiresAt?}."""
    job = jobs.load_job(storage, job_id)
    if job is None:
        return {"next": "stop"}
    if job.status in jobs.FINISHED:
        _clean_up_again(storage, job)
        return {"next": "stop"}
    if job.get("failure"):  # a chunk could not be validated; every chunk has ended now
        return {
            "next": "stop",
            "status": fail_import(storage=storage, job_id=job_id, error=job.get("failure"))["status"],
        }
    if job.get("cancelRequested"):
        return {"next": "stop", "status": _finish(storage, job_id, status=jobs.CANCELLED, phase="cancelled")}
    if job.status in (jobs.AWAITING_REVIEW, jobs.APPLYING):  # a re-run: the first run decided
        return {
            "next": "review" if job.status == jobs.AWAITING_REVIEW else "apply",
            "expiresAt": jobs.iso(job.get("expiresAt")),
        }
    summed = _summed(storage, job)
    totals = summed["totals"]
    duplicates = _bucket_dup_rows(storage, job)
    if _later_checks(job):  # stored before the status changes: a re-run writes it again
        _work_blob(storage, job_id, ALL_DUPS).upload_blob(json.dumps(duplicates).encode(), overwrite=True)
    invalid = totals["invalid"] + len(duplicates)
    counts = {
        "rows": totals["rows"],
        "valid": totals["rows"] - invalid,
        "invalid": invalid,
        "inserted": 0,
        "updated": 0,
        "unchanged": 0,
    }
    review = invalid > 0 or not job.get("autoApply")
    fields: dict[str, Any] = {
        "counts": json.dumps(counts),
        "errorSummary": json.dumps(summed["summary"], ensure_ascii=False),
        "errorsStored": totals["errorsStored"],
    }
    if review:
        seconds = int(job.get("reviewSeconds") or 0)
        fields.update(status=jobs.AWAITING_REVIEW, phase="awaiting_review")
        fields["expiresAt"] = jobs.now() + timedelta(seconds=seconds)
    else:
        fields.update(status=jobs.APPLYING, phase="applying")
    updated = jobs.change_job(
        storage,
        job_id,
        # A cancel that landed while this step counted wins: a review would wait for a decision that
        # never comes (the cancel found nothing to relay while the import was validating).
        lambda current: (
            fields if current.status == jobs.VALIDATING and not current.get("cancelRequested") else None
        ),
    )
    assert updated is not None
    if updated.status == jobs.VALIDATING and updated.get("cancelRequested"):
        return {"next": "stop", "status": _finish(storage, job_id, status=jobs.CANCELLED, phase="cancelled")}
    return {
        "next": "review" if updated.status == jobs.AWAITING_REVIEW else "apply",
        "expiresAt": jobs.iso(updated.get("expiresAt")),
    }


def decide_import(*, storage: Storage, job_id: str, timed_out: bool) -> dict[str, Any]:
    """Act on the recorded decision (or the end of the review window); return {next}."""
    job = jobs.load_job(storage, job_id)
    if job is None or job.status in jobs.FINISHED:
        return {"next": "stop"}
    if job.status == jobs.APPLYING:
        return {"next": "apply"}
    decision = job.get("decision")
    if decision == "approved":
        jobs.change_job(
            storage,
            job_id,
            lambda current: (
                {"status": jobs.APPLYING, "phase": "applying"}
                if current.status == jobs.AWAITING_REVIEW
                else None
            ),
        )
        return {"next": "apply"}
    if decision in ("rejected", "cancelled"):
        status = jobs.REJECTED if decision == "rejected" else jobs.CANCELLED
        return {"next": "stop", "status": _finish(storage, job_id, status=status, phase=status)}
    if timed_out:
        return {"next": "stop", "status": _finish(storage, job_id, status=jobs.EXPIRED, phase=jobs.EXPIRED)}
    return {"next": "wait"}


def _dup_rows(storage: Storage, job: Job, chunk: ChunkPlan | None = None) -> set[int]:
    """Return the rows that repeat a key, or whose key the dataset has (in `chunk`, or in the whole file),
    otherwise valid.

    The review stores their union once (`dups-all`), so each applied chunk reads one small blob rather
    than every bucket's and group's; an import stopped before its review adds them up.
    """
    if not _later_checks(job):
        return set()
    try:
        found = json.loads(_work_blob(storage, job.id, ALL_DUPS).download_blob().readall())
    except ResourceNotFoundError:
        found = _bucket_dup_rows(storage, job)
    if chunk is None:
        return set(found)
    return {row for row in found if chunk.first_row <= row < chunk.first_row + chunk.rows}


def _later_checks(job: Job) -> list[str]:
    """Name the work blobs of rows found invalid after their chunk's validation: by each key bucket
    (a key repeated across the file) and each group of partitions (a key the dataset has)."""
    buckets, groups = int(job.get("buckets") or 0), int(job.get("existsGroups") or 0)
    return [_dups_name(bucket) for bucket in range(buckets)] + [
        _exists_name(group) for group in range(groups)
    ]


def _bucket_dup_rows(storage: Storage, job: Job) -> list[int]:
    """Add up the rows the key buckets and groups found invalid, ascending.

    A row can repeat its primary key and a unique value, whose keys fall into different buckets, and
    repeat a key the dataset has: the union, not the sum, of their rows is what counts.
    """
    found: set[int] = set()
    for name in _later_checks(job):
        try:
            data = _work_blob(storage, job.id, name).download_blob().readall()
        except ResourceNotFoundError:
            continue
        found.update(json.loads(data))
    return sorted(found)


@dataclass
class _Applied:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    rows: int = 0
    stopped: bool = False

    def add(self, outcome: _Applied, rows: int) -> None:
        """Count a transaction's outcome and its rows in."""
        self.inserted += outcome.inserted
        self.updated += outcome.updated
        self.unchanged += outcome.unchanged
        self.errors.extend(outcome.errors)
        self.rows += rows


def apply_chunk(*, storage: Storage, job_id: str, index: int) -> dict[str, Any]:
    """Write one chunk's valid rows to the dataset's table. Safe to run twice (rows carry the job id)."""
    ctx = _context(storage, job_id)
    job = ctx.job
    if not _applying(job):
        return {"cancelled": True}
    chunk, entity = _chunk(storage, job, index)
    if entity.get("applied"):
        return {"rows": int(entity.get("appliedRows") or 0)}
    try:
        valid = _valid_rows(storage, ctx, chunk)
    except ResourceModifiedError:
        return _cannot_go_on(storage, job_id, FILE_CHANGED)
    except PatternTooSlow as error:
        return _cannot_go_on(storage, job_id, str(error))
    skip = _dup_rows(storage, job, chunk)
    writes = [row for row in valid if row.number not in skip]
    writer = _RowWriter(storage, job, ctx.schema, job.get("mode"), job.get("rowsTable"))
    # If this run dies after writing and no later run finishes the chunk (a cancel or failure came first),
    # the finish counts what it wrote by looking these keys up: see _count_unsettled.
    keys = [[row.encoded.partition_key, row.encoded.row_key] for row in writes]
    keys_json = json.dumps(keys, ensure_ascii=False).encode("utf-8", "surrogatepass")
    _work_blob(storage, job_id, _writes_name(index)).upload_blob(keys_json, overwrite=True)
    jobs.datasets_table(storage).upsert_entity(
        {"PartitionKey": job.dataset_id, "RowKey": jobs.chunk_row(job_id, index), "applyStarted": True},
        mode=UpdateMode.MERGE,
    )
    applied = writer.write(writes, chunk)
    errors = applied.errors
    rowerrors.store(storage, job_id, _positions(ctx.schema), errors[:STORED_ERRORS_PER_CHUNK])
    jobs.datasets_table(storage).upsert_entity(
        {
            "PartitionKey": job.dataset_id,
            "RowKey": jobs.chunk_row(job_id, index),
            "applied": not applied.stopped,  # a cancelled chunk still says what it wrote
            "appliedRows": applied.rows,
            "inserted": applied.inserted,
            "updated": applied.updated,
            "unchanged": applied.unchanged,
            "conflicts": len(errors),
            "applyErrorCounts": _counts_json(errors),
            "applyErrorsStored": min(len(errors), STORED_ERRORS_PER_CHUNK),
        },
        mode=UpdateMode.MERGE,
    )
    return {"rows": applied.rows, "inserted": applied.inserted, "cancelled": applied.stopped}


@dataclass(frozen=True, slots=True)
class _Row:
    """A valid row as its chunk's validation encoded it (see _encoded_rows)."""

    number: int
    encoded: Encoded
    too_large: bool

    def entity(self) -> dict[str, Any]:
        """The row's entity as a mapping, for the rare writes one row at a time."""
        return entity_from_json(self.encoded.body)


def _rows_name(index: int) -> str:
    """Name the work blob of a chunk's valid rows, encoded (see _encoded_rows)."""
    return f"rows-{index:05d}"


def _encoded_rows(
    ctx: _Context, result: ChunkResult, keys: list[tuple[int, str, str, str]] | None = None
) -> bytes:
    """Encode a chunk's valid rows as their apply sends them, one line each:
    ``row number TAB "1" if too large TAB PartitionKey TAB RowKey TAB entity JSON``.

    A RowKey holds no control characters (row_key_of encodes them) and JSON text no raw tab or line break.
    Rows that later prove to repeat a key are encoded too: the apply skips them (see _dup_rows). `keys`,
    if given, gets each row's (number, PartitionKey, RowKey, key shown).
    """
    job_id = ctx.job.id
    encoder = rows.RowEncoder(ctx.schema, job_id=job_id, op="i")
    keyed = bool(ctx.schema.primary_key)
    lines = []
    for number, values in zip(result.valid_row_numbers, result.valid_rows, strict=True):
        key = rows.api_key(ctx.schema, values) if keyed else f"{job_id}-{number:010d}"
        encoded, too_large = encoder.encode(values, key=key)
        flag = "1" if too_large else ""
        if keys is not None:
            keys.append((number, encoded.partition_key, encoded.row_key, key[:200]))
        lines.append(f"{number}\t{flag}\t{encoded.partition_key}\t{encoded.row_key}\t{encoded.body}\n")
    return "".join(lines).encode("utf-8", "surrogatepass")


def _valid_rows(storage: Storage, ctx: _Context, chunk: ChunkPlan) -> list[_Row]:
    """Read the valid rows the chunk's validation encoded.

    An import validated by an earlier version of Loadbay has none: its chunk is validated again, with
    more time for patterns matched in a child process (this chunk passed them in time once).
    """
    try:
        data = _work_blob(storage, ctx.job.id, _rows_name(chunk.index)).download_blob().readall()
    except ResourceNotFoundError:
        validator = Validator(ctx.schema, ctx.mapping, pattern_patience=APPLY_PATTERN_PATIENCE)
        result = validator.validate_chunk(
            _records(storage, ctx, chunk), first_row=chunk.first_row, keep_rows=True
        )
        data = _encoded_rows(ctx, result)
    found = []
    for line in data.decode("utf-8", "surrogatepass").split("\n"):
        if line:
            number, too_large, partition_key, row_key, body = line.split("\t", 4)
            found.append(_Row(int(number), Encoded(partition_key, row_key, body), bool(too_large)))
    return found


def stop_import(*, storage: Storage, job_id: str) -> dict[str, Any]:
    """A step failed on every retry: make the other chunks stand down before the import fails."""
    return _cannot_go_on(storage, job_id, INTERNAL_FAILURE)


def _cannot_go_on(storage: Storage, job_id: str, reason: str) -> dict[str, Any]:
    """Record why a chunk cannot be validated or applied (a changed file, a slow pattern, an error on
    every retry: see stop_import).

    The other chunks stop as on a cancel, and once all have ended the next step (review_import or
    finalize_import) fails the import: failing it now would miss the rows and errors they still store.
    """
    failure = {"failure": reason[:2_000]}
    running = (jobs.VALIDATING, jobs.APPLYING)
    jobs.change_job(
        storage,
        job_id,
        lambda current: failure if current.status in running and not current.get("failure") else None,
    )
    return {"cancelled": True}


class _RowWriter:
    """Writes rows in ≤ 100-entity transactions per partition, several at once, counting what it did."""

    def __init__(self, storage: Storage, job: Job, schema: TableSchema, mode: str, table_name: str) -> None:
        self.storage, self.job, self.schema, self.mode = storage, job, schema, mode
        self.table = storage.tables.get_table_client(table_name)
        storage.tables.create_table_if_not_exists(table_name)

    def write(self, valid: list[_Row], chunk: ChunkPlan) -> _Applied:
        """Write the rows, APPLY_THREADS transactions at a time; stop early if the job no longer wants them.

        Transactions keep flowing: every CHECK_SECONDS the writer records how far it got and checks
        for a cancel, and a cancel drops only the transactions not yet started.
        """
        partitions: dict[str, list[_Row]] = {}
        for row in valid:
            partitions.setdefault(row.encoded.partition_key, []).append(row)
        batches = [
            group[start : start + BATCH_ENTITIES]
            for group in partitions.values()
            for start in range(0, len(group), BATCH_ENTITIES)
        ]
        applied = _Applied()
        checked = time.monotonic()
        with ThreadPoolExecutor(APPLY_THREADS) as pool:
            futures = [(pool.submit(self._batch, batch), len(batch)) for batch in batches]
            try:
                for position, (future, size) in enumerate(futures):
                    applied.add(future.result(), size)
                    if time.monotonic() - checked < CHECK_SECONDS or applied.rows == len(valid):
                        continue
                    checked = time.monotonic()
                    if not self._still_wanted(chunk, applied.rows):
                        applied.stopped = True  # cancelled: what was written stays, and is counted
                        for later, later_size in futures[position + 1 :]:
                            if not later.cancel():  # already running (or done): it is written
                                applied.add(later.result(), later_size)
                        break
            except BaseException:
                for future, _ in futures:  # a failed transaction fails the chunk: send no more
                    future.cancel()
                raise
        applied.errors.sort(key=lambda error: error.row)
        return applied

    def _still_wanted(self, chunk: ChunkPlan, applied_rows: int) -> bool:
        job = jobs.load_job(self.storage, self.job.id)
        if job is None or not _applying(job):
            return False
        jobs.datasets_table(self.storage).upsert_entity(
            {
                "PartitionKey": self.job.dataset_id,
                "RowKey": jobs.chunk_row(self.job.id, chunk.index),
                "appliedRows": applied_rows,
            },
            mode=UpdateMode.MERGE,
        )
        return True

    def _batch(self, batch: list[_Row]) -> _Applied:
        outcome = _Applied(
            errors=[self._too_large(row.entity(), row.number) for row in batch if row.too_large]
        )
        batch = [row for row in batch if not row.too_large]
        if not batch:
            return outcome
        try:
            retrying(lambda: submit_batch(self.table, [("create", row.encoded) for row in batch]))
            outcome.inserted += len(batch)
            return outcome
        except BatchTooLarge:  # wide rows: two halves, each in its own transaction
            half = len(batch) // 2
            outcome.add(self._batch(batch[:half]), 0)
            outcome.add(self._batch(batch[half:]), 0)
            return outcome
        except BatchRejected:
            pass  # some rows exist already: settle each one on its own
        for row in batch:
            self._one(row.entity(), row.number, outcome)
        return outcome

    def _one(self, entity: dict[str, Any], number: int, outcome: _Applied) -> None:
        try:
            retrying(lambda: self.table.create_entity(entity))
            outcome.inserted += 1
            return
        except ResourceExistsError:
            pass
        stored = retrying(lambda: self.table.get_entity(entity["PartitionKey"], entity["RowKey"]))
        writer, op = rows.written_by(stored)
        if writer == self.job.id:  # written by an earlier run of this job
            if op == "u":
                outcome.updated += 1
            else:
                outcome.inserted += 1
            return
        if self.mode != "upsert":
            outcome.errors.append(self._exists(entity, number))
            return
        if rows.same_values(self.schema, stored, entity):
            outcome.unchanged += 1
            return
        entity[rows.JOB_PROPERTY] = rows.writer_mark(self.job.id, "u")
        retrying(lambda: self.table.update_entity(entity, mode=UpdateMode.REPLACE))
        outcome.updated += 1

    def _exists(self, entity: dict[str, Any], number: int) -> RowError:
        return _key_exists_error(self.schema, number, rows.entity_key(entity))

    def _too_large(self, entity: dict[str, Any], number: int) -> RowError:
        for item in self.schema.fields:  # one text value over the limit: name it
            value = entity.get(item.property_name)
            if isinstance(value, str) and (units := rows.utf16_units(value)) > rows.MAX_PROPERTY_UNITS:
                message = (
                    f'Row {number}: the value of "{item.name}" is {units:,} UTF-16 characters long (an '
                    f"emoji counts twice); Table Storage keeps at most {rows.MAX_PROPERTY_UNITS:,} in one "
                    "text value."
                )
                return RowError(number, item.name, "rowTooLarge", message, value[:VALUE_CHARS])
        size = rows.entity_bytes(entity)
        message = (
            f"Row {number} takes {size:,} bytes in Table Storage, more than the {rows.MAX_ENTITY_BYTES:,} "
            "bytes a row can take."
        )
        return RowError(number, "", "rowTooLarge", message, "")


def finalize_import(*, storage: Storage, job_id: str) -> dict[str, Any]:
    """Record the final counts; release the dataset and, for replace, switch it to the new rows."""
    job = jobs.load_job(storage, job_id)
    if job is None:
        return {"status": "missing"}
    if job.status in jobs.FINISHED:
        _clean_up_again(storage, job)
        return {"status": job.status}
    if job.get("failure"):  # a chunk could not apply its rows (what the others wrote stays, counted)
        return fail_import(storage=storage, job_id=job_id, error=job.get("failure"))
    if job.get("cancelRequested"):
        return {"status": _finish(storage, job_id, status=jobs.CANCELLED, phase="cancelled")}
    return {"status": _finish(storage, job_id, status=jobs.COMPLETED, phase="completed")}


def _stopping(job: Job) -> bool:
    """Say whether an import's chunks should stand down: it ended, or a cancel or a failure came."""
    return job.status in jobs.FINISHED or bool(job.get("cancelRequested")) or bool(job.get("failure"))


def _applying(job: Job) -> bool:
    """Say whether an import's chunks should (still) write rows: applying, with no cancel nor failure."""
    return job.status == jobs.APPLYING and not _stopping(job)


def fail_import(*, storage: Storage, job_id: str, error: str) -> dict[str, Any]:
    """Mark an import failed (with a reason for people), release the dataset and drop unused rows."""
    return {"status": _finish(storage, job_id, status=jobs.FAILED, phase="failed", error=error)}


def _finish(storage: Storage, job_id: str, *, status: str, phase: str, error: str | None = None) -> str:
    """End the job and release its dataset in one transaction; for replace, switch tables on success."""
    counted: tuple[dict[str, int], list[dict[str, Any]], int] | None = None
    for _ in range(10):
        job = jobs.load_job(storage, job_id)
        if job is None:
            return "missing"
        if job.status in jobs.FINISHED:
            _clean_up_again(storage, job)
            return job.status
        if status == jobs.COMPLETED and job.get("cancelRequested"):  # accepted while this step ran
            status, phase = jobs.CANCELLED, "cancelled"  # so a replace leaves the dataset as it was
        dataset = datasets.load_dataset(storage, job.dataset_id)
        assert dataset is not None
        counted = counted or _final_counts(storage, job)  # every chunk has ended: counts stay put
        counts, summary, stored = counted
        if job.get("mode") == "replace" and status != jobs.COMPLETED:  # its new rows are dropped unseen
            counts = {**counts, "inserted": 0, "updated": 0, "unchanged": 0}
        operations, old_table = _finish_operations(job, dataset, status, counts)
        fields = {
            "status": status,
            "phase": phase,
            "dropTable": old_table or "",  # so a re-run after a crash before the clean-up can drop it
            "counts": json.dumps(counts),
            "errorsStored": stored,
            "errorSummary": json.dumps(summary, ensure_ascii=False),
            "updatedAt": jobs.now(),
        }
        if error:
            fields["error"] = error[:2_000]
        operations.insert(
            0,
            (
                TransactionOperation.UPDATE,
                {"PartitionKey": job.dataset_id, "RowKey": jobs.job_row(job_id), **fields},
                {
                    "mode": UpdateMode.MERGE,
                    "etag": job.etag,
                    "match_condition": MatchConditions.IfNotModified,
                },
            ),
        )
        try:
            jobs.datasets_table(storage).submit_transaction(operations)
        except TableTransactionError as failure:
            if failure.status_code in (409, 412):
                continue
            raise
        _clean_up(storage, job, status, old_table)
        return status
    raise RuntimeError(f"could not finish import {job_id}: it kept changing")


def _final_counts(storage: Storage, job: Job) -> tuple[dict[str, int], list[dict[str, Any]], int]:
    summed = _summed(storage, job)
    totals = summed["totals"]
    for index in summed["unsettled"]:
        inserted, updated = _count_unsettled(storage, job, index)
        totals["inserted"] += inserted
        totals["updated"] += updated
    invalid = totals["invalid"] + len(_dup_rows(storage, job)) + totals["conflicts"]
    counts = {
        "rows": totals["rows"],
        "valid": totals["rows"] - invalid,
        "invalid": invalid,
        "inserted": totals["inserted"],
        "updated": totals["updated"],
        "unchanged": totals["unchanged"],
    }
    return counts, summed["summary"], totals["errorsStored"] + totals["applyErrorsStored"]


def _count_unsettled(storage: Storage, job: Job, index: int) -> tuple[int, int]:
    """Count the rows a chunk inserted and updated before it died, by the mark each row it wrote carries.

    A point read per key the chunk was to write (a rare path, bounded by the chunk's size).
    """
    try:
        keys = json.loads(_work_blob(storage, job.id, _writes_name(index)).download_blob().readall())
    except ResourceNotFoundError:  # only the clean-up after a finish removes it
        return 0, 0
    table = storage.tables.get_table_client(job.get("rowsTable"))

    def mark(key: list[str]) -> str:
        try:
            return str(
                retrying(lambda: table.get_entity(*key, select=[rows.JOB_PROPERTY])).get(rows.JOB_PROPERTY)
            )
        except ResourceNotFoundError:
            return ""

    with ThreadPoolExecutor(APPLY_THREADS, thread_name_prefix="count") as pool:
        marks = Counter(pool.map(mark, keys))
    return marks[rows.writer_mark(job.id, "i")], marks[rows.writer_mark(job.id, "u")]


def _writes_name(index: int) -> str:
    """Name the work blob of the keys a chunk writes (see _count_unsettled)."""
    return f"writes-{index:05d}"


def _finish_operations(
    job: Job, dataset: Dataset, status: str, counts: dict[str, int]
) -> tuple[list[Any], str | None]:
    fields: dict[str, Any] = {"updatedAt": jobs.now()}
    old_table = None
    if dataset.active_job == job.id:
        fields["activeJob"] = ""
    if job.get("mode") == "replace":
        if status == jobs.COMPLETED:
            fields.update(rowsTable=job.get("rowsTable"), rowCount=counts["inserted"])
            old_table = dataset.rows_table
        else:
            old_table = job.get("rowsTable")  # the unused new rows
    else:
        fields["rowCount"] = int(job.get("startRowCount") or 0) + counts["inserted"]
    update = (
        TransactionOperation.UPDATE,
        {"PartitionKey": dataset.id, "RowKey": jobs.DATASET_ROW, **fields},
        {"mode": UpdateMode.MERGE, "etag": dataset.etag, "match_condition": MatchConditions.IfNotModified},
    )
    return [update], old_table


def _clean_up_again(storage: Storage, job: Job) -> None:
    """Clean up after an import that ended: the run that ended it may have died before its clean-up."""
    _clean_up(storage, job, job.status, job.get("dropTable") or None)


def _clean_up(storage: Storage, job: Job, status: str, old_table: str | None) -> None:
    """Drop what the finished job no longer needs (best effort: a leftover costs space, not correctness)."""
    try:
        if old_table:
            storage.tables.delete_table(old_table)
        for blob in storage.blobs.get_container_client(WORK_CONTAINER).list_blobs(
            name_starts_with=f"{job.id}/"
        ):
            with contextlib.suppress(ResourceNotFoundError):  # a late step dropped its own meanwhile
                storage.blobs.get_blob_client(WORK_CONTAINER, blob.name).delete_blob()
    except AzureError:
        log.warning("Could not clean up after import %s (%s); harmless", job.id, status, exc_info=True)
