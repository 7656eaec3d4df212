"""Idempotency-Key: a repeated POST with the same key gets the first answer instead of doing it again.

The first request claims the key (a conditional create), does the work and stores its answer; a repeat
with the same request replays that answer, a repeat with a different request is refused (422), and a
repeat while the first is still running gets 409. Failed requests (4xx/5xx) release the key, so the
caller can fix the request and send it again with the same key. A claim left by a process that died
is taken over after ``STALE_CLAIM``. Keys are kept for ``KEEP_KEYS`` (``forget_old_keys``, hourly).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableEntity, UpdateMode

from core import jobs
from core.errors import BadRequest, Conflict, Invalid
from core.rows import utf16_units
from core.storage import IDEMPOTENCY_TABLE, Storage

log = logging.getLogger(__name__)

MAX_KEY_CHARS: Final = 255
MAX_STORED_BODY_UNITS: Final = 30_000  # UTF-16 units, as Table Storage counts them (≤ 32,767 a string)
STALE_CLAIM: Final = timedelta(minutes=2)
KEEP_KEYS: Final = timedelta(hours=24)  # how long a key's answer is replayed (as common APIs do)
CLAIM_ATTEMPTS: Final = 3
_STILL_RUNNING: Final = "A request with this Idempotency-Key is still being processed; try again shortly."


@dataclass(frozen=True)
class Answer:
    """A stored answer to replay."""

    status: int
    body: str
    location: str | None


def _table(storage: Storage) -> TableClient:
    return storage.tables.get_table_client(IDEMPOTENCY_TABLE)


def _keys(user_id: str, key: str) -> tuple[str, str]:
    if not key or len(key) > MAX_KEY_CHARS or not key.isprintable():
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable characters.")
    return hashlib.sha256(user_id.encode()).hexdigest()[:40], hashlib.sha256(key.encode()).hexdigest()[:40]


def fingerprint(method: str, target: str, body: bytes, *, content_type: str = "") -> str:
    """Identify a request, so a key reused for another request can be told apart.

    `target` is the path with its query string: both, and the content type, can change what is done.
    """
    head = f"{method} {target}\n{content_type}\n".encode()
    return hashlib.sha256(head + body).hexdigest()


def claim(storage: Storage, *, user_id: str, key: str, request: str) -> Answer | None:
    """Claim the key for this request, or return the answer stored for it; raise if it cannot be used."""
    partition, row = _keys(user_id, key)
    table = _table(storage)
    for _ in range(CLAIM_ATTEMPTS):
        entity = {
            "PartitionKey": partition,
            "RowKey": row,
            "request": request,
            "state": "pending",
            "claimedAt": jobs.now(),
        }
        try:
            table.create_entity(entity)
            return None
        except ResourceExistsError:
            pass
        try:  # its request may fail and release the claim before we read or take it over: claim afresh
            stored = table.get_entity(partition, row)
            return _claimed(table, stored, entity)
        except ResourceNotFoundError:
            continue
    raise Conflict(_STILL_RUNNING)  # released and claimed again each time we looked: someone is busy


def _claimed(table: TableClient, stored: TableEntity, entity: dict[str, Any]) -> Answer | None:
    """Replay or refuse a claim someone else holds, or take it over if its process died."""
    if stored["request"] != entity["request"]:
        raise Invalid(
            "This Idempotency-Key was used for a different request; use a new key for a new request."
        )
    if stored["state"] == "done":
        return Answer(int(stored["status"]), stored.get("body", ""), stored.get("location") or None)
    if stored["claimedAt"] > jobs.now() - STALE_CLAIM:
        raise Conflict(_STILL_RUNNING)
    try:  # the first request's process died: take its claim over
        table.update_entity(
            entity,
            mode=UpdateMode.REPLACE,
            etag=stored.metadata["etag"],
            match_condition=MatchConditions.IfNotModified,
        )
    except ResourceModifiedError as error:
        raise Conflict(_STILL_RUNNING) from error
    return None


def remember(storage: Storage, *, user_id: str, key: str, answer: Answer) -> None:
    """Store the answer of a successful request, to replay for repeats."""
    partition, row = _keys(user_id, key)
    # Too big to keep whole, or refused: a repeat gets where to find the resource. A claim left pending
    # would be taken over after STALE_CLAIM and the work done a second time.
    short = json.dumps({"location": answer.location, "detail": "Repeated request; GET the location."})
    bodies = [answer.body, short] if utf16_units(answer.body) <= MAX_STORED_BODY_UNITS else [short]
    entity = {"PartitionKey": partition, "RowKey": row, "state": "done", "status": answer.status}
    table = _table(storage)
    for body in bodies:
        try:
            table.update_entity(
                {**entity, "body": body, "location": answer.location or ""}, mode=UpdateMode.MERGE
            )
            return
        except AzureError:
            log.exception("Could not store the answer for an Idempotency-Key")
    # The work is done and answered; a repeat within STALE_CLAIM gets 409, later ones run again.


def release(storage: Storage, *, user_id: str, key: str) -> None:
    """Forget a claim whose request failed, so the same key can be sent again."""
    partition, row = _keys(user_id, key)
    _table(storage).delete_entity(partition, row)  # a missing entity is no error


def answer_of(status: int, body: Any, location: str | None) -> Answer:
    """Build an Answer from a response's parts."""
    text = body.decode("utf-8") if isinstance(body, bytes) else str(body)
    return Answer(status, text, location)


def forget_old_keys(storage: Storage, *, now: datetime | None = None) -> int:
    """Delete the keys claimed more than KEEP_KEYS ago; return how many. A key claimed again meanwhile
    (a stale claim taken over) changed its ETag and stays."""
    table = _table(storage)
    forgotten = 0
    before = (now or jobs.now()) - KEEP_KEYS
    for entity in table.query_entities("claimedAt lt @before", parameters={"before": before}):
        try:
            table.delete_entity(
                entity["PartitionKey"],
                entity["RowKey"],
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
            forgotten += 1
        except (ResourceModifiedError, ResourceNotFoundError):
            continue
    return forgotten
