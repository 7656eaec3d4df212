"""Uploads: hand out a valet-key URL or take a small body, commit, profile, and show the result."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableEntity, UpdateMode
from azure.storage.blob import BlobSasPermissions

from core.auth import Principal
from core.errors import Conflict, Invalid, LimitExceeded, NotFound
from core.ids import is_id, new_id
from core.profiling import ProfileFailed, profile_stream
from core.settings import Settings
from core.storage import PROFILE_QUEUE, PROFILES_CONTAINER, UPLOADS_CONTAINER, UPLOADS_TABLE, Storage
from core.telemetry import current_traceparent

log = logging.getLogger(__name__)

ROW_KEY = "upload"
PENDING, UPLOADED, PROFILING, PROFILED, FAILED = "pending", "uploaded", "profiling", "profiled", "failed"
FINISHED = frozenset({PROFILED, FAILED})
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_MAX_FILE_NAME = 255
_MAX_ERROR_CHARS = 2_000


@dataclass(frozen=True)
class Upload:
    """An upload as the API shows it (without its profile)."""

    id: str
    owner: str
    file_name: str
    status: str
    size: int | None
    created_at: datetime
    updated_at: datetime
    error: str | None
    etag: str

    @classmethod
    def from_entity(cls, entity: TableEntity) -> Upload:
        return cls(
            id=entity["PartitionKey"],
            owner=entity["owner"],
            file_name=entity["fileName"],
            status=entity["status"],
            size=entity.get("size"),
            created_at=entity["createdAt"],
            updated_at=entity["updatedAt"],
            error=entity.get("error"),
            etag=entity.metadata["etag"] or "",
        )


def _now() -> datetime:
    return datetime.now(UTC)


def clean_file_name(file_name: object) -> str:
    """Return the display name for an uploaded file, or raise Invalid saying what is wrong with it."""
    if not isinstance(file_name, str) or not file_name.strip():
        raise Invalid(
            "fileName must be a non-empty string.", problems=[{"field": "fileName", "code": "required"}]
        )
    name = file_name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or _CONTROL_CHARS.search(name):
        raise Invalid(
            "fileName contains no usable name or has control characters.",
            problems=[{"field": "fileName", "code": "invalid"}],
        )
    if len(name) > _MAX_FILE_NAME:
        raise Invalid(
            f"fileName is {len(name)} characters long; the limit is {_MAX_FILE_NAME}.",
            problems=[{"field": "fileName", "code": "maxLength"}],
        )
    return name


def check_size(size: object, *, max_bytes: int) -> int:
    """Validate a declared file size in bytes."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise Invalid(
            "size must be the file's size in bytes, a whole number ≥ 0.",
            problems=[{"field": "size", "code": "type"}],
        )
    if size > max_bytes:
        raise LimitExceeded(f"The file is {size:,} bytes; the limit is {max_bytes:,} bytes.")
    return size


def create_upload(
    *, storage: Storage, settings: Settings, owner: Principal, file_name: object, size: object
) -> dict[str, Any]:
    """Record a pending upload and sign a write-only URL for its blob (the valet key)."""
    name = clean_file_name(file_name)
    declared = check_size(size, max_bytes=settings.upload_max_bytes)
    upload_id = new_id()
    url = storage.blob_sas_url(
        UPLOADS_CONTAINER, upload_id, BlobSasPermissions(create=True, write=True), settings.upload_url_minutes
    )
    expires_at = _now() + timedelta(minutes=settings.upload_url_minutes)
    _uploads(storage).create_entity(_new_entity(upload_id, owner, name, PENDING, declared))
    return {
        "id": upload_id,
        "status": PENDING,
        "fileName": name,
        "uploadUrl": url,
        "expiresAt": _iso(expires_at),
        "maxBytes": settings.upload_max_bytes,
    }


