"""Exports: stream a dataset's rows to a CSV blob, then hand out a short-lived read-only link.

The worker writes ``exports/<jobId>.csv`` as a block blob in slices of at most
LOADBAY_EXPORT_SLICE_SECONDS (300): a slice adds its blocks to the file, with how far it got in the
file's own metadata (see _Progress), and, if rows are left, sends the job's command again. An export of
any size so fits Functions' timeout, and a crash or a repeat delivery goes on from the last slice
committed. The file is handed out only once the job completes.

The header is the schema's field names; each cell is written so that importing the file with the same
schema gives the same values, and (unless ``safeCells`` is false) text cells a spreadsheet would run as
formulas get a leading ``'`` (CSV injection).

A replace that switches the dataset to its new rows table drops the old one, maybe under a running
export: the export then writes the whole file again from the new table (one generation, never a mix),
and an export whose dataset is deleted under it fails rather than completing with a header alone.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobClient, BlobSasPermissions, ContentSettings

from core import datasets, jobs, rows
from core.auth import Principal
from core.errors import Conflict, Invalid
from core.ids import new_id
from core.jobs import Job
from core.settings import Settings
from core.storage import EXPORT_QUEUE, EXPORTS_CONTAINER, Storage

log = logging.getLogger(__name__)

ROWS_PER_PIECE: Final = 1_000  # one page of the rows table: where a slice can end and the next go on
BLOCK_BYTES: Final = 4 * 1024 * 1024  # a block of the file: at most 50,000 of them make a blob
MAX_TABLE_SWITCHES: Final = 10
MAX_BLOCKS: Final = 50_000  # Azure's limit for one block blob
DATASET_DELETED: Final = "The dataset was deleted, so it was not exported."
KEPT_SWITCHING: Final = (
    f"The dataset's rows were replaced more than {MAX_TABLE_SWITCHES} times while it was being exported; "
    "export it again once its imports have finished."
)
TOO_MANY_BLOCKS: Final = (
    f"The export file would need more than {MAX_BLOCKS:,} blocks, Azure's limit for one file; "
    "the operators can raise LOADBAY_EXPORT_SLICE_SECONDS (each slice of the export adds a block)."
)


class _ExportLimit(Exception):
    """An export that cannot finish however often it is tried: it fails at once with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _RowsTableGone(Exception):
    """The rows table an export reads went away because its dataset moved on: to `dataset`, or deleted."""

    def __init__(self, dataset: datasets.Dataset | None) -> None:
        super().__init__("the rows table went away")
        self.dataset = dataset


def start_export(*, storage: Storage, principal: Principal, dataset_id: str, body: dict[str, Any]) -> Job:
    """Record an export job and its command in one transaction, then send the command."""
    dataset = datasets.get_dataset(storage=storage, principal=principal, dataset_id=dataset_id)
    if dataset.status != datasets.ACTIVE:
        raise Conflict("This dataset is being deleted.")
    safe = body.get("safeCells", True)
    if not isinstance(safe, bool):
        raise Invalid("safeCells must be true or false.", problems=[{"field": "safeCells", "code": "type"}])
    return jobs.start_job(
        storage,
        dataset_id=dataset.id,
        kind=jobs.EXPORT,
        owner=principal,
        queue=EXPORT_QUEUE,
        fields={"safeCells": safe},
        conflict="The export could not be recorded; try again.",
    )


def export_view(*, storage: Storage, settings: Settings, job: Job) -> dict[str, Any]:
    """Return the API view of an export; once completed, with a fresh read-only downloadUrl."""
    view: dict[str, Any] = {
        "id": job.id,
        "datasetId": job.dataset_id,
        "status": job.status,
        "rows": job.get("rows"),
        "size": job.get("size"),
        "safeCells": bool(job.get("safeCells", True)),
        "createdAt": jobs.iso(job.get("createdAt")),
        "updatedAt": jobs.iso(job.get("updatedAt")),
    }
    if job.get("error"):
        view["error"] = job.get("error")
    if job.status == jobs.COMPLETED:
        url, expires = storage.blob_sas_url(
            EXPORTS_CONTAINER,
            f"{job.id}.csv",
            BlobSasPermissions(read=True),
            settings.download_url_minutes,
            content_disposition=f'attachment; filename="{_file_name(storage, job)}"',
        )
        view.update(downloadUrl=url, downloadExpiresAt=jobs.iso(expires))
    return view


