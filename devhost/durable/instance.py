"""One orchestration instance in memory, the messages waiting for it, and the pure logic of one step.

A step takes what is waiting (inbox messages, due timers, activity results), turns it into history
events, lets the SDK replay, and plans what to write: one history row, the instance row, the rows it
consumes and the timers/activity chunks it creates. `take_intake` and `build_plan` are pure so the
engine can retry a step from scratch after losing an ETag race.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from devhost.durable.history import (
    Event,
    EventType,
    completed_id,
    format_time,
    kind_of,
    later,
    new_event,
    parse_time,
    scheduled_kind,
)
from devhost.durable.replay import PlannedTask, ReplayOutcome, nondeterminism

PENDING = "Pending"
RUNNING = "Running"
COMPLETED = "Completed"
FAILED = "Failed"
TERMINATED = "Terminated"
SUSPENDED = "Suspended"
CONTINUED_AS_NEW = "ContinuedAsNew"
TERMINAL = frozenset({COMPLETED, FAILED, TERMINATED})
AWAITING_START = (PENDING, CONTINUED_AS_NEW)
ALL_STATUSES = (PENDING, RUNNING, COMPLETED, FAILED, TERMINATED, SUSPENDED, CONTINUED_AS_NEW)

EXECUTION_STARTED = "ExecutionStarted"
EVENT_RAISED = "EventRaised"
TERMINATE = "Terminate"
SUSPEND = "Suspend"
RESUME = "Resume"
SUB_COMPLETED = "SubOrchestrationCompleted"
SUB_FAILED = "SubOrchestrationFailed"
CONTROL = frozenset({TERMINATE, SUSPEND, RESUME})
# The characters DurableTask forbids in instance ids (they cannot be table keys), and control characters.
_BAD_INSTANCE_ID = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_MAX_INSTANCE_ID = 256
# Bounds per step so the step's batch stays within 100 operations.
MAX_INBOX_PER_STEP = 40
MAX_TIMERS_PER_STEP = 20
CHUNKS_PER_FAN_OUT = 25
MAX_CHUNK = 200


def instance_id_problem(instance_id: str) -> str | None:
    """Say what is wrong with an instance id, or None when it is usable."""
    if not instance_id or len(instance_id) > _MAX_INSTANCE_ID:
        return f"Instance IDs must be 1-{_MAX_INSTANCE_ID} characters long."
    if _BAD_INSTANCE_ID.search(instance_id):
        return "Instance IDs must not contain /, \\, #, ? or control characters."
    return None


@dataclass(frozen=True)
class ParentLink:
    """Where a sub-orchestration reports back: the parent instance, execution and task sequence number."""

    instance_id: str
    execution_id: str
    task_id: int


@dataclass(frozen=True)
class InboxItem:
    """A message in the instance's inbox row."""

    row_key: str
    kind: str
    execution_id: str
    body: Mapping[str, Any]
    # Events and control messages from the client carry the generation they were sent to.
    generation: str = ""
    blob: str = ""  # the large-message blob holding the body, if any


@dataclass(frozen=True)
class TimerItem:
    """A durable timer row."""

    row_key: str
    execution_id: str
    timer_id: int
    due: datetime


@dataclass(frozen=True)
class ResultItem:
    """An activity's outcome, held in memory until a step commits it (the work row stays until then)."""

    execution_id: str
    task_id: int
    result: str | None = None
    failure: tuple[str, str] | None = None


@dataclass(frozen=True)
class ChunkItem:
    """A work row: activities (by sequence number) of one execution, leased as a unit."""

    row_key: str
    execution_id: str
    task_ids: tuple[int, ...]