def store_upload(
    *, storage: Storage, settings: Settings, owner: Principal, file_name: object, body: bytes
) -> dict[str, Any]:
    """Store a small file sent in the request body and commit it at once."""
    name = clean_file_name(file_name)
    if len(body) > settings.inline_upload_max_bytes:
        raise LimitExceeded(
            f"The body is {len(body):,} bytes; send at most {settings.inline_upload_max_bytes:,} bytes "
            "inline, or ask for an upload URL with {fileName, size} for bigger files."
        )
    upload_id = new_id()
    storage.blobs.get_blob_client(UPLOADS_CONTAINER, upload_id).upload_blob(body, overwrite=True)
    _uploads(storage).create_entity(_new_entity(upload_id, owner, name, UPLOADED, len(body)))
    storage.send(PROFILE_QUEUE, _message(upload_id))
    return {
        "id": upload_id,
        "status": UPLOADED,
        "fileName": name,
        "size": len(body),
        "expiresAt": None,
        "maxBytes": settings.inline_upload_max_bytes,
    }


def commit_upload(*, storage: Storage, settings: Settings, principal: Principal, upload_id: str) -> Upload:
    """Check the file arrived, mark the upload `uploaded` and queue its profiling (safe to repeat)."""
    upload = get_upload(storage=storage, principal=principal, upload_id=upload_id)
    if upload.status in FINISHED or upload.status == PROFILING:
        return upload
    if upload.status == PENDING:
        try:
            size = storage.blobs.get_blob_client(UPLOADS_CONTAINER, upload_id).get_blob_properties().size
        except ResourceNotFoundError as error:
            raise Conflict("No file has been uploaded yet: PUT it to uploadUrl, then commit.") from error
        if size > settings.upload_max_bytes:
            storage.blobs.get_blob_client(UPLOADS_CONTAINER, upload_id).delete_blob()
            _update(
                storage, upload, status=FAILED, size=size, error="The file is larger than the upload limit."
            )
            raise LimitExceeded(
                f"The file is {size:,} bytes; the limit is {settings.upload_max_bytes:,} bytes."
            )
        try:
            upload = _update(storage, upload, status=UPLOADED, size=size)
        except ResourceModifiedError:
            # A concurrent commit won the race; its message is on its way.
            return get_upload(storage=storage, principal=principal, upload_id=upload_id)
    # Status `uploaded`: (re)send the command; a crash after the status change above lands here on retry.
    storage.send(PROFILE_QUEUE, _message(upload_id))
    return upload


def get_upload(*, storage: Storage, principal: Principal, upload_id: str) -> Upload:
    """Load an upload the caller may see; someone else's is reported as not found."""
    entity = _load(storage, upload_id)
    if entity is None or (entity["owner"] != principal.user_id and not principal.is_admin):
        raise NotFound(f"There is no upload {upload_id!r}.")
    return Upload.from_entity(entity)


def describe_upload(*, storage: Storage, upload: Upload) -> dict[str, Any]:
    """Return the API view of an upload, with its profile once it has one."""
    view: dict[str, Any] = {
        "id": upload.id,
        "status": upload.status,
        "fileName": upload.file_name,
        "size": upload.size,
        "createdAt": _iso(upload.created_at),
        "updatedAt": _iso(upload.updated_at),
    }
    if upload.error:
        view["error"] = upload.error
    if upload.status == PROFILED:
        blob = storage.blobs.get_blob_client(PROFILES_CONTAINER, f"{upload.id}.json")
        view.update(json.loads(blob.download_blob().readall()))
    return view


