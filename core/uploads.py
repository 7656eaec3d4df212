"""Uploads: hand out a valet-key URL or take a small body, commit, profile, and show the result."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableEntity, UpdateMode
from azure.storage.blob import BlobSasPermissions

from core.auth import Principal
from core.errors import Conflict, Invalid, LimitExceeded, NotFound, RetryLater
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
# Table Storage strings hold at most 64 KiB of UTF-16, so a longer cell could never be imported.
MAX_FIELD_CHARS = 32_768
RESEND_AFTER = timedelta(minutes=2)
# functionTimeout (10 min) x maxDequeueCount (5), plus the retry delays: after this, nobody is working on it.
PROFILING_DEADLINE = timedelta(minutes=60)
# An upload URL is good for at most 15 minutes: an upload still pending a day later was abandoned.
ABANDONED_AFTER = timedelta(days=1)


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
    blob_etag: str | None = None

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
            blob_etag=entity.get("blobEtag"),
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
    url, expires_at = storage.blob_sas_url(
        UPLOADS_CONTAINER, upload_id, BlobSasPermissions(create=True, write=True), settings.upload_url_minutes
    )
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
    if len(body) > settings.upload_max_bytes:  # the upload limit binds inline bodies too
        raise LimitExceeded(
            f"The file is {len(body):,} bytes; the limit is {settings.upload_max_bytes:,} bytes."
        )
    if len(body) > settings.inline_upload_max_bytes:
        raise LimitExceeded(
            f"The body is {len(body):,} bytes; send at most {settings.inline_upload_max_bytes:,} bytes "
            "inline, or ask for an upload URL with {fileName, size} for bigger files."
        )
    upload_id = new_id()
    stored = storage.blobs.get_blob_client(UPLOADS_CONTAINER, upload_id).upload_blob(body, overwrite=True)
    entity = _new_entity(upload_id, owner, name, UPLOADED, len(body))
    entity["blobEtag"] = stored["etag"]
    entity["traceparent"] = current_traceparent() or ""  # a re-sent command continues this trace
    _uploads(storage).create_entity(entity)
    _send_profile_request(storage, upload_id)
    return {
        "id": upload_id,
        "status": UPLOADED,
        "fileName": name,
        "size": len(body),
        "expiresAt": None,
        "maxBytes": min(settings.inline_upload_max_bytes, settings.upload_max_bytes),
    }


def commit_upload(*, storage: Storage, settings: Settings, principal: Principal, upload_id: str) -> Upload:
    """Check the file arrived, mark the upload `uploaded` and queue its profiling (safe to repeat)."""
    upload = _not_failed(get_upload(storage=storage, principal=principal, upload_id=upload_id))
    if upload.status in (PROFILING, PROFILED):
        return upload
    if upload.status == PENDING:
        blob = storage.blobs.get_blob_client(UPLOADS_CONTAINER, upload_id)
        try:
            properties = blob.get_blob_properties()
        except ResourceNotFoundError as error:
            raise Conflict("No file has been uploaded yet: PUT it to uploadUrl, then commit.") from error
        if properties.size > settings.upload_max_bytes:
            with contextlib.suppress(ResourceNotFoundError):
                blob.delete_blob()
            _try_update(
                storage,
                upload,
                status=FAILED,
                size=properties.size,
                error="The file is larger than the upload limit.",
            )
            raise LimitExceeded(
                f"The file is {properties.size:,} bytes; the limit is {settings.upload_max_bytes:,} bytes."
            )
        # The blob's ETag pins what was committed: the upload URL stays valid for a while, and a
        # later overwrite must not change what gets profiled or imported.
        committed = _try_update(
            storage,
            upload,
            status=UPLOADED,
            size=properties.size,
            blobEtag=properties.etag,
            traceparent=current_traceparent() or "",  # a re-sent command continues this trace
        )
        if committed is None:  # a concurrent commit won (its command is on its way), or the sweeper
            return _not_failed(get_upload(storage=storage, principal=principal, upload_id=upload_id))
        upload = committed
    # Status `uploaded`: (re)send the command; a repeat after a lost send lands here too.
    _send_profile_request(storage, upload_id)
    return upload


def _not_failed(upload: Upload) -> Upload:
    if upload.status == FAILED:
        raise Conflict(f"This upload failed and cannot be committed: {upload.error}")
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
        try:
            view.update(json.loads(blob.download_blob().readall()))
        except ResourceNotFoundError as error:
            log.error("Upload %s is profiled but its profile blob is missing", upload.id)
            raise RetryLater("The profile of this upload cannot be read right now.") from error
    return view


def profile_upload(*, storage: Storage, settings: Settings, upload_id: str) -> str:
    """Profile an uploaded file (the worker's job); return the upload's status afterwards. Idempotent."""
    entity = _load(storage, upload_id)
    if entity is None:
        log.warning("Profile request for unknown upload %s dropped", upload_id)
        return "missing"
    upload = Upload.from_entity(entity)
    if upload.status in FINISHED or upload.status == PENDING:
        return upload.status
    if upload.status == UPLOADED:
        claimed = _try_update(storage, upload, status=PROFILING)
        if claimed is None:  # a duplicate delivery got there first
            return _status(storage, upload_id)
        upload = claimed
    try:
        profile = profile_stream(
            _blob_chunks(storage, upload_id, entity.get("blobEtag")),
            max_columns=settings.max_columns,
            max_field_chars=MAX_FIELD_CHARS,
        )
    except ProfileFailed as failure:
        return _finish(storage, upload, status=FAILED, error=str(failure))
    except ResourceNotFoundError:
        return _finish(storage, upload, status=FAILED, error="The uploaded file is gone; upload it again.")
    except ResourceModifiedError:
        return _finish(
            storage,
            upload,
            status=FAILED,
            error="The file was changed after it was committed; upload it again.",
        )
    profile_json = json.dumps(profile.to_json(), separators=(",", ":"), ensure_ascii=False)
    storage.blobs.get_blob_client(PROFILES_CONTAINER, f"{upload_id}.json").upload_blob(
        profile_json.encode("utf-8"), overwrite=True
    )
    return _finish(storage, upload, status=PROFILED, rowCount=profile.row_count, encoding=profile.encoding)


def is_last_attempt(dequeue_count: int | None, settings: Settings) -> bool:
    """Tell whether the host will poison this message if this attempt fails."""
    return (dequeue_count or 1) >= settings.max_dequeue_count


def record_attempt_failure(*, storage: Storage, upload_id: str, error: BaseException, final: bool) -> None:
    """Note a failed profiling attempt; on the last allowed attempt, mark the upload failed."""
    for _ in range(5):  # re-read and retry when another writer changed the upload meanwhile
        entity = _load(storage, upload_id)
        if entity is None or entity["status"] in FINISHED:
            return
        attempts = int(entity.get("attempts", 0)) + 1
        changes: dict[str, Any] = {"attempts": attempts, "lastError": f"{type(error).__name__}: {error}"}
        if final:
            # Users see a plain reason; the exception (which may hold URLs) stays in logs and lastError.
            changes.update(
                status=FAILED,
                error=f"Profiling failed after {attempts} attempts because of an "
                "internal error; the operators can look it up by the upload id.",
            )
        if _try_update(storage, Upload.from_entity(entity), **changes) is not None:
            return


def sweep_uploads(*, storage: Storage, now: datetime | None = None) -> dict[str, int]:
    """Re-send lost profile commands, fail uploads whose profiling never finished, and delete the files of
    uploads never committed."""
    now = now or _now()
    table = _uploads(storage)
    counts = {"resent": 0, "expired": 0, "abandoned": 0}
    for entity in table.query_entities(
        "status eq @status and updatedAt lt @before",
        parameters={"status": UPLOADED, "before": now - RESEND_AFTER},
    ):
        touched = _try_update(storage, Upload.from_entity(entity), status=UPLOADED)
        if touched is not None:
            _send_profile_request(storage, touched.id, entity.get("traceparent") or None)
            counts["resent"] += 1
    for entity in table.query_entities(
        "status eq @status and updatedAt lt @before",
        parameters={"status": PROFILING, "before": now - PROFILING_DEADLINE},
    ):
        error = "Profiling did not finish in time; upload the file again."
        if _try_update(storage, Upload.from_entity(entity), status=FAILED, error=error) is not None:
            counts["expired"] += 1
    for entity in table.query_entities(
        "status eq @status and updatedAt lt @before",
        parameters={"status": PENDING, "before": now - ABANDONED_AFTER},
    ):
        # Failed first, on its ETag: a commit at the same moment either wins (and keeps its file) or is
        # refused. The file goes after; `fileLeft` keeps it on the list below if a crash comes in between.
        error = "The upload was never committed, and its file was deleted; upload the file again."
        upload = Upload.from_entity(entity)
        if _try_update(storage, upload, status=FAILED, error=error, fileLeft=True) is not None:
            counts["abandoned"] += 1
    for entity in table.query_entities(
        "status eq @status and fileLeft eq true", parameters={"status": FAILED}
    ):
        with contextlib.suppress(ResourceNotFoundError):
            storage.blobs.get_blob_client(UPLOADS_CONTAINER, entity["PartitionKey"]).delete_blob()
        _try_update(storage, Upload.from_entity(entity), fileLeft=False)
    return counts


def parse_message(body: bytes) -> tuple[str, str | None]:
    """Read `{id, traceparent}` from a queue message; raise Invalid for anything else."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise Invalid("Queue message is not JSON.") from error
    if not isinstance(message, dict) or not isinstance(message.get("id"), str) or not is_id(message["id"]):
        raise Invalid("Queue message has no valid id.")
    traceparent = message.get("traceparent")
    return message["id"], traceparent if isinstance(traceparent, str) else None


def _send_profile_request(storage: Storage, upload_id: str, traceparent: str | None = None) -> None:
    """Queue the command; if the send fails, the sweeper re-sends it (the upload stays `uploaded`) in the
    trace of the request that committed the upload (`traceparent`)."""
    message = {"id": upload_id, "traceparent": traceparent or current_traceparent()}  # ids only
    try:
        storage.send(PROFILE_QUEUE, message)
    except AzureError:
        log.exception("Could not queue profiling of upload %s; the sweeper will re-send it", upload_id)


def _uploads(storage: Storage) -> TableClient:
    return storage.tables.get_table_client(UPLOADS_TABLE)


def _load(storage: Storage, upload_id: str) -> TableEntity | None:
    if not is_id(upload_id):
        return None
    try:
        return _uploads(storage).get_entity(upload_id, ROW_KEY)
    except ResourceNotFoundError:
        return None


def _status(storage: Storage, upload_id: str) -> str:
    entity = _load(storage, upload_id)
    return "missing" if entity is None else str(entity["status"])


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


def _try_update(storage: Storage, upload: Upload, **changes: Any) -> Upload | None:
    """Merge `changes` if nobody changed the upload since it was read (ETag); None if somebody did."""
    for key in ("error", "lastError"):
        if changes.get(key):
            changes[key] = str(changes[key])[:_MAX_ERROR_CHARS]
    now = _now()
    try:
        result = _uploads(storage).update_entity(
            {"PartitionKey": upload.id, "RowKey": ROW_KEY, "updatedAt": now, **changes},
            mode=UpdateMode.MERGE,
            etag=upload.etag,
            match_condition=MatchConditions.IfNotModified,
        )
    except ResourceModifiedError:
        return None
    return replace(
        upload,
        status=changes.get("status", upload.status),
        size=changes.get("size", upload.size),
        error=changes.get("error", upload.error),
        updated_at=now,
        etag=result["etag"],
    )


def _finish(storage: Storage, upload: Upload, **changes: Any) -> str:
    """Record the outcome; if another delivery finished first, keep what it recorded."""
    finished = _try_update(storage, upload, **changes)
    return finished.status if finished is not None else _status(storage, upload.id)


def _blob_chunks(storage: Storage, upload_id: str, etag: str | None) -> Iterator[bytes]:
    blob = storage.blobs.get_blob_client(UPLOADS_CONTAINER, upload_id)
    condition = MatchConditions.IfNotModified if etag else None
    yield from blob.download_blob(max_concurrency=1, etag=etag, match_condition=condition).chunks()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