@dataclass
class InstanceState:
    """The instance row plus the current execution's history, as of `etag`."""

    instance_id: str
    etag: str
    name: str
    execution_id: str
    status: str
    created: datetime
    updated: datetime
    version: str = ""
    input: str | None = None
    output: str | None = None
    custom_status: str | None = None
    parent: ParentLink | None = None
    steps: int = 0
    reconcile: bool = False
    notify_parent: bool = False
    # The first execution id of this run of the instance id: continue_as_new keeps it, a restart renews it.
    generation: str = ""
    # Large input/output/custom status: document name -> (blob name, text), reused while the text is the same.
    blobs: dict[str, tuple[str, str]] = field(default_factory=dict)
    history_blobs: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    prepared: list[Any] = field(default_factory=list)
    scheduled: dict[int, Event] = field(default_factory=dict)
    open: set[int] = field(default_factory=set)
    last_time: datetime | None = None

    @property
    def terminal(self) -> bool:
        """Say whether the instance has finished (completed, failed or terminated)."""
        return self.status in TERMINAL

    def add_events(self, events: Sequence[Event], prepared: Sequence[Any]) -> None:
        """Append committed events, keeping the scheduled/open bookkeeping in step."""
        self.events.extend(events)
        self.prepared.extend(prepared)
        for event in events:
            kind = kind_of(event)
            if scheduled_kind(event) is not None:
                self.scheduled[int(event["EventId"])] = event
                self.open.add(int(event["EventId"]))
            elif kind == EventType.ORCHESTRATOR_STARTED:
                self.last_time = parse_time(str(event["Timestamp"]))
            else:
                done = completed_id(event)
                if done is not None:
                    self.open.discard(done)

    def open_of_kind(self, kind: str) -> list[int]:
        """Sequence numbers scheduled but not completed, of one kind, in order."""
        return sorted(task_id for task_id in self.open if scheduled_kind(self.scheduled[task_id]) == kind)


@dataclass
class Intake:
    """What one step takes in: new events, and the messages and rows they came from."""

    events: list[Event]
    moment: datetime
    status: str
    inbox: list[InboxItem] = field(default_factory=list)
    timers: list[TimerItem] = field(default_factory=list)
    results: list[ResultItem] = field(default_factory=list)
    replay: bool = False
    terminate_reason: str | None = None


def take_intake(
    state: InstanceState,
    inbox: Sequence[InboxItem],
    timers: Sequence[TimerItem],
    results: Sequence[ResultItem],
    now: datetime,
) -> Intake:
    """Turn waiting messages into this step's events (stale or duplicate ones are consumed and dropped)."""
    moment = later(state.last_time, now)
    intake = Intake([new_event(EventType.ORCHESTRATOR_STARTED, moment)], moment, state.status)
    delivered: set[int] = set()
    # Start first, then terminate/suspend/resume (so a buffered backlog never hides them), then the rest;
    # only messages the step consumes count toward its limit (buffered ones stay for a later step).
    ordered = sorted(inbox, key=lambda item: (_message_rank(item), item.row_key))
    for item in ordered:
        if len(intake.inbox) >= MAX_INBOX_PER_STEP:
            break
        _take_message(state, intake, item, delivered)
    if intake.status != SUSPENDED:
        for timer in sorted(timers, key=lambda timer: timer.due)[:MAX_TIMERS_PER_STEP]:
            _take_timer(state, intake, timer, delivered)
        for result in results:
            _take_result(state, intake, result, delivered)
    return intake


def _message_rank(item: InboxItem) -> int:
    if item.kind == EXECUTION_STARTED:
        return 0
    return 1 if item.kind in CONTROL else 2


def _live(state: InstanceState, intake: Intake, execution_id: str, task_id: int, delivered: set[int]) -> bool:
    # A completion counts only for an open task of the current execution, and only once.
    if intake.status in TERMINAL or execution_id != state.execution_id:
        return False
    if task_id not in state.open or task_id in delivered:
        return False
    delivered.add(task_id)
    return True


def _take_message(state: InstanceState, intake: Intake, item: InboxItem, delivered: set[int]) -> None:
    if intake.status in TERMINAL:
        intake.inbox.append(item)
        return
    if item.generation and state.generation and item.generation != state.generation:
        intake.inbox.append(item)  # sent to an earlier run of this instance id (it was restarted since)
        return
    if item.kind in CONTROL:
        _take_control(state, intake, item)
        return
    if intake.status == SUSPENDED:
        return  # buffered until resumed
    if item.kind == EXECUTION_STARTED:
        if item.execution_id == state.execution_id and not state.events and intake.status in AWAITING_START:
            intake.events.append(_started_event(state, item, intake.moment))
            for carried in item.body.get("Carried") or []:
                intake.events.append(
                    new_event(
                        EventType.EVENT_RAISED,
                        intake.moment,
                        Name=carried.get("Name"),
                        Input=carried.get("Input"),
                    )
                )
            intake.status = RUNNING
            intake.replay = True
        intake.inbox.append(item)
    elif intake.status in AWAITING_START:
        return  # events wait for the start message
    elif item.kind == EVENT_RAISED:
        intake.events.append(
            new_event(
                EventType.EVENT_RAISED,
                intake.moment,
                Name=item.body.get("Name"),
                Input=item.body.get("Input"),
            )
        )
        intake.inbox.append(item)
        intake.replay = True
    elif item.kind in (SUB_COMPLETED, SUB_FAILED):
        task_id = int(item.body.get("TaskScheduledId", -1))
        if _live(state, intake, item.execution_id, task_id, delivered):
            intake.events.append(_sub_event(item, task_id, intake.moment))
            intake.replay = True
        intake.inbox.append(item)
    else:
        intake.inbox.append(item)