def profile_upload(*, storage: Storage, settings: Settings, upload_id: str) -> str:
    """Profile an uploaded file (the worker's job); return the upload's final status. Idempotent."""
    entity = _load(storage, upload_id)
    if entity is None:
        log.warning("Profile request for unknown upload %s dropped", upload_id)
        return "missing"
    upload = Upload.from_entity(entity)
    if upload.status in FINISHED or upload.status == PENDING:
        return upload.status
    if upload.status != PROFILING:
        upload = _update(storage, upload, status=PROFILING)
    try:
        profile = profile_stream(_blob_chunks(storage, upload_id), max_columns=settings.max_columns)
    except ProfileFailed as failure:
        _update(storage, upload, status=FAILED, error=str(failure))
        return FAILED
    except ResourceNotFoundError:
        _update(
            storage, upload, status=FAILED, error="The uploaded file is no longer there; upload it again."
        )
        return FAILED
    profile_json = json.dumps(profile.to_json(), separators=(",", ":"), ensure_ascii=False)
    storage.blobs.get_blob_client(PROFILES_CONTAINER, f"{upload_id}.json").upload_blob(
        profile_json.encode("utf-8"), overwrite=True
    )
    _update(storage, upload, status=PROFILED, rowCount=profile.row_count, encoding=profile.encoding)
    return PROFILED


def record_attempt_failure(*, storage: Storage, upload_id: str, error: BaseException, final: bool) -> None:
    """Note a failed profiling attempt; on the last allowed attempt, mark the upload failed."""
    entity = _load(storage, upload_id)
    if entity is None or entity["status"] in FINISHED:
        return
    reason = f"{type(error).__name__}: {error}"[:_MAX_ERROR_CHARS]
    changes: dict[str, Any] = {"lastError": reason, "attempts": int(entity.get("attempts", 0)) + 1}
    if final:
        changes.update(
            status=FAILED,
            error=f"Profiling failed after {changes['attempts']} attempts; last error: {reason}",
        )
    _uploads(storage).update_entity(
        {"PartitionKey": upload_id, "RowKey": ROW_KEY, "updatedAt": _now(), **changes}, mode=UpdateMode.MERGE
    )


def parse_message(body: bytes) -> tuple[str, str | None]:
    """Read `{id, traceparent}` from a queue message; raise Invalid for anything else."""
    try:
        message = json.loads(body)
    except ValueError as error:
        raise Invalid(f"Queue message is not JSON: {error}") from error
    if not isinstance(message, dict) or not isinstance(message.get("id"), str) or not is_id(message["id"]):
        raise Invalid("Queue message has no valid id.")
    traceparent = message.get("traceparent")
    return message["id"], traceparent if isinstance(traceparent, str) else None


def _message(upload_id: str) -> dict[str, Any]:
    """A command names the upload and carries the trace it belongs to (claim check: no contents)."""
    return {"id": upload_id, "traceparent": current_traceparent()}


def _uploads(storage: Storage) -> TableClient:
    return storage.tables.get_table_client(UPLOADS_TABLE)


def _load(storage: Storage, upload_id: str) -> TableEntity | None:
    if not is_id(upload_id):
        return None
    try:
        return _uploads(storage).get_entity(upload_id, ROW_KEY)
    except ResourceNotFoundError:
        return None


def _new_entity(upload_id: str, owner: Principal, file_name: str, status: str, size: int) -> dict[str, Any]:
    now = _now()
    return {
        "PartitionKey": upload_id,
        "RowKey": ROW_KEY,
        "owner": owner.user_id,
        "fileName": file_name,
        "status": status,
        "size": size,
        "createdAt": now,
        "updatedAt": now,
    }


def _update(storage: Storage, upload: Upload, **changes: Any) -> Upload:
    """Merge `changes` only if nobody changed the upload since we read it (ETag condition)."""
    if changes.get("error"):
        changes["error"] = str(changes["error"])[:_MAX_ERROR_CHARS]
    table = _uploads(storage)
    table.update_entity(
        {"PartitionKey": upload.id, "RowKey": ROW_KEY, "updatedAt": _now(), **changes},
        mode=UpdateMode.MERGE,
        etag=upload.etag,
        match_condition=MatchConditions.IfNotModified,
    )
    return Upload.from_entity(table.get_entity(upload.id, ROW_KEY))


def _blob_chunks(storage: Storage, upload_id: str) -> Iterator[bytes]:
    downloader = storage.blobs.get_blob_client(UPLOADS_CONTAINER, upload_id).download_blob(max_concurrency=1)
    yield from downloader.chunks()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
