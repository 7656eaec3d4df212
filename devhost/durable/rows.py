"""Convert between table rows and the in-memory instance, inbox, timer and work items."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.data.tables import TableEntity

from devhost.durable.history import Event, utc_now
from devhost.durable.instance import ChunkItem, InboxItem, InstanceState, ParentLink, TimerItem
from devhost.durable.replay import prepare_event
from devhost.durable.store import (
    BLOB_PROPERTY,
    HISTORY_PREFIX,
    INBOX_PREFIX,
    PROPERTY_CHARS,
    STATE_KEY,
    TIMER_PREFIX,
    WORK_PREFIX,
    TaskHubStore,
    execution_of,
    inbox_key,
    timer_key,
    work_key,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Input, output and custom status share the instance row: each gets at most three properties inline.
STATE_DOCUMENT_CHARS = 3 * PROPERTY_CHARS
_DOCUMENTS = ("Input", "Output", "CustomStatus")


def as_utc(value: Any) -> datetime:
    """A table datetime (or None) as an aware UTC datetime."""
    if not isinstance(value, datetime):
        return EPOCH
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def new_inbox_row(
    store: TaskHubStore,
    instance_id: str,
    kind: str,
    execution_id: str,
    body: Mapping[str, Any],
    generation: str = "",
) -> tuple[dict[str, Any], InboxItem]:
    """Build an inbox row (and the item it stands for) with a fresh, time-ordered key."""
    row_key = inbox_key()
    row: dict[str, Any] = {
        "PartitionKey": instance_id,
        "RowKey": row_key,
        "Kind": kind,
        "ExecutionId": execution_id,
        "Generation": generation,
    }
    blob = await store.put_document(row, "D", json.dumps(dict(body)), instance_id)
    return row, InboxItem(row_key, kind, execution_id, dict(body), generation, blob or "")


async def inbox_from_row(store: TaskHubStore, row: Mapping[str, Any]) -> InboxItem:
    """Read an inbox row."""
    body = await store.get_document(row, "D")
    return InboxItem(
        str(row["RowKey"]),
        str(row.get("Kind")),
        str(row.get("ExecutionId") or ""),
        json.loads(body) if body else {},
        str(row.get("Generation") or ""),
        str(row.get(f"D{BLOB_PROPERTY}") or ""),
    )


def new_timer_row(instance_id: str, execution_id: str, timer_id: int, due: datetime) -> dict[str, Any]:
    """Build a durable timer row."""
    return {
        "PartitionKey": instance_id,
        "RowKey": timer_key(execution_id, timer_id),
        "ExecutionId": execution_id,
        "TimerId": timer_id,
        "DueAt": due,
    }


def timer_from_row(row: Mapping[str, Any]) -> TimerItem:
    """Read a timer row."""
    return TimerItem(
        str(row["RowKey"]), str(row.get("ExecutionId")), int(row.get("TimerId", -1)), as_utc(row.get("DueAt"))
    )


def new_chunk_row(
    instance_id: str, execution_id: str, task_ids: Sequence[int], owner: str, locked_until: datetime
) -> dict[str, Any]:
    """Build a work row for a chunk of activities, leased to `owner` until `locked_until`."""
    return {
        "PartitionKey": instance_id,
        "RowKey": work_key(execution_id, task_ids[0]),
        "ExecutionId": execution_id,
        "Ids": ",".join(str(task_id) for task_id in task_ids),
        "Owner": owner,
        "LockedUntil": locked_until,
    }


def chunk_from_row(row: Mapping[str, Any]) -> ChunkItem:
    """Read a work row."""
    ids = tuple(int(part) for part in str(row.get("Ids") or "").split(",") if part)
    return ChunkItem(str(row["RowKey"]), str(row.get("ExecutionId")), ids)


async def state_entity(store: TaskHubStore, state: InstanceState) -> dict[str, Any]:
    """Build the instance row for `state` (large input/output/custom status spill to blobs)."""
    row: dict[str, Any] = {
        "PartitionKey": state.instance_id,
        "RowKey": STATE_KEY,
        "Name": state.name,
        "Version": state.version,
        "ExecutionId": state.execution_id,
        "RuntimeStatus": state.status,
        "CreatedTime": state.created,
        "LastUpdatedTime": state.updated,
        "Steps": state.steps,
        "Reconcile": state.reconcile,
        "NotifyParent": state.notify_parent,
        "Generation": state.generation,
    }
    if state.parent is not None:
        row.update(
            ParentInstanceId=state.parent.instance_id,
            ParentExecutionId=state.parent.execution_id,
            ParentTaskId=state.parent.task_id,
        )
    blobs: dict[str, tuple[str, str]] = {}
    for name, text in zip(_DOCUMENTS, (state.input, state.output, state.custom_status), strict=True):
        kept = state.blobs.get(name)
        if kept is not None and text == kept[1]:
            row[f"{name}{BLOB_PROPERTY}"] = kept[0]  # unchanged: not uploaded again
            blobs[name] = kept
            continue
        blob = await store.put_document(row, name, text, state.instance_id, limit=STATE_DOCUMENT_CHARS)
        if blob is not None and text is not None:
            blobs[name] = (blob, text)
    state.blobs = blobs
    return row


def parent_of(row: Mapping[str, Any]) -> ParentLink | None:
    """The parent link stored on an instance row (None for a top-level instance)."""
    if not row.get("ParentInstanceId"):
        return None
    return ParentLink(
        str(row["ParentInstanceId"]),
        str(row.get("ParentExecutionId") or ""),
        int(row.get("ParentTaskId", -1)),
    )


async def state_from_row(store: TaskHubStore, row: Mapping[str, Any]) -> InstanceState:
    """Read an instance row (without history)."""
    parent = parent_of(row)
    documents = [await store.get_document(row, name) for name in _DOCUMENTS]
    return InstanceState(
        instance_id=str(row["PartitionKey"]),
        etag=str(row.metadata["etag"]) if hasattr(row, "metadata") else "",
        name=str(row.get("Name") or ""),
        execution_id=str(row.get("ExecutionId") or ""),
        status=str(row.get("RuntimeStatus") or ""),
        created=as_utc(row.get("CreatedTime")),
        updated=as_utc(row.get("LastUpdatedTime")),
        version=str(row.get("Version") or ""),
        input=documents[0],
        output=documents[1],
        custom_status=documents[2],
        parent=parent,
        steps=int(row.get("Steps") or 0),
        reconcile=bool(row.get("Reconcile")),
        notify_parent=bool(row.get("NotifyParent")),
        generation=str(row.get("Generation") or ""),
        blobs={
            name: (str(row[f"{name}{BLOB_PROPERTY}"]), text)
            for name, text in zip(_DOCUMENTS, documents, strict=True)
            if text is not None and row.get(f"{name}{BLOB_PROPERTY}")
        },
    )


@dataclass
class LoadedInstance:
    """Everything stored for one instance: its state and history, and the rows waiting for it."""

    state: InstanceState | None
    inbox: list[InboxItem] = field(default_factory=list)
    timers: list[TimerItem] = field(default_factory=list)
    chunks: list[tuple[ChunkItem, str, datetime]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)


async def load_instance(store: TaskHubStore, instance_id: str) -> LoadedInstance:
    """Load one instance's rows; history, timers and work of other executions are reported as stale."""
    rows = await store.load_partition(instance_id)
    state_row = next((row for row in rows if row["RowKey"] == STATE_KEY), None)
    loaded = LoadedInstance(None if state_row is None else await state_from_row(store, state_row))
    current = loaded.state.execution_id if loaded.state is not None else None
    history: list[tuple[str, TableEntity]] = []
    for row in rows:
        key = str(row["RowKey"])
        if key.startswith(INBOX_PREFIX):
            loaded.inbox.append(await inbox_from_row(store, row))
        elif key.startswith((HISTORY_PREFIX, TIMER_PREFIX, WORK_PREFIX)) and execution_of(key) != current:
            loaded.stale.append(key)
        elif key.startswith(HISTORY_PREFIX):
            history.append((key, row))
        elif key.startswith(TIMER_PREFIX):
            loaded.timers.append(timer_from_row(row))
        elif key.startswith(WORK_PREFIX):
            loaded.chunks.append(
                (chunk_from_row(row), str(row.metadata["etag"]), as_utc(row.get("LockedUntil")))
            )
    if loaded.state is not None:
        events: list[Event] = []
        for _, row in sorted(history, key=lambda item: item[0]):
            events.extend(json.loads(await store.get_document(row, "D") or "[]"))
            if row.get(f"D{BLOB_PROPERTY}"):
                loaded.state.history_blobs.append(str(row[f"D{BLOB_PROPERTY}"]))
        loaded.state.add_events(events, [prepare_event(event) for event in events])
    return loaded


def stored_events(events: Sequence[Event]) -> str:
    """Serialise events for a history row (IsPlayed is decided at replay time)."""
    return json.dumps([{key: value for key, value in event.items() if key != "IsPlayed"} for event in events])


def fresh_state(
    instance_id: str,
    name: str,
    execution_id: str,
    input_text: str | None,
    version: str,
    parent: ParentLink | None,
) -> InstanceState:
    """The state of an instance that was just created (Pending)."""
    now = utc_now()
    return InstanceState(
        instance_id=instance_id,
        etag="",
        name=name,
        execution_id=execution_id,
        status="Pending",
        created=now,
        updated=now,
        version=version,
        input=input_text,
        parent=parent,
        generation=execution_id,
    )
