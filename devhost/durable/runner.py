"""One instance's orchestrator steps, one at a time: take what waits, replay, commit one batch, act on it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode

from devhost.durable.history import completed_id, parse_time, utc_now
from devhost.durable.instance import (
    COMPLETED,
    CONTROL,
    EXECUTION_STARTED,
    SUB_COMPLETED,
    SUB_FAILED,
    SUSPENDED,
    TERMINATED,
    ChunkItem,
    InboxItem,
    InstanceState,
    Intake,
    ParentLink,
    Plan,
    ResultItem,
    TimerItem,
    chunk_activities,
    take_intake,
)
from devhost.durable.rows import (
    EPOCH,
    load_instance,
    new_chunk_row,
    new_inbox_row,
    new_timer_row,
    state_entity,
    stored_events,
)
from devhost.durable.store import MAX_BATCH, STATE_KEY, Operation, history_key, if_unchanged

if TYPE_CHECKING:
    from devhost.durable.engine import Engine

logger = logging.getLogger("devhost")
_CONFLICTS = (404, 409, 412)
_MAX_BACKOFF = 30.0


class InstanceRunner:
    """Serialises the steps of one instance in this process and keeps its state cached between them."""

    def __init__(self, engine: Engine, instance_id: str) -> None:
        self.engine = engine
        self.instance_id = instance_id
        self.state: InstanceState | None = None
        self.lock = asyncio.Lock()
        self.inbox: dict[str, InboxItem] = {}
        self.timers: dict[str, TimerItem] = {}
        self.results: dict[tuple[str, int], ResultItem] = {}
        self.chunks: dict[str, ChunkItem] = {}
        self.task: asyncio.Task[None] | None = None
        self._added_since_load: set[str] = set()
        self._loaded_keys: list[str] = []
        self._stale: list[str] = []
        self._loading = False

    # Things arriving.

    def add_inbox(self, item: InboxItem) -> None:
        """Take an inbox message (its row exists) and wake up."""
        self.inbox[item.row_key] = item
        if self._loading:
            self._added_since_load.add(item.row_key)
        self.wake()

    def add_timer(self, item: TimerItem) -> None:
        """Know a timer row; wake up when it is due."""
        self.timers[item.row_key] = item
        self.engine.arm_timer(self.instance_id, item.due)

    def add_result(self, item: ResultItem) -> None:
        """Take an activity result and wake up."""
        self.results[(item.execution_id, item.task_id)] = item
        self.wake()

    async def take_chunk(self, chunk: ChunkItem, etag: str) -> None:
        """Run a work row this process just leased (the instance is (re)loaded first if needed)."""
        async with self.lock:
            state = await self._ensure_state()
            if state is not None and not _covers(state, chunk):
                # Another process advanced the instance since it was cached here: see its newer tasks.
                self.invalidate()
                state = await self._ensure_state()
            self.chunks[chunk.row_key] = chunk
            if state is not None:
                self.engine.worker.run(self.instance_id, chunk, etag, state)
            else:
                self.engine.worker.release_later(self.instance_id, chunk.row_key, etag)
        self.wake()

    async def flush(self) -> None:
        """Commit what waits, without waking again (at shutdown, once activities have finished)."""
        for _ in range(10):
            try:
                async with self.lock:
                    if not await self._step():
                        return
            except TableTransactionError as error:
                if error.status_code not in _CONFLICTS:
                    return
                self.invalidate()
            except self.engine.storage_errors:
                return

    def invalidate(self) -> None:
        """Forget the cached state (another writer changed the instance); reload on the next step."""
        self.state = None

    # The loop.

    def wake(self) -> None:
        """Make sure a step runs soon."""
        if self.engine.stopping:
            return
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name=f"orchestration {self.instance_id}")

    @property
    def busy(self) -> bool:
        """Say whether a step runs or is due."""
        return (self.task is not None and not self.task.done()) or self._actionable(utc_now())

    @property
    def suspended(self) -> bool:
        """Say whether the instance is (as far as this process knows) suspended."""
        return self.state is not None and self.state.status == SUSPENDED

    def _actionable(self, now: datetime) -> bool:
        if self.state is not None and (self.state.reconcile or self.state.notify_parent):
            return True
        if self.suspended:
            # Only resume and terminate act on a suspended instance; everything else waits for them.
            return any(item.kind in CONTROL for item in self.inbox.values())
        return bool(self.inbox or self.results or any(timer.due <= now for timer in self.timers.values()))

    async def _run(self) -> None:
        backoff = 0.5
        conflicts = 0
        while not self.engine.stopping:
            try:
                async with self.lock:
                    progressed = await self._step()
                backoff = 0.5
            except TableTransactionError as error:
                self.invalidate()  # lost a race with another writer: reload and redo the step
                if error.status_code not in _CONFLICTS:
                    logger.warning(
                        "Orchestration '%s': a step was refused (%s); retrying", self.instance_id, error
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                    continue
                conflicts += 1
                if conflicts > 3:
                    await asyncio.sleep(min(0.05 * conflicts, 1.0))
                continue
            except self.engine.storage_errors as error:
                logger.warning("Orchestration '%s': storage error (%s); retrying", self.instance_id, error)
                self.invalidate()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            except Exception:
                logger.exception(
                    "Orchestration '%s': devhost failed to run a step; retrying", self.instance_id
                )
                self.invalidate()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            conflicts = 0
            if not progressed:
                break
        self.task = None
        self._arm_next_timer()
        self.engine.step_finished(self)

    def _arm_next_timer(self) -> None:
        now = utc_now()
        future = [timer.due for timer in self.timers.values() if timer.due > now]
        if future:
            self.engine.arm_timer(self.instance_id, min(future))

    async def _ensure_state(self) -> InstanceState | None:
        if self.state is not None:
            return self.state
        self._loading = True
        self._added_since_load = set()
        try:
            loaded = await load_instance(self.engine.store, self.instance_id)
        finally:
            self._loading = False
        kept = {key: item for key, item in self.inbox.items() if key in self._added_since_load}
        self.inbox = {item.row_key: item for item in loaded.inbox} | kept
        self.timers = {}
        for timer in loaded.timers:
            self.add_timer(timer)
        self.chunks = {chunk.row_key: chunk for chunk, _, _ in loaded.chunks}
        self.state = loaded.state
        self._stale = loaded.stale
        self._loaded_keys = [
            *(item.row_key for item in loaded.inbox),
            *self.timers,
            *self.chunks,
            *loaded.stale,
        ]
        if loaded.state is not None:
            self._offer_orphan_chunks(loaded.chunks)
        return loaded.state

    def _offer_orphan_chunks(self, chunks: Sequence[tuple[ChunkItem, str, datetime]]) -> None:
        # Work rows whose lease lapsed are offered; the claim's ETag check settles races with other processes.
        worker = self.engine.worker
        now = utc_now()
        for chunk, etag, locked_until in chunks:
            if locked_until <= now and not worker.knows(self.instance_id, chunk.row_key):
                worker.offer(self.instance_id, chunk, etag)

    async def _step(self) -> bool:
        state = await self._ensure_state()
        if state is None:
            await self._drop_orphans()
            return False
        if self._stale:
            # Rows of other executions: deleted only while the instance row is as loaded (ETag-checked).
            await self.delete_guarded(state, self._stale)
            self._stale = []
            return True
        if state.reconcile:
            await self.engine.reconcile(self, state)
            return True
        if state.notify_parent:
            await self._notify_parent(state)
            return True
        now = utc_now()
        due = [timer for timer in self.timers.values() if timer.due <= now]
        intake = take_intake(state, list(self.inbox.values()), due, list(self.results.values()), now)
        if len(intake.events) == 1 and not intake.replay:
            return await self._drop(state, intake)
        plan, prepared = await self.engine.replay(state, intake)
        await self._commit(state, intake, plan, prepared)
        return True

    async def _drop(self, state: InstanceState, intake: Intake) -> bool:
        # Messages that mean nothing any more (stale execution, duplicate, finished instance) and work rows
        # whose tasks are done are deleted with an ETag check of the instance row: a stale view never
        # deletes a newer execution's start message or a chunk of tasks it does not know about.
        for result in intake.results:
            self.results.pop((result.execution_id, result.task_id), None)
        finished = [key for key in self._finished_chunks(state, None, None) if not self._running(key)]
        keys = [item.row_key for item in intake.inbox] + [timer.row_key for timer in intake.timers]
        if not keys and not finished:
            return bool(intake.results)
        await self.delete_guarded(state, [*keys, *finished])
        blobs = [item.blob for item in intake.inbox if item.blob]
        if blobs:
            self.engine.later(self.engine.store.delete_blob_names(blobs))
        for key in keys:
            self.inbox.pop(key, None)
            self.timers.pop(key, None)
        for key in finished:
            self.chunks.pop(key, None)
            self.engine.worker.forget(self.instance_id, key)
        return True

    async def delete_guarded(self, state: InstanceState, keys: Sequence[str]) -> None:
        """Delete rows of the instance in batches that each touch its row ETag-conditionally (chained)."""
        store = self.engine.store
        for start in range(0, len(keys), MAX_BATCH - 1):
            deletes: list[Operation] = [
                ("delete", {"PartitionKey": self.instance_id, "RowKey": key})
                for key in keys[start : start + MAX_BATCH - 1]
            ]
            touch = {"PartitionKey": self.instance_id, "RowKey": STATE_KEY}
            results = await store.submit(
                [("update", touch, if_unchanged(state.etag, UpdateMode.MERGE)), *deletes]
            )
            state.etag = str(results[0]["etag"])

    async def _drop_orphans(self) -> None:
        # The instance does not exist (purged, or never created): the rows seen missing it mean nothing.
        # Rows that arrived after that load (say, the start message of an instance created since) are kept.
        keys = [key for key in self._loaded_keys if key not in self._added_since_load]
        self._loaded_keys = []
        self._stale = []
        for key in keys:
            self.inbox.pop(key, None)
            self.timers.pop(key, None)
        self.results.clear()
        for key in list(self.chunks):
            self.engine.worker.forget(self.instance_id, key)
        self.chunks.clear()
        if keys:
            await self.engine.store.delete_rows(self.instance_id, keys)

    def _finished_chunks(self, state: InstanceState, intake: Intake | None, plan: Plan | None) -> list[str]:
        if state.terminal or (plan is not None and (plan.terminal or plan.continue_as_new is not None)):
            return list(self.chunks)
        events = intake.events if intake is not None else []
        done = {task_id for task_id in map(completed_id, events) if task_id is not None}
        still_open = state.open - done
        return [
            key
            for key, chunk in self.chunks.items()
            if chunk.execution_id != state.execution_id or not still_open.intersection(chunk.task_ids)
        ]

    def _running(self, row_key: str) -> bool:
        held = self.engine.worker.held.get((self.instance_id, row_key))
        return held is not None and held.remaining > 0

    # Committing a step.

    async def _commit(self, state: InstanceState, intake: Intake, plan: Plan, prepared: list[Any]) -> None:
        store = self.engine.store
        renewal = plan.continue_as_new
        after = self._next_state(state, plan)
        operations: list[Operation] = []
        if renewal is None:
            row: dict[str, Any] = {
                "PartitionKey": self.instance_id,
                "RowKey": history_key(state.execution_id, state.steps),
                "Count": len(plan.events),
            }
            history_blob = await store.put_document(row, "D", stored_events(plan.events), self.instance_id)
            if history_blob is not None:
                after.history_blobs.append(history_blob)
            operations.append(("create", row))
        else:
            body = {"Input": renewal.input, "Carried": renewal.carried}
            start_row, start_item = await new_inbox_row(
                store, self.instance_id, EXECUTION_STARTED, renewal.execution_id, body
            )
            operations.append(("create", start_row))
        consumed = [item.row_key for item in intake.inbox] + [timer.row_key for timer in intake.timers]
        operations += [("delete", {"PartitionKey": self.instance_id, "RowKey": key}) for key in consumed]
        finished = self._finished_chunks(state, intake, plan)
        room = MAX_BATCH - 1 - len(operations)
        in_batch, deferred = finished[: max(0, room // 2)], finished[max(0, room // 2) :]
        operations += [("delete", {"PartitionKey": self.instance_id, "RowKey": key}) for key in in_batch]
        created, overflow = self._new_rows(state, plan, MAX_BATCH - 1 - len(operations))
        operations += [("create", entity) for entity, _ in created]
        after.reconcile = bool(overflow) or any(task.kind == "suborchestration" for task in plan.new_tasks)
        entity = await state_entity(store, after)
        old_blobs = {name for name, _ in state.blobs.values()}
        new_blobs = {name for name, _ in after.blobs.values()}
        uploaded = [*(new_blobs - old_blobs), *after.history_blobs[len(state.history_blobs) :]]
        if renewal is not None and start_item.blob:
            uploaded.append(start_item.blob)
        try:
            results = await store.submit([("update", entity, if_unchanged(state.etag)), *operations])
        except TableTransactionError:
            if uploaded:
                self.engine.later(store.delete_blob_names(uploaded))  # written for a step that did not happen
            raise
        after.etag = str(results[0]["etag"])
        self._apply(state, after, intake, plan, prepared, consumed, finished)
        # Blobs no row refers to now: replaced documents, consumed messages, an ended execution's history.
        garbage = [*(old_blobs - new_blobs), *(item.blob for item in intake.inbox if item.blob)]
        if renewal is not None:
            garbage += state.history_blobs
        if garbage:
            self.engine.later(store.delete_blob_names(garbage))
        if renewal is not None:
            # The old execution's rows: it has ended for good (execution ids never come back).
            self.engine.later(store.delete_rows(self.instance_id, [*deferred, *self._history_keys(state)]))
            self.inbox[start_item.row_key] = start_item
        elif deferred:
            await self._delete_after_commit(after, deferred)
        self._dispatch(after, created, results[len(results) - len(created) :])
        if plan.terminal:
            self._finish(after)

    async def _delete_after_commit(self, state: InstanceState, keys: list[str]) -> None:
        # Finished chunks beyond the step's batch; a lost race only leaves them for a later step.
        try:
            await self.delete_guarded(state, keys)
        except TableTransactionError as error:
            if error.status_code not in _CONFLICTS:
                raise
            self.invalidate()

    def _history_keys(self, state: InstanceState) -> list[str]:
        return [history_key(state.execution_id, step) for step in range(state.steps)]

    def _next_state(self, state: InstanceState, plan: Plan) -> InstanceState:
        now = utc_now()
        renewal = plan.continue_as_new
        after = InstanceState(
            instance_id=state.instance_id,
            etag=state.etag,
            name=state.name,
            execution_id=renewal.execution_id if renewal else state.execution_id,
            status=plan.status,
            created=state.created,
            updated=now,
            version=state.version,
            input=renewal.input if renewal else state.input,
            output=plan.output,
            custom_status=plan.custom_status,
            parent=state.parent,
            steps=0 if renewal else state.steps + 1,
            notify_parent=plan.terminal and state.parent is not None,
            generation=state.generation,
            blobs=dict(state.blobs),
            history_blobs=[] if renewal else list(state.history_blobs),
        )
        return after

    def _new_rows(
        self, state: InstanceState, plan: Plan, room: int
    ) -> tuple[list[tuple[dict[str, Any], ChunkItem | None]], bool]:
        rows: list[tuple[dict[str, Any], ChunkItem | None]] = []
        for task in plan.new_tasks:
            if task.kind == "timer":
                assert task.fire_at is not None
                rows.append(
                    (new_timer_row(self.instance_id, state.execution_id, task.task_id, task.fire_at), None)
                )
        activities = [task.task_id for task in plan.new_tasks if task.kind == "activity"]
        free = self.engine.worker.free()
        for group in chunk_activities(activities):
            leased = free > 0
            free -= len(group)
            owner, until = (self.engine.owner, self.engine.worker.locked_until()) if leased else ("", EPOCH)
            row = new_chunk_row(self.instance_id, state.execution_id, group, owner, until)
            rows.append((row, ChunkItem(str(row["RowKey"]), state.execution_id, group)))
        # Rows beyond the batch are written after it (the instance row's Reconcile flag covers a crash).
        return rows[: max(0, room)], len(rows) > room

    def _apply(
        self,
        state: InstanceState,
        after: InstanceState,
        intake: Intake,
        plan: Plan,
        prepared: list[Any],
        consumed: list[str],
        deleted_chunks: list[str],
    ) -> None:
        if plan.continue_as_new is None:
            after.events, after.prepared = state.events, state.prepared
            after.scheduled, after.open, after.last_time = state.scheduled, state.open, state.last_time
            after.add_events(plan.events, prepared)
        self.state = after
        for key in consumed:
            self.inbox.pop(key, None)
            self.timers.pop(key, None)
        for result in intake.results:
            self.results.pop((result.execution_id, result.task_id), None)
        for key in deleted_chunks:
            self.chunks.pop(key, None)
            self.engine.worker.forget(self.instance_id, key)
        if plan.continue_as_new is not None or plan.terminal:
            for key in list(self.chunks):
                self.engine.worker.forget(self.instance_id, key)
            self.chunks.clear()
            self.results.clear()
        if plan.continue_as_new is not None:
            old_timers = list(self.timers)
            self.timers.clear()
            if old_timers:
                self.engine.later(self.engine.store.delete_rows(self.instance_id, old_timers))

    def _dispatch(
        self,
        state: InstanceState,
        created: list[tuple[dict[str, Any], ChunkItem | None]],
        results: Sequence[Mapping[str, Any]],
    ) -> None:
        for (row, chunk), result in zip(created, results, strict=True):
            if chunk is None:
                self.add_timer(
                    TimerItem(str(row["RowKey"]), state.execution_id, int(row["TimerId"]), row["DueAt"])
                )
                continue
            self.chunks[chunk.row_key] = chunk
            if row["Owner"]:
                self.engine.worker.run(self.instance_id, chunk, str(result["etag"]), state)
            else:
                self.engine.worker.offer(self.instance_id, chunk, str(result["etag"]))

    def _finish(self, state: InstanceState) -> None:
        # Timers of a finished instance will never matter: delete their rows rather than wait for them.
        keys = list(self.timers)
        self.timers.clear()
        if keys:
            self.engine.later(self.engine.store.delete_rows(self.instance_id, keys))
        logger.info("Orchestration '%s' (%s) %s", state.instance_id, state.name, state.status)

    # Follow-ups recorded in flags on the instance row.

    async def set_flags(self, state: InstanceState, **flags: bool) -> None:
        """Clear or set Reconcile/NotifyParent on the instance row (ETag-conditional)."""
        entity: dict[str, Any] = {"PartitionKey": self.instance_id, "RowKey": "s", **flags}
        try:
            metadata = await self.engine.store.table.update_entity(
                entity, mode=UpdateMode.MERGE, etag=state.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            self.invalidate()
            return
        state.etag = str(metadata["etag"])
        state.reconcile = flags.get("Reconcile", state.reconcile)
        state.notify_parent = flags.get("NotifyParent", state.notify_parent)

    async def create_missing_rows(self, state: InstanceState) -> None:
        """Write work rows for open activities and timer rows for open timers that have none (idempotent)."""
        covered = {task_id for chunk in self.chunks.values() for task_id in chunk.task_ids}
        rows: list[tuple[dict[str, Any], ChunkItem | None]] = []
        for timer_id in state.open_of_kind("timer"):
            if not any(timer.timer_id == timer_id for timer in self.timers.values()):
                due = parse_time(str(state.scheduled[timer_id]["FireAt"]))
                rows.append((new_timer_row(self.instance_id, state.execution_id, timer_id, due), None))
        missing = [task_id for task_id in state.open_of_kind("activity") if task_id not in covered]
        for group in chunk_activities(missing):
            row = new_chunk_row(self.instance_id, state.execution_id, group, "", EPOCH)
            rows.append((row, ChunkItem(str(row["RowKey"]), state.execution_id, group)))
        for start in range(0, len(rows), MAX_BATCH):
            await self._create_rows(state, rows[start : start + MAX_BATCH])

    async def _create_rows(
        self, state: InstanceState, batch: list[tuple[dict[str, Any], ChunkItem | None]]
    ) -> None:
        # Create, never replace: a row another process wrote meanwhile (with its lease) stays as it is.
        store = self.engine.store
        try:
            results = await store.submit([("create", row) for row, _ in batch])
        except TableTransactionError as error:
            if error.status_code != 409:
                raise
            for item in batch:
                try:
                    metadata = await store.table.create_entity(item[0])
                except ResourceExistsError:
                    continue
                self._dispatch(state, [item], [metadata])
            return
        self._dispatch(state, batch, results)

    async def _notify_parent(self, state: InstanceState) -> None:
        parent = state.parent
        if parent is not None:
            kind, body = self._report(state, parent)
            await self.engine.send(parent.instance_id, kind, parent.execution_id, body)
        await self.set_flags(state, NotifyParent=False)

    @staticmethod
    def _report(state: InstanceState, parent: ParentLink) -> tuple[str, dict[str, Any]]:
        if state.status == COMPLETED:
            return SUB_COMPLETED, {"TaskScheduledId": parent.task_id, "Result": state.output or "null"}
        reason = state.output or '""'
        with contextlib.suppress(ValueError):
            reason = str(json.loads(reason))
        if state.status == TERMINATED:
            reason = f"The sub-orchestration '{state.instance_id}' was terminated: {reason}"
        return SUB_FAILED, {"TaskScheduledId": parent.task_id, "Reason": reason, "Details": ""}


def _covers(state: InstanceState, chunk: ChunkItem) -> bool:
    """Say whether the cached state knows every task of a work row (else it is older than the row)."""
    return chunk.execution_id == state.execution_id and all(
        task in state.scheduled for task in chunk.task_ids
    )