def _take_control(state: InstanceState, intake: Intake, item: InboxItem) -> None:
    intake.inbox.append(item)
    reason = str(item.body.get("Reason") or "")
    if item.kind == TERMINATE:
        intake.events.append(new_event(EventType.EXECUTION_TERMINATED, intake.moment, Input=reason))
        intake.status = TERMINATED
        intake.terminate_reason = reason
        intake.replay = False
    elif item.kind == SUSPEND and intake.status in (RUNNING, *AWAITING_START):
        intake.events.append(new_event(EventType.EXECUTION_SUSPENDED, intake.moment, Reason=reason))
        intake.status = SUSPENDED
        intake.replay = False  # events taken so far stay in history; resuming replays them
    elif item.kind == RESUME and intake.status == SUSPENDED:
        intake.events.append(new_event(EventType.EXECUTION_RESUMED, intake.moment, Reason=reason))
        started = bool(state.events) or any(
            kind_of(event) == EventType.EXECUTION_STARTED for event in intake.events
        )
        intake.status = RUNNING if started else PENDING
        intake.replay = started


def _started_event(state: InstanceState, item: InboxItem, moment: datetime) -> Event:
    fields: dict[str, Any] = {
        "Name": state.name,
        "Version": state.version,
        "Input": item.body.get("Input"),
        "OrchestrationInstance": {"InstanceId": state.instance_id, "ExecutionId": state.execution_id},
    }
    if state.parent is not None:
        fields["ParentInstance"] = {
            "OrchestrationInstance": {
                "InstanceId": state.parent.instance_id,
                "ExecutionId": state.parent.execution_id,
            },
            "TaskScheduleId": state.parent.task_id,
        }
    return new_event(EventType.EXECUTION_STARTED, moment, **fields)


def _sub_event(item: InboxItem, task_id: int, moment: datetime) -> Event:
    if item.kind == SUB_COMPLETED:
        return new_event(
            EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
            moment,
            TaskScheduledId=task_id,
            Result=item.body.get("Result"),
        )
    return new_event(
        EventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
        moment,
        TaskScheduledId=task_id,
        Reason=item.body.get("Reason"),
        Details=item.body.get("Details"),
    )


def _take_timer(state: InstanceState, intake: Intake, timer: TimerItem, delivered: set[int]) -> None:
    intake.timers.append(timer)
    if _live(state, intake, timer.execution_id, timer.timer_id, delivered) and intake.status == RUNNING:
        intake.events.append(
            new_event(
                EventType.TIMER_FIRED, intake.moment, TimerId=timer.timer_id, FireAt=format_time(timer.due)
            )
        )
        intake.replay = True


def _take_result(state: InstanceState, intake: Intake, result: ResultItem, delivered: set[int]) -> None:
    intake.results.append(result)
    if not _live(state, intake, result.execution_id, result.task_id, delivered) or intake.status != RUNNING:
        return
    if result.failure is None:
        event = new_event(
            EventType.TASK_COMPLETED, intake.moment, TaskScheduledId=result.task_id, Result=result.result
        )
    else:
        event = new_event(
            EventType.TASK_FAILED,
            intake.moment,
            TaskScheduledId=result.task_id,
            Reason=result.failure[0],
            Details=result.failure[1],
        )
    intake.events.append(event)
    intake.replay = True


@dataclass
class ContinueAsNew:
    """A new execution replacing the current one: its id, input, and external events carried over."""

    execution_id: str
    input: str | None
    carried: list[dict[str, Any]]


@dataclass
class Plan:
    """What a step writes: new history events and the instance's next state."""

    events: list[Event]
    status: str
    output: str | None
    custom_status: str | None
    new_tasks: list[PlannedTask] = field(default_factory=list)
    continue_as_new: ContinueAsNew | None = None

    @property
    def terminal(self) -> bool:
        """Say whether the instance ends with this step."""
        return self.status in TERMINAL


