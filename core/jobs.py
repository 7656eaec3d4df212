"""Jobs (imports, exports, deletes), their commands (the outbox) and the table layout they share.

A dataset's partition in the ``datasets`` table holds everything that must change together:

- ``dataset``: the dataset itself (see ``core.datasets``);
- ``job-<jobId>``: each job on it, the single source of truth for the status users see;
- ``chunk-<jobId>-<n>``: one import chunk's progress and counts (written by activities, set not added,
  so a re-run changes nothing);
- ``outbox-<jobId>``: a command still to be sent to a queue.

Starting work writes the job, its command and the dataset's claim in one transaction, then sends the
command and deletes the outbox row; if the process dies in between, ``sweep_outbox`` sends it later.
Sending twice is harmless: every handler is idempotent. ``jobs`` maps a job id to its dataset, so
``/imports/{id}`` needs no scan.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import (
    TableClient,
    TableEntity,
    TableTransactionError,
    TransactionOperation,
    UpdateMode,
)

from core.auth import Principal
from core.errors import Conflict, NotFound
from core.ids import is_id, new_id
from core.storage import DATASETS_TABLE, JOBS_TABLE, Storage
from core.telemetry import current_traceparent

log = logging.getLogger(__name__)

DATASET_ROW: Final = "dataset"
IMPORT, EXPORT, DELETE = "import", "export", "delete"
QUEUED, VALIDATING, AWAITING_REVIEW, APPLYING = "queued", "validating", "awaiting_review", "applying"
COMPLETED, FAILED, REJECTED, CANCELLED, EXPIRED = "completed", "failed", "rejected", "cancelled", "expired"
RUNNING: Final = "running"  # exports and deletes
FINISHED: Final = frozenset({COMPLETED, FAILED, REJECTED, CANCELLED, EXPIRED})
RESEND_AFTER: Final = timedelta(seconds=30)
_MAX_TEXT: Final = 2_000


def job_row(job_id: str) -> str:
    """Return the RowKey of a job in its dataset's partition."""
    return f"job-{job_id}"


def chunk_row(job_id: str, index: int) -> str:
    """Return the RowKey of one import chunk's record."""
    return f"chunk-{job_id}-{index:05d}"


def chunk_index(row_key: str) -> int:
    """Return the chunk number of a chunk record's RowKey (see chunk_row)."""
    return int(row_key.rsplit("-", 1)[1])


def outbox_row(job_id: str) -> str:
    """Return the RowKey of a job's unsent command."""
    return f"outbox-{job_id}"


def now() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """Write a moment as ISO 8601 UTC with a Z, as the API does."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Job:
    """A job entity as read, with the ETag its conditional updates need."""

    dataset_id: str
    id: str
    kind: str
    status: str
    owner: str
    entity: TableEntity
    outbox_etag: str | None = None  # the outbox row this process wrote with the job (see send_command)

    @property
    def etag(self) -> str:
        return str(self.entity.metadata["etag"])

    def get(self, name: str, default: Any = None) -> Any:
        """Return a property of the job entity."""
        return self.entity.get(name, default)

    def json_property(self, name: str, default: Any) -> Any:
        """Return a property stored as JSON text."""
        text = self.entity.get(name)
        return json.loads(text) if isinstance(text, str) and text else default

    @classmethod
    def from_entity(cls, entity: TableEntity) -> Job:
        return cls(
            dataset_id=entity["PartitionKey"],
            id=entity["RowKey"].removeprefix("job-"),
            kind=entity["kind"],
            status=entity["status"],
            owner=entity["owner"],
            entity=entity,
        )


def datasets_table(storage: Storage) -> TableClient:
    """Return the client of the table holding datasets, their jobs and their outbox."""
    return storage.tables.get_table_client(DATASETS_TABLE)


def jobs_index(storage: Storage) -> TableClient:
    """Return the client of the job id → dataset index."""
    return storage.tables.get_table_client(JOBS_TABLE)


def new_job_entity(
    *, dataset_id: str, job_id: str, kind: str, owner: Principal, status: str, **fields: Any
) -> dict[str, Any]:
    """Return a new job entity (JSON-valued fields must already be text)."""
    moment = now()
    return {
        "PartitionKey": dataset_id,
        "RowKey": job_row(job_id),
        "kind": kind,
        "status": status,
        "owner": owner.user_id,
        "createdAt": moment,
        "updatedAt": moment,
        **fields,
    }


def outbox_entity(dataset_id: str, job_id: str, queue: str) -> dict[str, Any]:
    """Return the outbox row that asks for `queue` to get the job's command."""
    return {
        "PartitionKey": dataset_id,
        "RowKey": outbox_row(job_id),
        "queue": queue,
        "traceparent": current_traceparent() or "",
        "createdAt": now(),
    }