def _file_name(storage: Storage, job: Job) -> str:
    dataset = datasets.load_dataset(storage, job.dataset_id)
    return export_file_name(dataset.name if dataset else "dataset", job.id)


def export_file_name(dataset_name: str, job_id: str) -> str:
    """Return a download file name made of ASCII letters, digits, `-` and `_` ("Müller" → "Muller").

    It travels in the SAS URL and comes back in a Content-Disposition header, where only ASCII is safe.
    """
    plain = unicodedata.normalize("NFKD", dataset_name).encode("ascii", "ignore").decode()
    stem = "".join(char if char.isalnum() or char in "-_" else "-" for char in plain)[:60].strip("-")
    return f"{stem or 'dataset'}-{job_id}.csv"


def run_export(*, storage: Storage, job_id: str, slice_seconds: float | None = None) -> str:
    """Write the export file for up to `slice_seconds` (None: to its end), and complete the job once whole.

    Returns the job's status: `running` when the slice ended before the rows did, after committing its
    rows and sending the job's command again, so that the next delivery goes on from there. Safe to run
    twice, or twice at once.
    """
    job = jobs.load_job(storage, job_id)
    if job is None or job.kind != jobs.EXPORT:
        return "missing"
    if job.status in jobs.FINISHED:
        return job.status
    dataset = datasets.load_dataset(storage, job.dataset_id)
    if dataset is None or dataset.status != datasets.ACTIVE:
        return fail_export(storage=storage, job_id=job_id, error=DATASET_DELETED)
    job = jobs.change_job(
        storage, job_id, lambda current: {"status": jobs.RUNNING} if current.status == jobs.QUEUED else None
    )
    if job is None or job.status != jobs.RUNNING:
        return job.status if job else "missing"
    blob = storage.blobs.get_blob_client(EXPORTS_CONTAINER, f"{job_id}.csv")
    # The command stays in the outbox while the slice runs, due once it should have ended: if this
    # delivery dies (or stands down for another that then dies), the sweeper sends it again.
    lease = _lease(storage, job, 600 if slice_seconds is None else slice_seconds)
    deadline = float("inf") if slice_seconds is None else time.monotonic() + slice_seconds
    try:
        outcome = _write_slice(storage, job, blob, dataset, deadline=deadline)
    except _ExportLimit as limit:
        status = fail_export(storage=storage, job_id=job_id, error=limit.reason)
        _release(storage, job, lease)
        return status
    if outcome is None or outcome == "missing":  # the dataset went: nothing of it outlives it
        with contextlib.suppress(ResourceNotFoundError):
            blob.delete_blob()
        return "missing" if outcome else fail_export(storage=storage, job_id=job_id, error=DATASET_DELETED)
    if isinstance(outcome, str):  # another delivery of the command is ahead, or the job ended
        return outcome
    if not outcome.done:  # the next slice: the command again, now (which clears the lease)
        jobs.send_command(
            storage,
            dataset_id=job.dataset_id,
            job_id=job_id,
            queue=EXPORT_QUEUE,
            traceparent=None,
            etag=lease,
        )
        return jobs.RUNNING
    written = outcome.rows
    size = blob.get_blob_properties().size
    # A delete lists the dataset's files only once the dataset is `deleting`: a file written before that
    # is found and deleted by it; one written after is this export's to delete (the delete may already
    # have looked, and its job row may outlive the check below).
    current = datasets.load_dataset(storage, job.dataset_id)
    if current is None or current.status != datasets.ACTIVE:
        with contextlib.suppress(ResourceNotFoundError):
            blob.delete_blob()
        return fail_export(storage=storage, job_id=job_id, error=DATASET_DELETED)
    finished = jobs.change_job(
        storage,
        job_id,
        lambda current: (
            None
            if current.status in jobs.FINISHED
            else {"status": jobs.COMPLETED, "rows": written, "size": size}
        ),
    )
    if finished is None:  # its dataset was deleted once the rows were read: nothing of it outlives it
        with contextlib.suppress(ResourceNotFoundError):
            blob.delete_blob()
        return "missing"
    _release(storage, job, lease)
    return finished.status


