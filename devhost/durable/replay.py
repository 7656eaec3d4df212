"""Run an orchestrator through the Durable SDK's own replay and read back what it scheduled.

The extension's side of the protocol: devhost hands the SDK the instance's history (old events marked
played), the SDK replays the generator and returns its state (actions, isDone, output, customStatus).
The SDK numbers every task it schedules (activities, timers, sub-orchestrations, retry timers and
retried attempts) in the order it meets them; devhost records those numbers as the SDK assigns them,
so history events carry exactly the ids the SDK expects when their results come back.
"""

from __future__ import annotations

import importlib.metadata
import json
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.durable_functions.models.actions.CallActivityAction import CallActivityAction
from azure.durable_functions.models.actions.CallActivityWithRetryAction import CallActivityWithRetryAction
from azure.durable_functions.models.actions.CallEntityAction import CallEntityAction
from azure.durable_functions.models.actions.CallHttpAction import CallHttpAction
from azure.durable_functions.models.actions.CallSubOrchestratorAction import CallSubOrchestratorAction
from azure.durable_functions.models.actions.CallSubOrchestratorWithRetryAction import (
    CallSubOrchestratorWithRetryAction,
)
from azure.durable_functions.models.actions.CreateTimerAction import CreateTimerAction
from azure.durable_functions.models.actions.NoOpAction import NoOpAction
from azure.durable_functions.models.DurableOrchestrationContext import DurableOrchestrationContext
from azure.durable_functions.models.history.HistoryEvent import HistoryEvent
from azure.durable_functions.models.Task import AtomicTask, TaskState
from azure.durable_functions.orchestrator import Orchestrator

from devhost.durable.history import Event, describe_scheduled, scheduled_kind

ENTITIES_UNSUPPORTED = "entities are not supported by devhost"
CALL_HTTP_UNSUPPORTED = "call_http (durable HTTP) is not supported by devhost"
_CONTINUE_AS_NEW = 4
_UNSUPPORTED_ACTIONS = {7: ENTITIES_UNSUPPORTED, 8: CALL_HTTP_UNSUPPORTED, 9: ENTITIES_UNSUPPORTED}
_ERROR_MARKER = "\n\n$OutOfProcData$:"
_RETRY_TIMER = "-WithRetry timer"
# The replay hooks below use the SDK's internals (the context's `_add_to_open_tasks`, `_histories`, ...),
# as azure-functions-durable 1.7 has them; other versions are refused rather than misread.
SDK_PACKAGE = "azure-functions-durable"
SDK_SERIES = "1.7."
# Schedule actions in the state JSON (ActionType): what each schedules, and whether it retries.
_SCHEDULE_ACTIONS = {
    0: ("activity", False),
    1: ("activity", True),
    2: ("suborchestration", False),
    3: ("suborchestration", True),
    5: ("timer", False),
}


def sdk_version_problem(version: str | None = None) -> str | None:
    """Say why the installed Durable SDK cannot be driven by devhost (None when it is a 1.7.x)."""
    found = version if version is not None else importlib.metadata.version(SDK_PACKAGE)
    if found.startswith(SDK_SERIES):
        return None
    return (
        f"devhost's Durable Functions support drives {SDK_PACKAGE} {SDK_SERIES}x through its replay "
        f"internals, but {found} is installed: install {SDK_PACKAGE}~={SDK_SERIES}0 to run orchestrations "
        "with devhost"
    )


