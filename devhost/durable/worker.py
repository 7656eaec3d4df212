"""Run activities from work rows: lease a chunk, invoke each activity, hand results to the instance's runner.

A chunk row stays until the step that records its last result deletes it, so a crash at any point
leaves it behind; once its lease (`LockedUntil`) lapses any devhost process claims it with an
ETag-conditional update and runs what is still open (activities run at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from devhost.durable.history import utc_now
from devhost.durable.instance import ChunkItem, InstanceState, ResultItem
from devhost.durable.rows import EPOCH

if TYPE_CHECKING:
    from devhost.durable.engine import Engine

logger = logging.getLogger("devhost")
ChunkKey = tuple[str, str]


@dataclass
class HeldChunk:
    """A work row this process has leased: its ETag (renewals change it) and how many tasks still run."""

    instance_id: str
    chunk: ChunkItem
    etag: str
    remaining: int = 0
    lost: bool = False


def decode_input(text: str | None) -> Any:
    """Decode an activity input exactly as the Python worker's activity trigger converter does."""
    return ActivityTriggerConverter.decode(
        meta.Datum(type="json", value=text or "null"), trigger_metadata=None
    )


def encode_output(value: Any) -> str:
    """Encode an activity's return value as the worker does (raises ValueError if not serialisable)."""
    return str(ActivityTriggerConverter.encode(value, expected_type=None).value)