def _lease(storage: Storage, job: Job, seconds: float) -> str:
    """Put the job's command in the outbox, due for the sweeper `seconds` from now; return the row's ETag."""
    row = jobs.outbox_entity(job.dataset_id, job.id, EXPORT_QUEUE)
    row["createdAt"] = jobs.now() + timedelta(seconds=seconds)  # the sweeper sends rows older than 30 s
    return str(jobs.datasets_table(storage).upsert_entity(row)["etag"])


def _release(storage: Storage, job: Job, lease: str) -> None:
    """Take the ended job's command out of the outbox, unless another delivery has leased it since."""
    with contextlib.suppress(ResourceNotFoundError, ResourceModifiedError):  # another's: the sweeper's
        jobs.datasets_table(storage).delete_entity(
            job.dataset_id, jobs.outbox_row(job.id), etag=lease, match_condition=MatchConditions.IfNotModified
        )


def fail_export(*, storage: Storage, job_id: str, error: str) -> str:
    """Mark an export failed with a reason people can read, and drop its part-written file; return its
    status (a slice still running stands down: its commit finds the file gone)."""
    ended = jobs.change_job(
        storage,
        job_id,
        lambda current: None if current.status in jobs.FINISHED else {"status": jobs.FAILED, "error": error},
    )
    if ended is None or ended.status == jobs.FAILED:
        with contextlib.suppress(ResourceNotFoundError):
            storage.blobs.get_blob_client(EXPORTS_CONTAINER, f"{job_id}.csv").delete_blob()
    return ended.status if ended else "missing"  # a deleted dataset's jobs go with it


@dataclass
class _Progress:
    """How far an export's file has got: kept in the file's own metadata, written by each commit.

    Each slice stages its blocks (ids: the block's number and a random id of the slice) and commits them
    after the file's blocks so far, with its progress, on condition that the file is as the slice found
    it (its ETag; the first commit, that the file does not exist yet). The file is the one record of how
    far it got, so no crash can leave a record behind it: of two deliveries racing each other, one
    commits and the other stands down, and whichever comes next goes on from the file.
    """

    table: str = ""  # the rows table read; a replace may switch the dataset to another
    rows: int = 0
    blocks: int = 0  # committed so far
    token: dict[str, str] | None = None  # where the next page starts; None at the table's start
    done: bool = False  # every row is in the file
    switches: int = 0

    def text(self) -> str:  # ASCII: metadata travels in HTTP headers
        return json.dumps(asdict(self), separators=(",", ":"))


_CSV = ContentSettings(content_type="text/csv; charset=utf-8")


def _write_slice(
    storage: Storage, job: Job, blob: BlobClient, dataset: datasets.Dataset, *, deadline: float
) -> _Progress | str | None:
    """Add rows to the file until the deadline or the last row; return the file's progress, or a status
    if another delivery of the command went further or the job ended, or None if the dataset went."""
    try:
        found = blob.get_blob_properties()
        etag: str | None = str(found.etag)
        saved = found.metadata.get("progress")  # none in a file an earlier version wrote: start again
    except ResourceNotFoundError:
        etag, saved = None, None
    progress = _Progress(**json.loads(saved)) if saved else _Progress()
    safe = bool(job.get("safeCells", True))
    try:
        if etag is None or not saved:  # the file's first slice: an empty file, dropping blocks staged before
            etag = _commit(blob, [], progress, etag=etag)
        while not progress.done:
            if progress.table and progress.table != dataset.rows_table:  # switched since: start again
                progress = _Progress(switches=progress.switches + 1)
                if progress.switches > MAX_TABLE_SWITCHES:
                    raise _ExportLimit(KEPT_SWITCHING)
            progress.table = dataset.rows_table
            try:
                etag = _add_blocks(storage, blob, dataset, progress, etag, safe=safe, deadline=deadline)
            except _RowsTableGone as gone:
                if gone.dataset is None or gone.dataset.status != datasets.ACTIVE:
                    return None
                dataset = gone.dataset
                continue
            break
    except (ResourceModifiedError, ResourceExistsError):  # another delivery committed first, or the file went
        current = jobs.load_job(storage, job.id)
        return current.status if current else "missing"
    return progress


