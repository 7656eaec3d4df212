"""The Durable engine: instance runners, the activity worker, durable timers and the recovery scan.

Storage is the source of truth; in-process wake-ups only make things fast. A periodic scan of the
task hub's table finds whatever nobody here is handling (rows left by a crash, leases that lapsed,
timers that came due, messages written by another process) and hands it to the same code paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
import warnings
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import ClientError
from azure.core.exceptions import AzureError
from azure.data.tables import TableEntity, TableTransactionError

from devhost.durable.history import utc_now
from devhost.durable.instance import (
    CONTROL,
    EXECUTION_STARTED,
    SUB_FAILED,
    TERMINAL,
    InstanceState,
    Intake,
    ParentLink,
    Plan,
    build_plan,
    instance_id_problem,
)
from devhost.durable.options import DurableOptions
from devhost.durable.replay import ReplayOutcome, prepare_event, replay, sdk_version_problem
from devhost.durable.rows import (
    as_utc,
    chunk_from_row,
    fresh_state,
    inbox_from_row,
    new_inbox_row,
    parent_of,
    state_entity,
    timer_from_row,
)
from devhost.durable.runner import InstanceRunner
from devhost.durable.store import (
    INBOX_PREFIX,
    STATE_KEY,
    TIMER_PREFIX,
    WORK_PREFIX,
    TaskHubStore,
    if_unchanged,
)
from devhost.durable.worker import ActivityWorker
from devhost.invoker import RuntimeFunction
from devhost.runtime import Runtime, remaining
from devhost.threads import DaemonThreadPool

logger = logging.getLogger("devhost")

STORAGE_ERRORS: tuple[type[BaseException], ...] = (AzureError, ClientError, OSError)
# Rows younger than this are left to the process that wrote them (it acts on them in memory).
_FRESH_SECONDS = 2.0
_FRESH_FLAG_SECONDS = 5.0
_MAX_IDLE_RUNNERS = 2000


@dataclass(frozen=True)
class Created:
    """How creating an instance went: created (with its execution id), or refused for a live instance."""

    execution_id: str | None = None
    conflict_status: str | None = None


class Engine:
    """Runs one task hub's orchestrations and activities in this process."""

    storage_errors = STORAGE_ERRORS

    def __init__(self, runtime: Runtime, options: DurableOptions) -> None:
        self.runtime = runtime
        self.options = options
        self.store = TaskHubStore(runtime.storage, options.connection, options.hub_name)
        self.orchestrators: dict[str, RuntimeFunction] = {}
        self.activities: dict[str, RuntimeFunction] = {}
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.runners: dict[str, InstanceRunner] = {}
        self.worker = ActivityWorker(self, options.max_activities, options.lease_seconds)
        self.stopping = False
        self.started = False
        self.burst_cutoff: datetime | None = None
        self._pool = DaemonThreadPool(max(1, min(options.max_orchestrators, 4)), name="devhost-orchestrator")
        self._replay_slots = asyncio.Semaphore(options.max_orchestrators)
        self._background: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._timers: dict[tuple[str, datetime], asyncio.TimerHandle] = {}
        self._in_flight = 0
        self._scan_warned = False

    # Life cycle.

    async def start(self) -> None:
        """Create the task hub's storage, pick up what earlier runs left, and start the background loops."""
        # The SDK warns on completions it buffers (an event raised before anyone waits for it): expected here.
        warnings.filterwarnings("ignore", message="Potential duplicate Task completion", category=UserWarning)
        problem = sdk_version_problem()
        if problem is not None:
            logger.error("Durable Functions not started: %s", problem)
            raise RuntimeError(problem)
        await self.store.ensure()
        self.started = True
        if self.runtime.burst:
            self.burst_cutoff = utc_now() + timedelta(seconds=self.options.burst_timer_seconds)
        await self.scan(eager=True)
        self._loops.append(asyncio.create_task(self._scan_forever(), name="durable scan"))
        self._loops.append(asyncio.create_task(self.worker.keep_leases(), name="durable leases"))

    async def stop(self, deadline: float) -> None:
        """Stop taking work, let running activities and steps finish until `deadline`, give back leases."""
        self.stopping = True
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        # Activities in flight finish first, then runners commit what they hold, within the grace period.
        await _finish_or_cancel(set(self.worker.tasks), deadline)
        await _finish_or_cancel({runner.task for runner in self.runners.values() if runner.task}, deadline)
        flushes = [runner.flush() for runner in self.runners.values() if runner.results or runner.inbox]
        await _finish_or_cancel({asyncio.ensure_future(flush) for flush in flushes}, deadline)
        await _finish_or_cancel(set(self._background), deadline)
        if self.started:
            with contextlib.suppress(*STORAGE_ERRORS):
                await self.worker.release()
        self._pool.shutdown()
        await self.store.close()
        await _reset_sdk_session()

    def later(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run best-effort follow-up work (cleanup) in the background; failures are logged."""
        task = asyncio.create_task(self._quietly(work))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _quietly(work: Coroutine[Any, Any, Any]) -> None:
        try:
            await work
        except STORAGE_ERRORS as error:
            logger.debug("Durable cleanup failed (it is retried later): %s", error)

    # Runners and timers.

    def runner(self, instance_id: str) -> InstanceRunner:
        """The runner of an instance (created on first use)."""
        runner = self.runners.get(instance_id)
        if runner is None:
            runner = self.runners[instance_id] = InstanceRunner(self, instance_id)
        return runner

    def step_finished(self, runner: InstanceRunner) -> None:
        """Forget idle runners of finished instances (and the oldest idle ones when there are many)."""
        if runner.busy or runner.timers or runner.chunks:
            return
        if runner.state is None or runner.state.terminal:
            self.runners.pop(runner.instance_id, None)
        if len(self.runners) > _MAX_IDLE_RUNNERS:
            for key, idle in list(self.runners.items())[: len(self.runners) // 2]:
                if not idle.busy and not idle.timers and not idle.chunks:
                    self.runners.pop(key, None)

    def arm_timer(self, instance_id: str, due: datetime) -> None:
        """Wake the instance when `due` comes."""
        if self.stopping or (instance_id, due) in self._timers:
            return
        delay = max(0.0, (due - utc_now()).total_seconds()) + 0.005
        loop = asyncio.get_running_loop()
        self._timers[(instance_id, due)] = loop.call_later(delay, self._timer_due, instance_id, due)

    def _timer_due(self, instance_id: str, due: datetime) -> None:
        self._timers.pop((instance_id, due), None)
        self.runner(instance_id).wake()

    # Replays run on a few threads: the SDK's replay is CPU-bound Python.

    async def replay(self, state: InstanceState, intake: Intake) -> tuple[Plan, list[Any]]:
        """Replay the orchestrator over the history plus the intake's events; plan the step."""
        if not intake.replay:
            plan = build_plan(state, intake, None)
            return plan, [prepare_event(event) for event in plan.events]
        function = self.orchestrators.get(state.name)
        async with self._replay_slots:
            future = self._pool.submit(self._replay_sync, function, state, intake)
            return await asyncio.wrap_future(future)

    def _replay_sync(
        self, function: RuntimeFunction | None, state: InstanceState, intake: Intake
    ) -> tuple[Plan, list[Any]]:
        begun = time.perf_counter()
        prepared = [prepare_event(event) for event in intake.events]
        if function is None:
            missing = f"The orchestrator function '{state.name}' doesn't exist in this app"
            outcome = ReplayOutcome(error=missing)
        else:
            outcome = replay(
                function.spec.user_function,
                instance_id=state.instance_id,
                parent_instance_id=state.parent.instance_id if state.parent else None,
                input_text=state.input,
                events=[*state.events, *intake.events],
                prepared=[*state.prepared, *prepared],
                new_from=len(state.events),
            )
        plan = build_plan(state, intake, outcome)
        prepared += [prepare_event(event) for event in plan.events[len(intake.events) :]]
        elapsed = (time.perf_counter() - begun) * 1000
        verdict = "Succeeded" if plan.status not in ("Failed",) else f"Failed: {outcome.error}"
        logger.info(
            "Executed '%s' (orchestrator, %.1f ms, %s, instance=%s, events=%d)",
            state.name,
            elapsed,
            verdict.splitlines()[0],
            state.instance_id,
            len(state.events) + len(plan.events),
        )
        return plan, prepared

    # Creating instances and sending them messages.

    async def create_instance(
        self,
        instance_id: str,
        name: str,
        input_text: str | None,
        version: str = "",
        parent: ParentLink | None = None,
    ) -> Created:
        """Create (or restart a finished) instance, Pending with its start message; refuse a live one."""
        self._in_flight += 1
        try:
            for _ in range(10):
                created = await self._try_create(instance_id, name, input_text, version, parent)
                if created is not None:
                    return created
            raise RuntimeError(f"could not create instance '{instance_id}': too many concurrent changes")
        finally:
            self._in_flight -= 1

    async def _try_create(
        self, instance_id: str, name: str, input_text: str | None, version: str, parent: ParentLink | None
    ) -> Created | None:
        existing = await self.store.read_state(instance_id)
        if existing is not None:
            status = str(existing.get("RuntimeStatus"))
            if parent is not None and parent_of(existing) == parent:
                return Created(execution_id=str(existing.get("ExecutionId")))  # created by an earlier attempt
            if status not in TERMINAL:
                return Created(conflict_status=status)
        execution_id = uuid.uuid4().hex
        state = fresh_state(instance_id, name, execution_id, input_text, version, parent)
        entity = await state_entity(self.store, state)
        start_row, item = await new_inbox_row(
            self.store, instance_id, EXECUTION_STARTED, execution_id, {"Input": input_text}
        )
        if existing is None:
            write: tuple[Any, ...] = ("create", entity)
        else:
            write = ("update", entity, if_unchanged(str(existing.metadata["etag"])))
        try:
            await self.store.submit([write, ("create", start_row)])
        except TableTransactionError as error:
            if error.status_code in (409, 412):
                return None
            raise
        runner = self.runner(instance_id)
        runner.invalidate()
        runner.add_inbox(item)
        return Created(execution_id=execution_id)

    async def send(
        self, instance_id: str, kind: str, execution_id: str, body: Mapping[str, Any], generation: str = ""
    ) -> None:
        """Write a message to an instance's inbox and wake its runner."""
        self._in_flight += 1
        try:
            row, item = await new_inbox_row(self.store, instance_id, kind, execution_id, body, generation)
            await self.store.table.create_entity(row)
            self.runner(instance_id).add_inbox(item)
        finally:
            self._in_flight -= 1

    async def reconcile(self, runner: InstanceRunner, state: InstanceState) -> None:
        """Give every open activity, timer and sub-orchestration its row or instance; then clear the flag."""
        await runner.create_missing_rows(state)
        for task_id in state.open_of_kind("suborchestration"):
            event = state.scheduled[task_id]
            child = str(event.get("InstanceId"))
            link = ParentLink(state.instance_id, state.execution_id, task_id)
            problem = instance_id_problem(child)
            reason = None
            if problem is not None:
                reason = f"The sub-orchestration instance ID '{child}' is not valid: {problem}"
            else:
                created = await self.create_instance(
                    child, str(event.get("Name")), event.get("Input"), str(event.get("Version") or ""), link
                )
                if created.conflict_status is not None:
                    status = created.conflict_status
                    reason = f"An orchestration with instance ID '{child}' already exists and is {status}"
            if reason is not None:
                await self.send(
                    state.instance_id,
                    SUB_FAILED,
                    state.execution_id,
                    {"TaskScheduledId": task_id, "Reason": reason, "Details": ""},
                )
        await runner.set_flags(state, Reconcile=False)

    # The scan: recovery, other processes' work, timers that came due.

    async def _scan_forever(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self.options.poll_seconds)
            try:
                await self.scan(eager=self.runtime.burst)
                self._scan_warned = False
            except STORAGE_ERRORS as error:
                if not self._scan_warned:
                    logger.warning("Durable scan failed (%s); retrying", error)
                    self._scan_warned = True

    async def scan(self, *, eager: bool) -> bool:
        """Hand every row that means work to its runner or the worker; say whether any work is left."""
        rows = await self.store.scan()
        now = utc_now()
        pending = False
        for row in rows:
            pending = await self._found(row, now, eager) or pending
        return pending

    async def _found(self, row: TableEntity, now: datetime, eager: bool) -> bool:
        key = str(row["RowKey"])
        age = (now - as_utc(row.metadata.get("timestamp"))).total_seconds()
        waits = self._suspended(str(row["PartitionKey"]))
        if key == STATE_KEY:
            if eager or age >= _FRESH_FLAG_SECONDS:
                self._found_flags(str(row["PartitionKey"]), str(row.metadata["etag"]))
            return True
        if key.startswith(INBOX_PREFIX):
            if eager or age >= _FRESH_SECONDS:
                await self._found_inbox(row)
            return not waits or str(row.get("Kind")) in CONTROL
        if key.startswith(TIMER_PREFIX):
            return self._found_timer(row, now) and not waits
        if key.startswith(WORK_PREFIX):
            self._found_work(row, now)
            return not waits
        return False

    def _suspended(self, instance_id: str) -> bool:
        # Rows of a suspended instance are not work a burst waits for (only resume or terminate are).
        runner = self.runners.get(instance_id)
        return runner is not None and runner.suspended

    def _found_flags(self, instance_id: str, etag: str) -> None:
        runner = self.runner(instance_id)
        if (runner.state is None or runner.state.etag != etag) and not runner.busy:
            runner.invalidate()
        runner.wake()

    async def _found_inbox(self, row: TableEntity) -> None:
        runner = self.runner(str(row["PartitionKey"]))
        if str(row["RowKey"]) not in runner.inbox:
            runner.add_inbox(await inbox_from_row(self.store, row))

    def _found_timer(self, row: TableEntity, now: datetime) -> bool:
        item = timer_from_row(row)
        runner = self.runner(str(row["PartitionKey"]))
        if item.row_key not in runner.timers:
            runner.add_timer(item)
        if item.due <= now:
            runner.wake()
        return self.burst_cutoff is None or item.due <= self.burst_cutoff

    def _found_work(self, row: TableEntity, now: datetime) -> None:
        instance_id = str(row["PartitionKey"])
        if self.worker.knows(instance_id, str(row["RowKey"])) or self.stopping:
            return
        if as_utc(row.get("LockedUntil")) <= now:
            self.worker.offer(instance_id, chunk_from_row(row), str(row.metadata["etag"]))

    # Burst mode.

    def busy(self) -> bool:
        """Say whether anything runs or waits in this process."""
        if self._in_flight or self._background or self.worker.busy:
            return True
        return any(runner.busy for runner in self.runners.values())

    async def is_idle(self) -> bool:
        """Idle when nothing runs here and storage holds no work (timers due after the burst cutoff aside)."""
        if not self.started or self.busy():
            return not self.started
        try:
            pending = await self.scan(eager=True)
        except STORAGE_ERRORS:
            return False
        return not pending and not self.busy()


async def _finish_or_cancel(
    tasks: set[asyncio.Task[Any]] | set[asyncio.Future[Any]], deadline: float
) -> None:
    pending = {task for task in tasks if not task.done()}
    if not pending:
        return
    _, unfinished = await asyncio.wait(pending, timeout=remaining(deadline))
    for task in unfinished:
        task.cancel()
    await asyncio.gather(*unfinished, return_exceptions=True)


async def _reset_sdk_session() -> None:
    # The Durable SDK keeps one module-level aiohttp session for its client calls; it belongs to this
    # event loop, so close it with the host (in-process tests run several hosts on several loops).
    try:
        from azure.durable_functions.models.utils import http_utils
    except ImportError:  # pragma: no cover - the SDK is a dependency
        return
    session = getattr(http_utils, "_client_session", None)
    if session is not None and not session.closed:
        with contextlib.suppress(Exception):
            await session.close()
    http_utils._client_session = None
    http_utils._session_lock = asyncio.Lock()