@dataclass(frozen=True)
class RetryPolicy:
    """Retry options as the extension reads them from an action's `retryOptions` JSON."""

    first_interval: timedelta
    max_attempts: int
    backoff: float = 1.0
    max_interval: timedelta | None = None
    timeout: timedelta | None = None

    @classmethod
    def from_json(cls, options: Mapping[str, Any]) -> RetryPolicy:
        """Read firstRetryIntervalInMilliseconds, maxNumberOfAttempts and the optional back-off fields."""

        def millis(key: str) -> timedelta | None:
            value = options.get(key)
            return None if value is None else timedelta(milliseconds=float(value))

        return cls(
            first_interval=millis("firstRetryIntervalInMilliseconds") or timedelta(0),
            max_attempts=int(options.get("maxNumberOfAttempts", 1)),
            backoff=float(options.get("backoffCoefficient", 1.0)),
            max_interval=millis("maxRetryIntervalInMilliseconds"),
            timeout=millis("retryTimeoutInMilliseconds"),
        )

    def delay(self, failed_attempts: int) -> timedelta:
        """The wait before the next attempt after `failed_attempts` failures (DTFx's ComputeNextDelay)."""
        delay = self.first_interval * (self.backoff ** max(0, failed_attempts - 1))
        if self.max_interval is not None and delay > self.max_interval:
            return self.max_interval
        return delay


@dataclass(frozen=True)
class PlannedTask:
    """A task the SDK numbered: an activity, a durable timer or a sub-orchestration."""

    task_id: int
    kind: str
    name: str = ""
    input: str | None = None
    fire_at: datetime | None = None
    instance_id: str | None = None
    version: str | None = None
    # Set when a retry's timeout has expired: the attempt fails at once with this (reason, details).
    skip: tuple[str, str] | None = None
    # Part of a call_*_with_retry: an attempt or the timer before one.
    retry: bool = False

    def describe(self) -> str:
        """Say in words what this task is, for nondeterminism errors."""
        if self.kind == "timer":
            return "a durable timer"
        what = "activity" if self.kind == "activity" else "sub-orchestration"
        return f"{what} '{self.name}'"


@dataclass
class ReplayOutcome:
    """What one replay produced."""

    done: bool = False
    output: str | None = None
    error: str | None = None
    details: str | None = None
    custom_status: str | None = None
    continue_as_new: bool = False
    new_input: str | None = None
    tasks: dict[int, PlannedTask] = field(default_factory=dict)
    resolved_waits: dict[str, int] = field(default_factory=dict)


class _Recorder:
    """Stands in for the context's `_add_to_open_tasks` to see each task as the SDK numbers it."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.original: Callable[[Any], None] = context._add_to_open_tasks
        self.tasks: dict[int, PlannedTask] = {}
        self.waits: list[Any] = []
        self.unsupported: str | None = None
        self._first_attempt: dict[int, datetime] = {}
        self._exhausted: set[int] = set()

    def __call__(self, task: Any) -> None:
        self.original(task)
        if not isinstance(task, AtomicTask):
            return
        if isinstance(task.id, str):
            self.waits.append(task)
        elif isinstance(task.id, int) and task.id >= 0 and task.id not in self.tasks:
            self.tasks[task.id] = self._plan(task)

    def _now(self) -> datetime:
        moment: datetime = self.context.current_utc_datetime
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    def _plan(self, task: Any) -> PlannedTask:
        action = task._get_action()
        if isinstance(action, NoOpAction):
            return self._plan_retry_step(task, action)
        if isinstance(action, CallActivityWithRetryAction | CallSubOrchestratorWithRetryAction):
            self._first_attempt.setdefault(id(task.parent), self._now())
        return self._plan_action(task.id, action)

    def _plan_action(self, task_id: int, action: Any, skip: tuple[str, str] | None = None) -> PlannedTask:
        retry = isinstance(action, CallActivityWithRetryAction | CallSubOrchestratorWithRetryAction)
        if isinstance(action, CallActivityAction | CallActivityWithRetryAction):
            return PlannedTask(
                task_id, "activity", name=action.function_name, input=action.input_, skip=skip, retry=retry
            )
        if isinstance(action, CallSubOrchestratorAction | CallSubOrchestratorWithRetryAction):
            return PlannedTask(
                task_id,
                "suborchestration",
                name=action.function_name,
                input=action._input,
                instance_id=action.instance_id,
                version=action.version,
                skip=skip,
                retry=retry,
            )
        if isinstance(action, CreateTimerAction):
            fire_at = action.fire_at
            return PlannedTask(
                task_id, "timer", fire_at=fire_at if fire_at.tzinfo else fire_at.replace(tzinfo=UTC)
            )
        if isinstance(action, CallEntityAction):
            self.unsupported = ENTITIES_UNSUPPORTED
        elif isinstance(action, CallHttpAction):
            self.unsupported = CALL_HTTP_UNSUPPORTED
        else:
            self.unsupported = f"the action {type(action).__name__} is not supported by devhost"
        return PlannedTask(task_id, "unsupported", name=type(action).__name__)

    def _plan_retry_step(self, task: Any, action: Any) -> PlannedTask:
        # The SDK's RetryAbleTask adds anonymous tasks: a timer after each failure, then the next attempt.
        retry = task.parent
        original = retry.actions[0] if isinstance(retry.actions, list) else retry.actions
        # to_json() of a RetryOptions subclass may add backoffCoefficient and friends (the base has two keys).
        policy = RetryPolicy.from_json(retry.retry_options.to_json())
        now = self._now()
        if action.metadata == _RETRY_TIMER:
            first = self._first_attempt.get(id(retry), now)
            if policy.timeout is not None and now >= first + policy.timeout:
                self._exhausted.add(id(retry))
                return PlannedTask(task.id, "timer", fire_at=now, retry=True)
            return PlannedTask(task.id, "timer", fire_at=now + policy.delay(retry.num_attempts), retry=True)
        skip = None
        if id(retry) in self._exhausted:
            # The attempt fails at once with the last real failure (the SDK counts attempts to its maximum).
            reason = str(retry.error or "").split(" \n ", 1)[0]
            skip = (reason, f"Not attempted: the retry timeout of {policy.timeout} has expired.")
        return self._plan_action(task.id, original, skip)


def prepare_event(event: Event) -> Any:
    """Build the SDK's HistoryEvent once per event (parsing timestamps dominates replay time)."""
    return HistoryEvent(**{**event, "IsPlayed": False})


