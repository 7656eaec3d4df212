"""What operators need: queue depths, poison messages (list, replay, discard) and failed jobs.

Storage queues delete a message only with the pop receipt of a receive, and peeking gives none. So
replay and discard receive the poison queue's messages a page at a time (hiding them briefly), act
on the one asked for and make the others visible again at once. Replay sends the message back to
its queue before deleting it from poison: if the process dies in between, the message is in both
places, and handlers are idempotent, so nothing is lost and nothing is done twice in effect.
"""

from __future__ import annotations

from typing import Any, Final

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueMessage

from core import jobs, uploads
from core.errors import NotFound
from core.paging import decode_cursor, encode_cursor, first_page
from core.storage import QUEUES, UPLOADS_TABLE, Storage

POISON_SUFFIX: Final = "-poison"
PEEK_LIMIT: Final = 32
HIDE_SECONDS: Final = 30
SCAN_PAGES: Final = 20
MAX_BODY_CHARS: Final = 4_000


def _poison(storage: Storage, queue: str) -> QueueClient:
    if queue not in QUEUES:
        raise NotFound(f"There is no queue {queue!r}; the queues are {', '.join(QUEUES)}.")
    return storage.queue(queue + POISON_SUFFIX)


def queue_depths(storage: Storage) -> list[dict[str, Any]]:
    """Return each queue's approximate depth and its poison queue's."""
    return [
        {
            "name": queue,
            "depth": _depth(storage.queue(queue)),
            "poison": _depth(storage.queue(queue + POISON_SUFFIX)),
        }
        for queue in QUEUES
    ]


def _depth(queue: QueueClient) -> int:
    try:
        return int(queue.get_queue_properties().approximate_message_count or 0)
    except ResourceNotFoundError:
        return 0  # a poison queue is created with its first message


def poison_messages(storage: Storage, *, queue: str | None) -> list[dict[str, Any]]:
    """List poison messages (up to 32 per queue, oldest first) without hiding them."""
    found: list[dict[str, Any]] = []
    for name in [queue] if queue else list(QUEUES):
        client = _poison(storage, name)
        try:
            messages = client.peek_messages(max_messages=PEEK_LIMIT)
        except ResourceNotFoundError:
            continue
        found.extend(_message_view(name, message) for message in messages)
    return found


def _message_view(queue: str, message: QueueMessage) -> dict[str, Any]:
    body = _text(message.content)
    return {
        "queue": queue,
        "id": message.id,
        "insertedAt": jobs.iso(message.inserted_on),
        "dequeueCount": message.dequeue_count,
        "body": body[:MAX_BODY_CHARS],
    }


def _text(content: Any) -> str:
    # Messages are decoded from base64 by the queue client; anything else is shown as it came.
    if isinstance(content, bytes):
        return content.decode("utf-8", errors="replace")
    return str(content)


def replay(storage: Storage, *, queue: str, message_id: str) -> None:
    """Send a poison message back to its queue, then remove it from poison."""
    client = _poison(storage, queue)

    def act(message: QueueMessage) -> None:
        storage.queue(queue).send_message(_text(message.content))

    _take(client, message_id, act)


def discard(storage: Storage, *, queue: str, message_id: str) -> None:
    """Remove a poison message for good."""
    _take(_poison(storage, queue), message_id, lambda _message: None)


def _take(client: QueueClient, message_id: str, act: Any) -> None:
    """Receive pages of messages until `message_id`; act on it and delete it; release the others.

    The others stay hidden until the scan ends, so each page brings new messages, then all are
    made visible again at once.
    """
    held: list[QueueMessage] = []
    try:
        for _ in range(SCAN_PAGES):
            try:
                page = list(client.receive_messages(max_messages=PEEK_LIMIT, visibility_timeout=HIDE_SECONDS))
            except ResourceNotFoundError:
                break
            if not page:
                break
            target = next((message for message in page if message.id == message_id), None)
            held.extend(message for message in page if message is not target)
            if target is not None:
                act(target)
                client.delete_message(target)
                return
    finally:
        for message in held:
            client.update_message(message, visibility_timeout=0)
    raise NotFound(f"There is no poison message {message_id!r} on {client.queue_name}.")


def failed_jobs(storage: Storage, *, status: str, cursor: str | None, limit: int) -> dict[str, Any]:
    """List jobs (imports, exports, deletes), then uploads, in a status across all users, a page at a time."""
    state = decode_cursor(cursor) or {}
    items: list[dict[str, Any]] = []
    if state.get("source", "jobs") == "jobs":
        query = jobs.datasets_table(storage).query_entities(
            "RowKey ge 'job-' and RowKey lt 'job.' and status eq @status",
            parameters={"status": status},
            results_per_page=limit,
        )
        entities, token = first_page(query, state.get("t"))
        items = [_job_view(jobs.Job.from_entity(entity)) for entity in entities]
        if token:
            return {"items": items, "next": encode_cursor({"source": "jobs", "t": token})}
        state = {"source": "uploads"}
    room = limit - len(items)
    if room <= 0:
        return {"items": items, "next": encode_cursor(state)}
    query = storage.tables.get_table_client(UPLOADS_TABLE).query_entities(
        "status eq @status", parameters={"status": status}, results_per_page=room
    )
    entities, token = first_page(query, state.get("t"))
    items += [_upload_view(uploads.Upload.from_entity(entity), entity) for entity in entities]
    return {"items": items, "next": encode_cursor({"source": "uploads", "t": token} if token else None)}


def _job_view(job: jobs.Job) -> dict[str, Any]:
    return {
        "kind": job.kind,
        "id": job.id,
        "datasetId": job.dataset_id,
        "owner": job.owner,
        "status": job.status,
        "error": job.get("error"),
        "updatedAt": jobs.iso(job.get("updatedAt")),
    }


def _upload_view(upload: uploads.Upload, entity: Any) -> dict[str, Any]:
    return {
        "kind": "upload",
        "id": upload.id,
        "owner": upload.owner,
        "status": upload.status,
        "error": upload.error,
        "lastError": entity.get("lastError"),
        "updatedAt": jobs.iso(upload.updated_at),
    }
