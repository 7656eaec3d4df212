"""Exports: stream a dataset's rows to a CSV blob, then hand out a short-lived read-only link.

The worker writes ``exports/<jobId>.csv`` from scratch each time it runs, so a repeat delivery only
writes the same file again. The header is the schema's field names; each cell is written so that
importing the file with the same schema gives the same values, and (unless ``safeCells`` is false)
text cells a spreadsheet would run as formulas get a leading ``'`` (CSV injection).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from typing import Any, Final

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobSasPermissions, ContentSettings

from core import datasets, jobs, rows
from core.auth import Principal
from core.errors import Conflict, Invalid
from core.jobs import Job
from core.settings import Settings
from core.storage import EXPORT_QUEUE, EXPORTS_CONTAINER, Storage

log = logging.getLogger(__name__)

ROWS_PER_PIECE: Final = 2_000


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
    """Return a download file name made of safe characters."""
    stem = "".join(char if char.isalnum() or char in "-_" else "-" for char in dataset_name)[:60].strip("-")
    return f"{stem or 'dataset'}-{job_id}.csv"


def run_export(*, storage: Storage, job_id: str) -> str:
    """Write the export file and mark the job completed; return its status. Safe to run twice."""
    job = jobs.load_job(storage, job_id)
    if job is None or job.kind != jobs.EXPORT:
        return "missing"
    if job.status in jobs.FINISHED:
        return job.status
    dataset = datasets.load_dataset(storage, job.dataset_id)
    if dataset is None:
        return "missing"
    jobs.change_job(
        storage, job_id, lambda current: {"status": jobs.RUNNING} if current.status == jobs.QUEUED else None
    )
    counter = [0]
    pieces = _csv_pieces(storage, dataset, safe=bool(job.get("safeCells", True)), counter=counter)
    blob = storage.blobs.get_blob_client(EXPORTS_CONTAINER, f"{job_id}.csv")
    blob.upload_blob(
        pieces, overwrite=True, content_settings=ContentSettings(content_type="text/csv; charset=utf-8")
    )
    size = blob.get_blob_properties().size
    finished = jobs.change_job(
        storage,
        job_id,
        lambda current: (
            None
            if current.status in jobs.FINISHED
            else {"status": jobs.COMPLETED, "rows": counter[0], "size": size}
        ),
    )
    return finished.status if finished else "missing"


def fail_export(*, storage: Storage, job_id: str, error: str) -> None:
    """Mark an export failed with a reason people can read."""
    jobs.change_job(
        storage,
        job_id,
        lambda current: None if current.status in jobs.FINISHED else {"status": jobs.FAILED, "error": error},
    )


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
        if counter[0]:
            raise  # the table went away mid-export (a replace switched, or a delete): start again
        # Nothing imported yet: the table does not exist, and the export is the header alone.
    if pending:
        yield out.getvalue().encode("utf-8")