def replay(
    handle: Callable[..., Any],
    *,
    instance_id: str,
    parent_instance_id: str | None,
    input_text: str | None,
    events: Sequence[Event],
    prepared: Sequence[Any],
    new_from: int,
) -> ReplayOutcome:
    """Replay `handle` (an `Orchestrator.create` handle) over the history; events from `new_from` are new."""
    for index, sdk_event in enumerate(prepared):
        sdk_event._is_played = index < new_from
    head = [{**event, "IsPlayed": index < new_from} for index, event in enumerate(events[:2])]
    context = DurableOrchestrationContext(
        history=head,
        instanceId=instance_id,
        isReplaying=new_from > 0,
        parentInstanceId=parent_instance_id,
        input=input_text,
    )
    context._histories = list(prepared)
    context._input_expected_type = getattr(handle, "_df_input_type", None)
    recorder = _Recorder(context)
    context._add_to_open_tasks = recorder
    outcome = ReplayOutcome()
    try:
        orchestrator = Orchestrator(getattr(handle, "orchestrator_function"))  # noqa: B009 - set by Orchestrator.create
        state = json.loads(orchestrator.handle(context))
    except Exception as error:  # noqa: BLE001 - the orchestrator's failure becomes the instance's failure
        state = _failed_state(error, outcome)
    _read_state(state, outcome)
    outcome.tasks = recorder.tasks
    outcome.resolved_waits = _resolved_waits(recorder.waits)
    unsupported = recorder.unsupported or _unsupported_action(state)
    if unsupported is not None:
        outcome.error, outcome.details = unsupported, None
    elif outcome.error is None and not outcome.continue_as_new:
        outcome.error = protocol_mismatch(state, recorder.tasks)
    return outcome


