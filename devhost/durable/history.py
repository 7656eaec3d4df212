"""History events in the JSON shape the Durable SDK replays, and the status API's view of them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

Event = dict[str, Any]


class EventType(IntEnum):
    """DurableTask history event types (the SDK's HistoryEventType numbering)."""

    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    SUB_ORCHESTRATION_INSTANCE_CREATED = 7
    SUB_ORCHESTRATION_INSTANCE_COMPLETED = 8
    SUB_ORCHESTRATION_INSTANCE_FAILED = 9
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_SENT = 14
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16
    GENERIC_EVENT = 17
    HISTORY_STATE = 18
    EXECUTION_SUSPENDED = 19
    EXECUTION_RESUMED = 20


# Events that schedule work under a sequence number, and the events that complete that work.
SCHEDULING = frozenset(
    {EventType.TASK_SCHEDULED, EventType.TIMER_CREATED, EventType.SUB_ORCHESTRATION_INSTANCE_CREATED}
)
COMPLETING = {
    EventType.TASK_COMPLETED: "TaskScheduledId",
    EventType.TASK_FAILED: "TaskScheduledId",
    EventType.TIMER_FIRED: "TimerId",
    EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED: "TaskScheduledId",
    EventType.SUB_ORCHESTRATION_INSTANCE_FAILED: "TaskScheduledId",
}
_KIND_BY_SCHEDULING = {
    EventType.TASK_SCHEDULED: "activity",
    EventType.TIMER_CREATED: "timer",
    EventType.SUB_ORCHESTRATION_INSTANCE_CREATED: "suborchestration",
}


def utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """Format a time the way DurableTask writes history timestamps (ISO 8601, UTC, `Z`)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Parse a timestamp written by `format_time` (or any ISO 8601 time; naive means UTC)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def new_event(kind: EventType, moment: datetime, event_id: int = -1, **fields: Any) -> Event:
    """Build one history event (the SDK needs EventType, EventId, IsPlayed and Timestamp on each)."""
    return {
        "EventType": int(kind),
        "EventId": event_id,
        "IsPlayed": False,
        "Timestamp": format_time(moment),
        **fields,
    }


def kind_of(event: Mapping[str, Any]) -> EventType:
    """The event's type."""
    return EventType(int(event["EventType"]))


def scheduled_kind(event: Mapping[str, Any]) -> str | None:
    """For a scheduling event, say what it scheduled ("activity", "timer", "suborchestration")."""
    return _KIND_BY_SCHEDULING.get(kind_of(event))


def completed_id(event: Mapping[str, Any]) -> int | None:
    """For a completion event (task, timer, sub-orchestration), the sequence number it completes."""
    key = COMPLETING.get(kind_of(event))
    return None if key is None else int(event[key])


def describe_scheduled(event: Mapping[str, Any]) -> str:
    """Say in words what a scheduling event scheduled, for nondeterminism errors."""
    kind = scheduled_kind(event)
    if kind == "timer":
        return "a durable timer"
    what = "activity" if kind == "activity" else "sub-orchestration"
    return f"{what} '{event.get('Name')}'"


def later(previous: datetime | None, now: datetime) -> datetime:
    """A timestamp after `previous`, so OrchestratorStarted times never go backwards."""
    if previous is not None and now <= previous:
        return previous + timedelta(microseconds=1)
    return now


def _json_or_text(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def status_history(events: Iterable[Mapping[str, Any]], *, with_output: bool) -> list[dict[str, Any]]:
    """Render history the way the extension's status API does (showHistory=true).

    Scheduling and episode-marker events are folded away: a completion carries the name and time of
    what it completes, as `FunctionName` and `ScheduledTime`. Results appear with showHistoryOutput.
    """
    scheduled: dict[int, Mapping[str, Any]] = {}
    rendered: list[dict[str, Any]] = []
    for event in events:
        kind = kind_of(event)
        if kind in SCHEDULING:
            scheduled[int(event["EventId"])] = event
            continue
        entry = _render(event, kind, scheduled, with_output=with_output)
        if entry is not None:
            rendered.append(entry)
    return rendered


def _render(
    event: Mapping[str, Any],
    kind: EventType,
    scheduled: Mapping[int, Mapping[str, Any]],
    *,
    with_output: bool,
) -> dict[str, Any] | None:
    entry: dict[str, Any] = {"EventType": kind.name.title().replace("_", ""), "Timestamp": event["Timestamp"]}
    if kind == EventType.EXECUTION_STARTED:
        entry["FunctionName"] = event.get("Name")
        if with_output:
            entry["Input"] = _json_or_text(event.get("Input"))
    elif kind in COMPLETING:
        task_id = completed_id(event)
        origin = scheduled.get(-1 if task_id is None else task_id, {})
        entry.update(_completion_fields(event, kind, origin, with_output=with_output))
    elif kind == EventType.EVENT_RAISED:
        entry["Name"] = event.get("Name")
        if with_output:
            entry["Input"] = _json_or_text(event.get("Input"))
    elif kind == EventType.EXECUTION_COMPLETED:
        entry["OrchestrationStatus"] = event.get("OrchestrationStatus")
        if with_output:
            entry["Result"] = _json_or_text(event.get("Result"))
        if event.get("FailureDetails"):
            entry["FailureDetails"] = event["FailureDetails"]
    elif kind in (EventType.EXECUTION_TERMINATED, EventType.EXECUTION_SUSPENDED, EventType.EXECUTION_RESUMED):
        entry["Reason"] = (
            event.get("Input") if kind == EventType.EXECUTION_TERMINATED else event.get("Reason")
        )
    else:
        return None
    return entry


def _completion_fields(
    event: Mapping[str, Any], kind: EventType, origin: Mapping[str, Any], *, with_output: bool
) -> dict[str, Any]:
    fields: dict[str, Any] = {"ScheduledTime": origin.get("Timestamp")}
    if kind == EventType.TIMER_FIRED:
        fields["TimerId"] = event.get("TimerId")
        fields["FireAt"] = event.get("FireAt")
        return fields
    fields["FunctionName"] = origin.get("Name")
    if kind in (EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED, EventType.SUB_ORCHESTRATION_INSTANCE_FAILED):
        fields["InstanceId"] = origin.get("InstanceId")
    if kind in (EventType.TASK_FAILED, EventType.SUB_ORCHESTRATION_INSTANCE_FAILED):
        fields["Reason"] = event.get("Reason")
        fields["Details"] = event.get("Details")
    elif with_output:
        fields["Result"] = _json_or_text(event.get("Result"))
    return fields