def _commit(blob: BlobClient, block_ids: list[str], progress: _Progress, *, etag: str | None) -> str:
    """Commit the file as `block_ids` with its progress, if it is as the caller found it; return its ETag."""
    condition: dict[str, Any] = (
        {"match_condition": MatchConditions.IfMissing}
        if etag is None
        else {"etag": etag, "match_condition": MatchConditions.IfNotModified}
    )
    written = blob.commit_block_list(
        [BlobBlock(block_id) for block_id in block_ids],
        content_settings=_CSV,
        metadata={"progress": progress.text()},
        **condition,
    )
    return str(written["etag"])


def _add_blocks(
    storage: Storage,
    blob: BlobClient,
    dataset: datasets.Dataset,
    progress: _Progress,
    etag: str,
    *,
    safe: bool,
    deadline: float,
) -> str:
    """Add the file's next rows from `progress` on, until the deadline (at a page's end) or the end."""
    committed = [block.id for block in blob.get_block_list("committed")[0]] if progress.blocks else []
    run = new_id()[-10:]
    staged: list[str] = []
    pending = bytearray()

    def stage() -> None:
        if progress.blocks + len(staged) >= MAX_BLOCKS:
            raise _ExportLimit(TOO_MANY_BLOCKS)
        block_id = f"{progress.blocks + len(staged):08d}-{run}"  # one length for every block of the file
        blob.stage_block(block_id, bytes(pending))
        staged.append(block_id)
        pending.clear()

    for piece in _csv_pieces(storage, dataset, safe=safe, progress=progress):
        pending += piece
        if len(pending) >= BLOCK_BYTES:
            stage()
        if progress.token is not None and time.monotonic() >= deadline:
            break
    else:
        progress.done = True
    if pending:
        stage()
    progress.blocks += len(staged)
    return _commit(blob, committed + staged, progress, etag=etag)


def _csv_pieces(
    storage: Storage, dataset: datasets.Dataset, *, safe: bool, progress: _Progress
) -> Iterator[bytes]:
    """Yield the CSV file from `progress` on, a page of ROWS_PER_PIECE rows at a time (the header first,
    UTF-8 with a BOM so spreadsheets read it), counting each page's rows into `progress` before yielding."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if progress.token is None:
        writer.writerow(rows.export_header(dataset.schema, safe=safe))
        yield b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")
        out.seek(0)
        out.truncate()
    table = storage.tables.get_table_client(dataset.rows_table)
    # The SDK's token is the next keys ({"PartitionKey", "RowKey"}), though typed as text.
    token: Any = progress.token
    pages: Any = table.list_entities(results_per_page=ROWS_PER_PIECE).by_page(continuation_token=token)
    try:
        for page in pages:  # a table that goes away mid-way raises
            count = 0
            for entity in page:
                writer.writerow(rows.export_cells(dataset.schema, entity, safe=safe))
                count += 1
            progress.rows += count
            progress.token = pages.continuation_token
            yield out.getvalue().encode("utf-8")
            out.seek(0)
            out.truncate()
    except ResourceNotFoundError:
        current = datasets.load_dataset(storage, dataset.id)
        if current is None or current.status != datasets.ACTIVE or current.rows_table != dataset.rows_table:
            raise _RowsTableGone(current) from None  # a replace switched tables, or a delete is under way
        if progress.rows:
            raise  # the table the dataset still names went away part way: the queue tries again
        # Nothing imported yet: the table the dataset names does not exist, and the file is the header alone.