def protocol_mismatch(state: Mapping[str, Any], tasks: Mapping[int, PlannedTask]) -> str | None:
    """Cross-check the tasks seen through the SDK's internals against the schedule actions it returned.

    The actions (the public protocol) list every activity, sub-orchestration and timer the orchestrator
    scheduled, completed ones included; a retried call is one action for all its attempts and timers.
    """
    listed: Counter[tuple[str, str]] = Counter()
    listed_retries: set[tuple[str, str]] = set()
    for action in _flat_actions(state):
        spec = _SCHEDULE_ACTIONS.get(int(action.get("actionType", -1)))
        if spec is None:
            continue
        kind, retry = spec
        key = (kind, "" if kind == "timer" else str(action.get("functionName")))
        if retry:
            listed_retries.add(key)
        else:
            listed[key] += 1
    seen = Counter((task.kind, task.name) for task in tasks.values() if not task.retry)
    seen_retries = {(task.kind, task.name) for task in tasks.values() if task.retry and task.kind != "timer"}
    if seen == listed and seen_retries == listed_retries:
        return None
    return (
        f"devhost could not follow this replay: the {SDK_PACKAGE} SDK returned schedule actions "
        f"{_describe(listed, listed_retries)} but devhost saw it schedule {_describe(seen, seen_retries)}. "
        f"devhost supports {SDK_PACKAGE} {SDK_SERIES}x."
    )


def _describe(counts: Counter[tuple[str, str]], retries: set[tuple[str, str]]) -> str:
    parts = [
        f"{count} x {kind} {name!r}" if name else f"{count} x {kind}"
        for (kind, name), count in counts.items()
    ]
    parts += [f"{kind} {name!r} with retry" for kind, name in sorted(retries)]
    return "[" + ", ".join(sorted(parts)) + "]"


def _failed_state(error: Exception, outcome: ReplayOutcome) -> dict[str, Any]:
    text = str(error)
    cause = error.__cause__ or error
    outcome.details = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)).strip()
    start = text.find(_ERROR_MARKER)
    while start >= 0:
        try:
            state: dict[str, Any] = json.loads(text[start + len(_ERROR_MARKER) :])
        except ValueError:
            start = text.find(_ERROR_MARKER, start + 1)
            continue
        outcome.error = str(state.get("error") or text[:start])
        return state
    outcome.error = f"{type(error).__name__}: {text}"
    return {}


def _read_state(state: Mapping[str, Any], outcome: ReplayOutcome) -> None:
    outcome.done = bool(state.get("isDone")) and outcome.error is None
    if "output" in state:
        outcome.output = json.dumps(state["output"])
    if "customStatus" in state:
        outcome.custom_status = json.dumps(state["customStatus"])
    for action in _flat_actions(state):
        if action.get("actionType") == _CONTINUE_AS_NEW and outcome.error is None:
            outcome.continue_as_new = True
            outcome.new_input = action.get("input")


def _flat_actions(state: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    flat: list[Mapping[str, Any]] = []
    for group in state.get("actions") or []:
        for action in group if isinstance(group, list) else [group]:
            flat.append(action)
            flat.extend(action.get("compoundActions") or [])
    return flat


def _unsupported_action(state: Mapping[str, Any]) -> str | None:
    for action in _flat_actions(state):
        reason = _UNSUPPORTED_ACTIONS.get(int(action.get("actionType", -1)))
        if reason is not None:
            return reason
    return None


def _resolved_waits(waits: Sequence[Any]) -> dict[str, int]:
    resolved: dict[str, int] = {}
    for wait in waits:
        if wait.state is not TaskState.RUNNING:
            resolved[wait.id] = resolved.get(wait.id, 0) + 1
    return resolved


def nondeterminism(events: Sequence[Event], tasks: Mapping[int, PlannedTask]) -> str | None:
    """Compare what the history scheduled with what the replay scheduled; describe the first mismatch."""
    for event in events:
        kind = scheduled_kind(event)
        if kind is None:
            continue
        task_id = int(event["EventId"])
        planned = tasks.get(task_id)
        before = describe_scheduled(event)
        if planned is None:
            now = "did not schedule it"
        elif planned.kind != kind or (kind != "timer" and planned.name != event.get("Name")):
            now = f"scheduled {planned.describe()} instead"
        else:
            continue
        return (
            f"Non-deterministic workflow detected: a previous execution of this orchestration scheduled "
            f"{before} with sequence number {task_id}, but the current replay {now}. Orchestrator code "
            "must be deterministic: was it changed while this instance was running?"
        )
    return None