class ActivityWorker:
    """Lease work rows and run their activities, at most `maxConcurrentActivityFunctions` at a time."""

    def __init__(self, engine: Engine, capacity: int, lease_seconds: float) -> None:
        self.engine = engine
        self.capacity = capacity
        self.lease = timedelta(seconds=lease_seconds)
        self.held: dict[ChunkKey, HeldChunk] = {}
        self.claimable: deque[tuple[str, ChunkItem, str]] = deque()
        self.offered: set[ChunkKey] = set()
        self.active = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(capacity)

    def free(self) -> int:
        """Activities this process could start now (none once stopping)."""
        return 0 if self.engine.stopping else max(0, self.capacity - self.active)

    def knows(self, instance_id: str, row_key: str) -> bool:
        """Say whether the work row is held or queued here (the scan leaves such rows alone)."""
        return (instance_id, row_key) in self.held or (instance_id, row_key) in self.offered

    @property
    def busy(self) -> bool:
        """Say whether activities run or wait here."""
        return self.active > 0 or bool(self.claimable)

    def locked_until(self) -> Any:
        """The lease end for a row leased now."""
        return utc_now() + self.lease

    def run(self, instance_id: str, chunk: ChunkItem, etag: str, state: InstanceState) -> None:
        """Start the open activities of a chunk this process holds the lease of."""
        held = HeldChunk(instance_id, chunk, etag)
        self.held[(instance_id, chunk.row_key)] = held
        if self.engine.stopping:
            return  # the lease is given back at shutdown
        for task_id in chunk.task_ids:
            if chunk.execution_id != state.execution_id or task_id not in state.open:
                continue
            event = state.scheduled[task_id]
            held.remaining += 1
            self.active += 1
            self._spawn(self._run_activity(held, task_id, event), f"activity {event.get('Name')} {task_id}")
        if held.remaining == 0:
            # Nothing of it is open (any more): hand the lease back rather than sit on the row.
            self.held.pop((instance_id, chunk.row_key), None)
            self.release_later(instance_id, chunk.row_key, etag)

    def release_later(self, instance_id: str, row_key: str, etag: str) -> None:
        """Give back the lease of a work row this process will not run (in the background)."""
        held = HeldChunk(instance_id, ChunkItem(row_key, "", ()), etag)
        self.engine.later(self._renew(held, EPOCH))

    def offer(self, instance_id: str, chunk: ChunkItem, etag: str) -> None:
        """Queue an unleased (or expired) work row; it is claimed when there is room."""
        key = (instance_id, chunk.row_key)
        if key in self.held or key in self.offered:
            return
        self.offered.add(key)
        self.claimable.append((instance_id, chunk, etag))
        self.pump()

    def pump(self) -> None:
        """Claim queued work rows while this process has room."""
        while self.claimable and self.active < self.capacity and not self.engine.stopping:
            instance_id, chunk, etag = self.claimable.popleft()
            self.active += 1  # reserve room until the claim settles
            self._spawn(self._claim(instance_id, chunk, etag), f"claim {instance_id} {chunk.row_key}")

    def forget(self, instance_id: str, row_key: str) -> None:
        """Drop a work row that a step deleted."""
        self.held.pop((instance_id, row_key), None)

    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _claim(self, instance_id: str, chunk: ChunkItem, etag: str) -> None:
        key = (instance_id, chunk.row_key)
        try:
            entity = {
                "PartitionKey": instance_id,
                "RowKey": chunk.row_key,
                "Owner": self.engine.owner,
                "LockedUntil": self.locked_until(),
            }
            try:
                meta_data = await self.engine.store.table.update_entity(
                    entity, mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified
                )
            except (ResourceModifiedError, ResourceNotFoundError):
                return  # another process claimed it, or a step deleted it
            await self.engine.runner(instance_id).take_chunk(chunk, str(meta_data["etag"]))
        except self.engine.storage_errors as error:
            logger.warning(
                "Could not claim activities %s of instance '%s': %s", chunk.row_key, instance_id, error
            )
        finally:
            self.offered.discard(key)
            self.active -= 1
            self.pump()

    async def _run_activity(self, held: HeldChunk, task_id: int, event: dict[str, Any]) -> None:
        try:
            async with self._slots:
                result = await self._invoke(held.instance_id, task_id, event)
            runner = self.engine.runner(held.instance_id)
            runner.add_result(ResultItem(held.chunk.execution_id, task_id, *result))
        finally:
            held.remaining -= 1
            self.active -= 1
            self.pump()

    async def _invoke(
        self, instance_id: str, task_id: int, event: dict[str, Any]
    ) -> tuple[str | None, tuple[str, str] | None]:
        name = str(event.get("Name"))
        skip = event.get("DevhostSkip")
        if skip:
            return None, (str(skip[0]), str(skip[1]))
        function = self.engine.activities.get(name)
        if function is None:
            reason = (
                f"The activity function '{name}' doesn't exist, is disabled, or is not an activity function."
            )
            return None, (reason, "")
        try:
            argument = decode_input(event.get("Input"))
        except ValueError as error:
            return None, (f"Activity function '{name}' failed: {error}", "")
        invocation = await self.engine.runtime.invoker.invoke(
            function,
            "activity",
            {function.spec.trigger.name: argument},
            detail=[f"instance={instance_id}", f"task={task_id}"],
        )
        failure: BaseException | None = invocation.error
        if failure is None:
            try:
                return encode_output(invocation.value), None
            except ValueError as encode_error:
                failure = encode_error
        details = "".join(traceback.format_exception(type(failure), failure, failure.__traceback__)).strip()
        return None, (f"Activity function '{name}' failed: {type(failure).__name__}: {failure}", details)

    async def keep_leases(self) -> None:
        """Renew the leases of held chunks every third of the lease: until a step records their results."""
        interval = self.lease.total_seconds() / 3
        while not self.engine.stopping:
            await asyncio.sleep(interval)
            # Results not yet committed (the instance's step may be losing races) keep the row leased here,
            # so another process does not run the same activities again meanwhile.
            for held in [held for held in self.held.values() if not held.lost]:
                await self._renew(held, self.locked_until())

    async def _renew(self, held: HeldChunk, until: Any) -> bool:
        entity = {"PartitionKey": held.instance_id, "RowKey": held.chunk.row_key, "LockedUntil": until}
        try:
            meta_data = await self.engine.store.table.update_entity(
                entity, mode=UpdateMode.MERGE, etag=held.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            held.lost = True
            return False
        except self.engine.storage_errors as error:
            logger.warning("Could not renew the lease of %s: %s", held.chunk.row_key, error)
            return False
        held.etag = str(meta_data["etag"])
        return True

    async def release(self) -> None:
        """Give up every lease held (at shutdown), so another process can take the work at once."""
        for held in list(self.held.values()):
            if not held.lost:
                with contextlib.suppress(*self.engine.storage_errors):
                    await self._renew(held, EPOCH)
        self.held.clear()
