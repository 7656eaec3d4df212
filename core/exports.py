"""Exports: stream a dataset's rows to a CSV blob, then hand out a short-lived read-only link.

The worker writes ``exports/<jobId>.csv`` from scratch each time it runs, so a repeat delivery only
writes the same file again. The header is the schema's field names; each cell is written so that
importing the file with the same schema gives the same values, and (unless ``safeCells`` is false)
text cells a spreadsheet would run as formulas get a leading ``'`` (CSV injection).

A replace that switches the dataset to its new rows table drops the old one, maybe under a running
export: the export then writes the whole file again from the new table (one generation, never a mix),
and an export whose dataset is deleted under it fails rather than completing with a header alone.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import unicodedata
from collections.abc import Iterator
from typing import Any, Final

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobSasPermissions, ContentSettings

from core import datasets, jobs, rows
from core.auth import Principal
from core.errors import Conflict, Invalid
from core.jobs import Job
from core.settings import Settings
from core.storage import EXPORT_QUEUE, EXPORTS_CONTAINER, Storage

log = logging.getLogger(__name__)

ROWS_PER_PIECE: Final = 2_000
MAX_TABLE_SWITCHES: Final = 10
DATASET_DELETED: Final = "The dataset was deleted, so it was not exported."


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


def run_export(*, storage: Storage, job_id: str) -> str:
    """Write the export file and mark the job completed; return its status. Safe to run twice."""
    job = jobs.load_job(storage, job_id)
    if job is None or job.kind != jobs.EXPORT:
        return "missing"
    if job.status in jobs.FINISHED:
        return job.status
    dataset = datasets.load_dataset(storage, job.dataset_id)
    if dataset is None or dataset.status != datasets.ACTIVE:
        return fail_export(storage=storage, job_id=job_id, error=DATASET_DELETED)
    jobs.change_job(
        storage, job_id, lambda current: {"status": jobs.RUNNING} if current.status == jobs.QUEUED else None
    )
    blob = storage.blobs.get_blob_client(EXPORTS_CONTAINER, f"{job_id}.csv")
    written = _write_file(storage, blob, dataset, safe=bool(job.get("safeCells", True)))
    if written is None:
        return fail_export(storage=storage, job_id=job_id, error=DATASET_DELETED)
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


def _write_file(storage: Storage, blob: BlobClient, dataset: datasets.Dataset, *, safe: bool) -> int | None:
    """Write the file from the dataset's rows table; return its row count, or None if the dataset went.

    The blob's content is committed only after the last row (its blocks, all at once), so a file started
    again after a replace switched tables keeps nothing of the old table's rows.
    """
    for _ in range(MAX_TABLE_SWITCHES):
        counter = [0]
        try:
            blob.upload_blob(
                _csv_pieces(storage, dataset, safe=safe, counter=counter),
                overwrite=True,
                content_settings=ContentSettings(content_type="text/csv; charset=utf-8"),
            )
        except _RowsTableGone as gone:
            if gone.dataset is None or gone.dataset.status != datasets.ACTIVE:
                return None
            dataset = gone.dataset
            continue
        return counter[0]
    raise RuntimeError(f"dataset {dataset.id} kept switching rows tables under an export")


def _csv_pieces(
    storage: Storage, dataset: datasets.Dataset, *, safe: bool, counter: list[int]
) -> Iterator[bytes]:
    """Yield the CSV file in pieces of ROWS_PER_PIECE rows (UTF-8 with a BOM, so spreadsheets read it)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(rows.export_header(dataset.schema, safe=safe))
    yield b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")
    table = storage.tables.get_table_client(dataset.rows_table)
    out.seek(0)
    out.truncate()
    pending = 0
    try:
        for entity in table.list_entities(results_per_page=1_000):  # a table that goes away mid-way raises
            writer.writerow(rows.export_cells(dataset.schema, entity, safe=safe))
            counter[0] += 1
            pending += 1
            if pending == ROWS_PER_PIECE:
                yield out.getvalue().encode("utf-8")
                out.seek(0)
                out.truncate()
                pending = 0
    except ResourceNotFoundError:
        current = datasets.load_dataset(storage, dataset.id)
        if current is None or current.status != datasets.ACTIVE or current.rows_table != dataset.rows_table:
            raise _RowsTableGone(current) from None  # a replace switched tables, or a delete is under way
        if counter[0]:
            raise  # the table the dataset still names went away part way: the queue tries again
        # Nothing imported yet: the table the dataset names does not exist, and the file is the header alone.
    if pending:
        yield out.getvalue().encode("utf-8")