def index_job(storage: Storage, *, job_id: str, dataset_id: str, kind: str, owner: Principal) -> None:
    """Record which dataset a job belongs to (written before the job, so it never points at nothing new)."""
    jobs_index(storage).upsert_entity(
        {
            "PartitionKey": job_id,
            "RowKey": "job",
            "datasetId": dataset_id,
            "kind": kind,
            "owner": owner.user_id,
        }
    )


def send_command(
    storage: Storage,
    *,
    dataset_id: str,
    job_id: str,
    queue: str,
    traceparent: str | None,
    etag: str | None = None,
) -> bool:
    """Send a job's command and clear its outbox row; on failure leave the row for the sweeper.

    `etag` is the outbox row as its sender wrote or read it: the row is cleared only if it is still that
    row, so a newer command written meanwhile (a change that landed during this send) stays for the
    sweeper. Without one (the caller wrote no row) the command is sent and any row is left alone.
    """
    try:
        storage.send(queue, {"id": job_id, "traceparent": traceparent or current_traceparent()})
    except AzureError:
        log.exception("Could not queue %s for job %s; the outbox sweeper will send it", queue, job_id)
        return False
    if etag is None:
        return True
    try:
        datasets_table(storage).delete_entity(
            dataset_id, outbox_row(job_id), etag=etag, match_condition=MatchConditions.IfNotModified
        )
    except ResourceModifiedError:
        log.info("The outbox row of job %s holds a newer command; the sweeper will send it", job_id)
    except AzureError:
        log.warning("Could not clear the outbox row of job %s; it will be sent again (harmless)", job_id)
    return True


def sweep_outbox(storage: Storage, *, at: datetime | None = None) -> int:
    """Send commands whose outbox rows are older than RESEND_AFTER (their first send was lost)."""
    before = (at or now()) - RESEND_AFTER
    sent = 0
    rows = datasets_table(storage).query_entities(
        "RowKey ge @low and RowKey lt @high and createdAt lt @before",
        parameters={"low": "outbox-", "high": "outbox.", "before": before},
    )
    for row in rows:
        job_id = row["RowKey"].removeprefix("outbox-")
        if send_command(
            storage,
            dataset_id=row["PartitionKey"],
            job_id=job_id,
            queue=row["queue"],
            traceparent=row.get("traceparent") or None,
            etag=str(row.metadata["etag"]),
        ):
            sent += 1
    return sent


def load_job(storage: Storage, job_id: str) -> Job | None:
    """Load a job by id through the index; None if there is none."""
    if not is_id(job_id):
        return None
    try:
        index = jobs_index(storage).get_entity(job_id, "job")
        entity = datasets_table(storage).get_entity(index["datasetId"], job_row(job_id))
    except ResourceNotFoundError:
        return None
    return Job.from_entity(entity)


def job_for(storage: Storage, principal: Principal, job_id: str, *, kind: str) -> Job:
    """Load a job of `kind` the caller may see: one they started, or one on their dataset (an admin may
    start work on anyone's, which its owner must see and be able to stop); anything else is not found."""
    job = load_job(storage, job_id)
    if job is None or job.kind != kind or not _may_see(storage, principal, job):
        raise NotFound(f"There is no {kind} {job_id!r}.")
    return job


def _may_see(storage: Storage, principal: Principal, job: Job) -> bool:
    if job.owner == principal.user_id or principal.is_admin:
        return True
    try:
        dataset = datasets_table(storage).get_entity(job.dataset_id, DATASET_ROW, select=["owner"])
    except ResourceNotFoundError:
        return False
    return bool(dataset.get("owner") == principal.user_id)


def update_job(storage: Storage, job: Job, *, command_to: str | None = None, **changes: Any) -> Job | None:
    """Merge changes if the job is unchanged since it was read (ETag); None if someone else changed it.

    With `command_to`, an outbox row for that queue is written in the same transaction, so the change
    and the command that tells a worker about it are never separated by a crash.
    """
    for key in ("error", "lastError"):
        if isinstance(changes.get(key), str):
            changes[key] = changes[key][:_MAX_TEXT]
    moment = now()
    entity = {"PartitionKey": job.dataset_id, "RowKey": job_row(job.id), "updatedAt": moment, **changes}
    condition: dict[str, Any] = {"etag": job.etag, "match_condition": MatchConditions.IfNotModified}
    outbox_etag = None
    try:
        if command_to is None:
            etag = datasets_table(storage).update_entity(entity, mode=UpdateMode.MERGE, **condition)["etag"]
        else:
            results = datasets_table(storage).submit_transaction(
                [
                    (TransactionOperation.UPDATE, entity, {"mode": UpdateMode.MERGE, **condition}),
                    (TransactionOperation.UPSERT, outbox_entity(job.dataset_id, job.id, command_to)),
                ]
            )
            etag, outbox_etag = results[0]["etag"], results[1]["etag"]
    except (ResourceModifiedError, ResourceNotFoundError):
        return None
    except TableTransactionError as error:
        if error.status_code in (404, 412):
            return None
        raise
    merged = TableEntity({**job.entity, **entity})
    merged._metadata = {**job.entity.metadata, "etag": etag}
    return replace(Job.from_entity(merged), outbox_etag=outbox_etag if command_to else None)


