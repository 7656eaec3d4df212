"""Exports: stream a dataset's rows to a CSV blob, then hand out a short-lived read-only link.

The worker writes ``exports/<jobId>.csv`` as a block blob in slices of at most
LOADBAY_EXPORT_SLICE_SECONDS (300): a slice adds its blocks to the file, records how far it got on the
job (`exportProgress`: the file's ETag, the page to read next) and, if rows are left, sends the job's
command again. An export of any size so fits Functions' timeout, and a crash or a repeat delivery goes
on from the last slice recorded (see _Progress). The file is handed out only once the job completes.

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
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
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
DATASET_DELETED: Final = "The dataset was deleted, so it was not exported."


class _Superseded(Exception):
    """The export's file is no longer as its last slice left it: another delivery committed, or it went."""


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

    Returns the job's status: `running` when the slice ended before the rows did, after recording its
    progress and sending the job's command again (through the outbox), so that the next delivery goes
    on from there. Safe to run twice, or twice at once.
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
    deadline = float("inf") if slice_seconds is None else time.monotonic() + slice_seconds
    outcome = _write_slice(storage, job, blob, dataset, deadline=deadline)
    if outcome is None or outcome == "missing":  # the dataset went: nothing of it outlives it
        with contextlib.suppress(ResourceNotFoundError):
            blob.delete_blob()
        return "missing" if outcome else fail_export(storage=storage, job_id=job_id, error=DATASET_DELETED)
    if isinstance(outcome, str):  # another delivery of the command is ahead, or the job ended
        return outcome
    if not outcome.done:
        return jobs.RUNNING  # the next slice's command is on its way
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
    return finished.status


def fail_export(*, storage: Storage, job_id: str, error: str) -> str:
    """Mark an export failed with a reason people can read; return its status."""
    ended = jobs.change_job(
        storage,
        job_id,
        lambda current: None if current.status in jobs.FINISHED else {"status": jobs.FAILED, "error": error},
    )
    return ended.status if ended else "missing"  # a deleted dataset's jobs go with it


@dataclass
class _Progress:
    """How far an export's file has got, kept on its job between slices (`exportProgress`, JSON).

    Each slice stages its blocks (ids: the block's number and a random id of the slice) and commits them
    after the file's blocks so far, on condition that the file is as the last slice recorded it (its
    ETag): of two deliveries of one command racing each other, one commits and goes on, the other stands
    down. A slice that committed but died before recording it leaves the file ahead of its record: the
    next one starts the file again.
    """

    table: str = ""  # the rows table read; a replace may switch the dataset to another
    rows: int = 0
    blocks: int = 0  # committed so far
    etag: str = ""  # the file's ETag after the last slice's commit ("": the file is not begun)
    token: dict[str, str] | None = None  # where the next page starts; None at the table's start
    done: bool = False  # every row is in the file
    switches: int = 0

    @classmethod
    def of(cls, job: Job) -> _Progress:
        return cls(**json.loads(job.get("exportProgress") or "{}"))

    def text(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))


def _write_slice(
    storage: Storage, job: Job, blob: BlobClient, dataset: datasets.Dataset, *, deadline: float
) -> _Progress | str | None:
    """Add the rows to the file until the deadline or the last row, and record how far it got.

    Returns the progress recorded, a status if the job went ("missing") or another delivery of its
    command is ahead ("running"), or None if the dataset went.
    """
    started = job.get("exportProgress") or ""
    progress = _Progress.of(job)
    if progress.etag and _etag(blob) != progress.etag:  # a slice committed, then died before its record
        progress = _Progress(switches=progress.switches)
    safe = bool(job.get("safeCells", True))
    while not progress.done:
        if progress.table and progress.table != dataset.rows_table:  # switched since: start again
            progress = _Progress(switches=progress.switches + 1)
            if progress.switches > MAX_TABLE_SWITCHES:
                raise RuntimeError(f"dataset {dataset.id} kept switching rows tables under an export")
        progress.table = dataset.rows_table
        try:
            _add_blocks(storage, blob, dataset, progress, safe=safe, deadline=deadline)
        except _RowsTableGone as gone:
            if gone.dataset is None or gone.dataset.status != datasets.ACTIVE:
                return None
            dataset = gone.dataset
            continue
        except _Superseded:  # another delivery of the command committed first, or the file went
            current = jobs.load_job(storage, job.id)
            return current.status if current else "missing"
        break
    return _record(storage, job.id, started, progress)


def _record(storage: Storage, job_id: str, started: str, progress: _Progress) -> _Progress | str:
    """Record the slice's progress on the job, if no other delivery recorded one since it started, and
    unless the file is whole, send the job's command again: the record and its outbox row land in one
    transaction, so a crash before the send leaves the command to the outbox sweeper."""
    text = progress.text()
    recorded = jobs.change_job(
        storage,
        job_id,
        lambda current: (
            {"exportProgress": text}
            if current.status == jobs.RUNNING and (current.get("exportProgress") or "") == started
            else None
        ),
        command_to=None if progress.done else EXPORT_QUEUE,
    )
    if recorded is None:
        return "missing"
    if recorded.get("exportProgress") != text:
        return recorded.status  # another delivery went further (it goes on, this one stops), or it ended
    if not progress.done:
        jobs.send_command(
            storage,
            dataset_id=recorded.dataset_id,
            job_id=job_id,
            queue=EXPORT_QUEUE,
            traceparent=None,
            etag=recorded.outbox_etag,
        )
    return progress


def _etag(blob: BlobClient) -> str:
    try:
        return str(blob.get_blob_properties().etag)
    except ResourceNotFoundError:
        return ""


_CSV = ContentSettings(content_type="text/csv; charset=utf-8")


def _add_blocks(
    storage: Storage,
    blob: BlobClient,
    dataset: datasets.Dataset,
    progress: _Progress,
    *,
    safe: bool,
    deadline: float,
) -> None:
    """Add the file's next rows from `progress` on, until the deadline (at a page's end) or the end."""
    if not progress.etag:  # the file's first slice: an empty file (dropping any block staged before)
        progress.etag = str(blob.commit_block_list([], content_settings=_CSV)["etag"])
        progress.blocks = 0
    committed = [block.id for block in blob.get_block_list("committed")[0]]
    run = new_id()[-10:]
    staged: list[str] = []
    pending = bytearray()

    def stage() -> None:
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
    try:
        written = blob.commit_block_list(
            [BlobBlock(block_id) for block_id in committed + staged],
            content_settings=_CSV,
            etag=progress.etag,
            match_condition=MatchConditions.IfNotModified,
        )
    except (ResourceModifiedError, ResourceNotFoundError):
        raise _Superseded from None
    progress.etag = str(written["etag"])
    progress.blocks += len(staged)


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
