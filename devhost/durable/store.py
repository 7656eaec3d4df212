"""The task hub's storage: one table (instances, history, inbox, timers, work) and a blob container.

Every row of an instance lives in the partition named by its instance id, so each orchestrator step
is one table batch transaction: the instance row (ETag-conditional), the step's history row, the
inbox/timer/work rows it consumes and the timer/work rows it creates. Row keys:

- `s`: the instance (name, status, execution id, input/output/custom status, parent link, flags)
- `h-<execution>-<step>`: the history events one step appended, as JSON
- `i-<time>-<id>`: inbox messages (start, external events, terminate/suspend/resume, sub-orchestration
  results)
- `t-<execution>-<sequence>`: durable timers, with their due time
- `w-<execution>-<first sequence>`: a chunk of scheduled activities, with a lease (owner, lockedUntil)

JSON documents longer than fit in a row spill to `<hub>-largemessages/<instance id as hex>/<uuid>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableEntity, TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient
from azure.storage.blob.aio import ContainerClient

from devhost.storage import StorageAccounts

STATE_KEY = "s"
HISTORY_PREFIX = "h-"
INBOX_PREFIX = "i-"
TIMER_PREFIX = "t-"
WORK_PREFIX = "w-"
MAX_BATCH = 100
# A table string property holds 64 KiB (32K UTF-16 characters); a row at most 1 MiB. Keep well inside both.
PROPERTY_CHARS = 30_000
INLINE_CHARS = 180_000
BLOB_PROPERTY = "Blob"
_BLOB_CACHE_SIZE = 256
_BLOCK_BYTES = 512 * 1024
Operation = tuple[Any, ...]


def history_key(execution_id: str, step: int) -> str:
    """Row key of the history row one step of an execution wrote."""
    return f"{HISTORY_PREFIX}{execution_id}-{step:08d}"


def timer_key(execution_id: str, timer_id: int) -> str:
    """Row key of a durable timer."""
    return f"{TIMER_PREFIX}{execution_id}-{timer_id:08d}"


def work_key(execution_id: str, first_task_id: int) -> str:
    """Row key of a chunk of activities, named by its first sequence number."""
    return f"{WORK_PREFIX}{execution_id}-{first_task_id:08d}"


def inbox_key() -> str:
    """A new inbox row key; keys sort in arrival order (time first), ties broken by a random suffix."""
    return f"{INBOX_PREFIX}{uuid.uuid1().time:020d}-{uuid.uuid4().hex[:8]}"


def blob_folder(instance_id: str) -> str:
    """The blob prefix of an instance's large messages (its id hex-encoded: no id is another's prefix)."""
    return f"{instance_id.encode('utf-8').hex()}/"


def if_unchanged(etag: str, mode: UpdateMode = UpdateMode.REPLACE) -> dict[str, Any]:
    """The keyword arguments of a batch update that applies only while the row still has `etag`."""
    return {"mode": mode, "etag": etag, "match_condition": MatchConditions.IfNotModified}


def execution_of(row_key: str) -> str:
    """The execution id inside a history, timer or work row key."""
    return row_key[2:].rsplit("-", 1)[0]


class TaskHubStore:
    """Table and blob access for one task hub."""

    def __init__(self, storage: StorageAccounts, connection: str | None, hub: str) -> None:
        self.hub = hub
        self.table_name = f"{hub}Instances"
        self.container_name = f"{hub.lower()}-largemessages"
        self.table: TableClient = storage.table_service(connection).get_table_client(self.table_name)
        # Its own client: large messages go up in blocks, so no request body passes 1 MiB (aiohttp warns).
        self.container = ContainerClient.from_connection_string(
            storage.connection_string(connection),
            self.container_name,
            max_single_put_size=_BLOCK_BYTES,
            max_block_size=_BLOCK_BYTES,
            retry_total=3,
        )
        self._blob_cache: OrderedDict[str, str] = OrderedDict()
        self._ready = False
        self._ready_lock = asyncio.Lock()

    async def ensure(self) -> None:
        """Create the table and the large-message container once."""
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            service_table = self.table
            with contextlib.suppress(ResourceExistsError):
                await service_table.create_table()
            with contextlib.suppress(ResourceExistsError):
                await self.container.create_container()
            self._ready = True

    async def close(self) -> None:
        """Close the large-message container client (the table client belongs to StorageAccounts)."""
        await self.container.close()

    # Documents: JSON text stored inline across properties `<prefix>0..n`, or in a blob.

    async def put_document(
        self,
        entity: dict[str, Any],
        prefix: str,
        text: str | None,
        instance_id: str,
        *,
        limit: int = INLINE_CHARS,
    ) -> str | None:
        """Store `text` in the entity (or a new blob when longer than `limit`: its name is returned)."""
        if text is None:
            return None
        if len(text) > limit:
            name = f"{blob_folder(instance_id)}{uuid.uuid4().hex}"
            await self.container.upload_blob(name, text.encode("utf-8"), overwrite=True)
            self._remember(name, text)
            entity[f"{prefix}{BLOB_PROPERTY}"] = name
            return name
        parts = [text[start : start + PROPERTY_CHARS] for start in range(0, len(text), PROPERTY_CHARS)] or [
            ""
        ]
        for index, part in enumerate(parts):
            entity[f"{prefix}{index}"] = part
        return None

    async def get_document(self, entity: Mapping[str, Any], prefix: str) -> str | None:
        """Read a document stored by `put_document` (None when absent)."""
        blob = entity.get(f"{prefix}{BLOB_PROPERTY}")
        if blob:
            return await self._download(str(blob))
        if f"{prefix}0" not in entity:
            return None
        parts: list[str] = []
        index = 0
        while f"{prefix}{index}" in entity:
            parts.append(str(entity[f"{prefix}{index}"]))
            index += 1
        return "".join(parts)

    def _remember(self, name: str, text: str) -> None:
        self._blob_cache[name] = text
        self._blob_cache.move_to_end(name)
        while len(self._blob_cache) > _BLOB_CACHE_SIZE:
            self._blob_cache.popitem(last=False)

    async def _download(self, name: str) -> str:
        cached = self._blob_cache.get(name)
        if cached is not None:
            return cached
        stream = await self.container.download_blob(name)
        text = (await stream.readall()).decode("utf-8")
        self._remember(name, text)
        return text

    # Rows.

    async def read_state(self, instance_id: str) -> TableEntity | None:
        """Point-read an instance row."""
        try:
            return await self.table.get_entity(instance_id, STATE_KEY)
        except ResourceNotFoundError:
            return None

    async def load_partition(self, instance_id: str) -> list[TableEntity]:
        """Every row of one instance (one query: Azurite scans the table per query anyway)."""
        escaped = instance_id.replace("'", "''")
        return [row async for row in self.table.query_entities(f"PartitionKey eq '{escaped}'")]

    async def submit(self, operations: Sequence[Operation]) -> list[Mapping[str, Any]]:
        """Run one batch transaction (all rows in one partition, at most 100)."""
        if not operations:
            return []
        return list(await self.table.submit_transaction(list(operations)))

    async def scan(self) -> list[TableEntity]:
        """Rows that mean work: inbox, timers, activity chunks, and instance rows with a pending flag."""
        query = (
            f"(RowKey ge '{INBOX_PREFIX}' and RowKey lt 'i.')"
            f" or (RowKey ge '{TIMER_PREFIX}' and RowKey lt 't.')"
            f" or (RowKey ge '{WORK_PREFIX}' and RowKey lt 'w.')"
            f" or (RowKey eq '{STATE_KEY}' and (Reconcile eq true or NotifyParent eq true))"
        )
        return [row async for row in self.table.query_entities(query)]

    async def list_states(self) -> list[TableEntity]:
        """Every instance row of the hub."""
        return [row async for row in self.table.query_entities(f"RowKey eq '{STATE_KEY}'")]

    async def delete_rows(self, instance_id: str, row_keys: Sequence[str]) -> None:
        """Delete rows of one instance, in batches; rows already gone are fine (best effort, idempotent)."""
        for start in range(0, len(row_keys), MAX_BATCH):
            batch = row_keys[start : start + MAX_BATCH]
            try:
                await self.submit([("delete", {"PartitionKey": instance_id, "RowKey": key}) for key in batch])
            except TableTransactionError as error:
                if error.status_code != 404:
                    raise
                for row_key in batch:  # some were gone already: one by one (a missing row is no error)
                    await self.table.delete_entity(instance_id, row_key)

    async def list_blobs(self, instance_id: str) -> list[str]:
        """The names of the instance's large messages."""
        prefix = blob_folder(instance_id)
        return [blob.name async for blob in self.container.list_blobs(name_starts_with=prefix)]

    async def delete_blob_names(self, names: Sequence[str]) -> None:
        """Delete large messages by name (ones already gone are fine)."""
        for name in names:
            with contextlib.suppress(ResourceNotFoundError):
                await self.container.delete_blob(name)
            self._blob_cache.pop(name, None)