def change_job(
    storage: Storage, job_id: str, change: Any, *, attempts: int = 10, command_to: str | None = None
) -> Job | None:
    """Re-read the job and apply `change(job) -> dict | None` until its conditional update lands.

    `change` returns the properties to merge, or None to leave the job as it is. Returns the job after
    the change (or as it was when `change` declined); None if the job does not exist.
    """
    for _ in range(attempts):
        job = load_job(storage, job_id)
        if job is None:
            return None
        changes = change(job)
        if changes is None:
            return job
        updated = update_job(storage, job, command_to=command_to, **changes)
        if updated is not None:
            return updated
    raise RuntimeError(f"job {job_id} kept changing under a conditional update")


def partition_rows(storage: Storage, dataset_id: str, prefix: str) -> Iterator[TableEntity]:
    """Yield the rows of a dataset's partition whose RowKey starts with prefix."""
    high = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    yield from datasets_table(storage).query_entities(
        "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
        parameters={"pk": dataset_id, "low": prefix, "high": high},
    )


def start_job(
    storage: Storage,
    *,
    dataset_id: str,
    kind: str,
    owner: Principal,
    queue: str,
    fields: dict[str, Any],
    conflict: str,
    claim_etag: str | None = None,
    dataset_changes: dict[str, Any] | None = None,
    job_id: str | None = None,
) -> Job:
    """Create a job: write it, its command and any claim on its dataset in one transaction, then send.

    With `claim_etag`, the job also claims the dataset (`activeJob`, plus `dataset_changes`) if the
    dataset's ETag is still `claim_etag`; if someone changed the dataset meanwhile, nothing is written
    and the caller gets a 409 saying `conflict`.
    """
    job_id = job_id or new_id()
    index_job(storage, job_id=job_id, dataset_id=dataset_id, kind=kind, owner=owner)
    operations: list[Any] = [
        (
            TransactionOperation.CREATE,
            new_job_entity(
                dataset_id=dataset_id, job_id=job_id, kind=kind, owner=owner, status=QUEUED, **fields
            ),
        ),
        (TransactionOperation.CREATE, outbox_entity(dataset_id, job_id, queue)),
    ]
    if claim_etag is not None:
        claim = {
            "PartitionKey": dataset_id,
            "RowKey": DATASET_ROW,
            **(dataset_changes or {}),
            "activeJob": job_id,
        }
        condition = {
            "mode": UpdateMode.MERGE,
            "etag": claim_etag,
            "match_condition": MatchConditions.IfNotModified,
        }
        operations.insert(0, (TransactionOperation.UPDATE, {**claim, "updatedAt": now()}, condition))
    try:
        results = submit_or_conflict(storage, operations, conflict)
        outbox_etag: str | None = results[-1]["etag"]  # the outbox row is the transaction's last operation
    except Conflict:
        # Refused, or landed on a first try whose answer was lost and refused on the SDK's retry: only the
        # job row tells. A refused job leaves its index row pointing nowhere, so it goes.
        if load_job(storage, job_id) is None:
            with contextlib.suppress(AzureError):
                jobs_index(storage).delete_entity(job_id, "job")
            raise
        outbox_etag = None  # it landed: send, and leave the row to the sweeper
    send_command(
        storage, dataset_id=dataset_id, job_id=job_id, queue=queue, traceparent=None, etag=outbox_etag
    )
    job = load_job(storage, job_id)
    assert job is not None
    return job


def submit_or_conflict(storage: Storage, operations: list[Any], detail: str) -> list[Mapping[str, Any]]:
    """Commit one transaction in the datasets table; a failed ETag or existing row is a 409 Conflict.

    Returns each operation's result (its ETag), in order."""
    try:
        return datasets_table(storage).submit_transaction(operations)
    except TableTransactionError as error:
        if error.status_code in (409, 412):
            raise Conflict(detail) from error
        raise
