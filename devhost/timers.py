"""Timer triggers: NCRONTAB schedules in UTC, runOnStartup, and the host's schedule monitor in blobs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import ClientError
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.timer import TimerRequest

from devhost.config import resolve_setting_expressions
from devhost.invoker import RuntimeFunction
from devhost.ncrontab import CronSchedule, IntervalSchedule, parse_schedule
from devhost.runtime import Runtime, TriggerKind, remaining

logger = logging.getLogger("devhost")

MONITOR_CONTAINER = "azure-webjobs-hosts"
_STORAGE_ERRORS = (AzureError, ClientError, OSError)
_NEVER = datetime.min.replace(tzinfo=UTC)


def utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class ScheduleStatus:
    """What the host's schedule monitor records for a timer: last run, next due, when written."""

    last: datetime
    next: datetime
    last_updated: datetime

    def as_json(self) -> dict[str, str]:
        """The blob's JSON shape (the host's ScheduleStatus)."""
        return {
            "Last": self.last.isoformat(),
            "Next": self.next.isoformat(),
            "LastUpdated": self.last_updated.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScheduleStatus:
        """Parse the blob's JSON."""
        return cls(*(_parse_time(data.get(key)) for key in ("Last", "Next", "LastUpdated")))


def _parse_time(text: object) -> datetime:
    if not isinstance(text, str):
        return _NEVER
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class ScheduleMonitor:
    """Persist a timer's status in `azure-webjobs-hosts/timers/<hostId>/Host.Functions.<name>/status`."""

    def __init__(self, runtime: Runtime, function_name: str) -> None:
        self.runtime = runtime
        self.blob_name = f"timers/{runtime.settings.host_id}/Host.Functions.{function_name}/status"

    async def read(self) -> ScheduleStatus | None:
        """Return the stored status, or None when there is none (or it cannot be read)."""
        container = self.runtime.storage.blob_service(None).get_container_client(MONITOR_CONTAINER)
        try:
            download = await container.download_blob(self.blob_name)
            return ScheduleStatus.from_json(json.loads(await download.readall()))
        except ResourceNotFoundError:
            return None
        except (*_STORAGE_ERRORS, ValueError) as error:
            logger.warning("Could not read timer status %s: %s", self.blob_name, error)
            return None

    async def write(self, status: ScheduleStatus) -> None:
        """Store the status (failures are logged, not raised: the timer keeps running)."""
        container = self.runtime.storage.blob_service(None).get_container_client(MONITOR_CONTAINER)
        data = json.dumps(status.as_json()).encode()
        try:
            with contextlib.suppress(ResourceExistsError):
                await container.create_container()
            await container.upload_blob(self.blob_name, data, overwrite=True)
        except _STORAGE_ERRORS as error:
            logger.warning("Could not write timer status %s: %s", self.blob_name, error)


class TimerJob:
    """One timer function: startup run (runOnStartup or past due), then one invocation per occurrence."""

    def __init__(self, function: RuntimeFunction, runtime: Runtime) -> None:
        trigger = function.spec.trigger
        self.function = function
        self.runtime = runtime
        self.expression = resolve_setting_expressions(str(trigger.get("schedule") or ""), runtime.environ)
        self.schedule: CronSchedule | IntervalSchedule = parse_schedule(self.expression)
        self.run_on_startup = bool(trigger.get("runOnStartup", False))
        self.monitor: ScheduleMonitor | None = None
        if self._wants_monitor(trigger.get("useMonitor")):
            self.monitor = ScheduleMonitor(runtime, function.name)
        self.last = _NEVER

    def _wants_monitor(self, use_monitor: object) -> bool:
        if use_monitor is False or not self.runtime.storage.has_connection(None):
            return False
        if use_monitor is True:
            return True
        # The host monitors by default only schedules that fire less often than once a minute.
        first = self.schedule.next_after(utc_now())
        return self.schedule.next_after(first) - first >= timedelta(minutes=1)

    async def run_startup(self) -> None:
        """Invoke once if the monitor says a run was missed (past due) or runOnStartup is set."""
        now = utc_now()
        status = await self.monitor.read() if self.monitor else None
        if status is not None:
            self.last = status.last
        if status is not None and status.next <= now:
            await self.invoke(past_due=True, status=status)
        elif self.run_on_startup:
            await self.invoke(past_due=False, status=status)
        elif self.monitor is not None and status is None:
            await self.monitor.write(ScheduleStatus(_NEVER, self.schedule.next_after(now), now))

    async def run_forever(self, stopping: asyncio.Event) -> None:
        """Run the startup step, then fire at each occurrence; one invocation at a time, never overlapping."""
        await self.run_startup()
        while not stopping.is_set():
            due = self.schedule.next_after(max(utc_now(), self.last))
            while (wait := (due - utc_now()).total_seconds()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), wait)
                if stopping.is_set():
                    return
            await self.invoke(past_due=False, status=None, occurrence=due)

    async def invoke(
        self, *, past_due: bool, status: ScheduleStatus | None, occurrence: datetime | None = None
    ) -> None:
        """Invoke the function with a TimerRequest and record the new status."""
        now = utc_now()
        schedule_status = (status or ScheduleStatus(self.last, occurrence or now, now)).as_json()
        request = TimerRequest(
            past_due=past_due, schedule_status=schedule_status, schedule={"AdjustForDST": True}
        )
        arguments = {self.function.spec.trigger.name: request}
        await self.runtime.invoker.invoke(self.function, "timer", arguments, detail=[f"past_due={past_due}"])
        self.last = occurrence or now
        if self.monitor is not None:
            finished = utc_now()
            await self.monitor.write(ScheduleStatus(self.last, self.schedule.next_after(finished), finished))


class TimerTriggerKind(TriggerKind):
    """Serve `timerTrigger` functions."""

    kind = "timer"
    trigger_types = frozenset({"timerTrigger"})

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.jobs: list[TimerJob] = []
        self.tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    def add(self, function: RuntimeFunction) -> None:
        self.jobs.append(TimerJob(function, self.runtime))
        super().add(function)

    def describe(self, function: RuntimeFunction) -> str:
        job = next(item for item in self.jobs if item.function is function)
        following = job.schedule.next_after(utc_now()).isoformat()
        return f"{function.name}: timerTrigger (schedule '{job.expression}', next {following})"

    async def start(self) -> None:
        for job in self.jobs:
            work = job.run_startup() if self.runtime.burst else job.run_forever(self._stopping)
            self.tasks.append(asyncio.create_task(work, name=f"timer {job.function.name}"))

    async def is_idle(self) -> bool:
        return all(task.done() for task in self.tasks)

    async def stop(self, deadline: float) -> None:
        self._stopping.set()
        pending = [task for task in self.tasks if not task.done()]
        if pending:
            _, unfinished = await asyncio.wait(pending, timeout=remaining(deadline))
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