def build_plan(state: InstanceState, intake: Intake, outcome: ReplayOutcome | None) -> Plan:
    """Decide the step's result from the intake and the replay (None when nothing needed replaying)."""
    events = list(intake.events)
    moment = intake.moment
    if outcome is None:
        plan = Plan(events, intake.status, state.output, state.custom_status)
        if intake.terminate_reason is not None:
            plan.output = json.dumps(intake.terminate_reason)
            events.append(_completed_event(moment, TERMINATED, plan.output))
    else:
        plan = _plan_from_outcome(state, intake, outcome, events)
    events.append(new_event(EventType.ORCHESTRATOR_COMPLETED, moment))
    return plan


def _plan_from_outcome(
    state: InstanceState, intake: Intake, outcome: ReplayOutcome, events: list[Event]
) -> Plan:
    moment = intake.moment
    error = nondeterminism(state.events, outcome.tasks)
    details = None if error is not None else outcome.details
    error = error or outcome.error
    if error is not None:
        message = f"Orchestrator function '{state.name}' failed: {error}"
        output = json.dumps(f"{message}\n{details}" if details else message)
        failure = {"ErrorType": "OrchestratorFailure", "ErrorMessage": error, "StackTrace": details}
        events.append(_completed_event(moment, FAILED, output, FailureDetails=failure))
        return Plan(events, FAILED, output, outcome.custom_status)
    if outcome.continue_as_new:
        carried = _unprocessed_events([*state.events, *intake.events], outcome.resolved_waits)
        events.append(_completed_event(moment, CONTINUED_AS_NEW, outcome.output or "null"))
        renewal = ContinueAsNew(uuid.uuid4().hex, outcome.new_input, carried)
        return Plan(events, CONTINUED_AS_NEW, None, outcome.custom_status, continue_as_new=renewal)
    if outcome.done:
        output = outcome.output or "null"
        events.append(_completed_event(moment, COMPLETED, output))
        return Plan(events, COMPLETED, output, outcome.custom_status)
    new_tasks = [task for task_id, task in sorted(outcome.tasks.items()) if task_id not in state.scheduled]
    events.extend(_scheduling_event(state, task, moment) for task in new_tasks)
    return Plan(events, RUNNING, None, outcome.custom_status, new_tasks=new_tasks)


def _completed_event(moment: datetime, status: str, result: str | None, **fields: Any) -> Event:
    return new_event(
        EventType.EXECUTION_COMPLETED, moment, OrchestrationStatus=status, Result=result, **fields
    )


def child_instance_id(state: InstanceState, task: PlannedTask) -> str:
    """A sub-orchestration's instance id: the one asked for, else `<parent id>:<sequence number>`."""
    return task.instance_id or f"{state.instance_id}:{task.task_id}"


def _scheduling_event(state: InstanceState, task: PlannedTask, moment: datetime) -> Event:
    if task.kind == "timer":
        assert task.fire_at is not None
        return new_event(EventType.TIMER_CREATED, moment, task.task_id, FireAt=format_time(task.fire_at))
    if task.kind == "suborchestration":
        return new_event(
            EventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
            moment,
            task.task_id,
            Name=task.name,
            InstanceId=child_instance_id(state, task),
            Input=task.input,
            Version=task.version or "",
        )
    fields: dict[str, Any] = {"Name": task.name, "Input": task.input}
    if task.skip is not None:
        fields["DevhostSkip"] = list(task.skip)
    return new_event(EventType.TASK_SCHEDULED, moment, task.task_id, **fields)


def _unprocessed_events(events: Sequence[Event], resolved: Mapping[str, int]) -> list[dict[str, Any]]:
    # External events no wait_for_external_event took survive continue_as_new, oldest first.
    raised = [event for event in events if kind_of(event) == EventType.EVENT_RAISED]
    remaining = dict(resolved)
    kept: list[dict[str, Any]] = []
    for event in raised:
        name = str(event.get("Name"))
        if remaining.get(name, 0) > 0:
            remaining[name] -= 1
            continue
        kept.append({"Name": name, "Input": event.get("Input")})
    return kept


def chunk_activities(task_ids: Sequence[int]) -> list[tuple[int, ...]]:
    """Group new activities into work rows: about 25 rows for a fan-out, one row for a single call."""
    if not task_ids:
        return []
    size = min(MAX_CHUNK, max(1, math.ceil(len(task_ids) / CHUNKS_PER_FAN_OUT)))
    return [tuple(task_ids[start : start + size]) for start in range(0, len(task_ids), size)]
