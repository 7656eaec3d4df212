"""Pure pieces of the Durable engine: settings, retry delays, step intake, history views, replay checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest

from devhost.config import ConfigError, HostConfig
from devhost.durable.api import instance_id_problem
from devhost.durable.history import EventType, format_time, new_event, status_history
from devhost.durable.instance import (
    EVENT_RAISED,
    EXECUTION_STARTED,
    RESUME,
    SUSPEND,
    TERMINATE,
    InboxItem,
    InstanceState,
    ResultItem,
    TimerItem,
    build_plan,
    chunk_activities,
    take_intake,
)
from devhost.durable.options import DurableOptions
from devhost.durable.replay import RetryPolicy, _Recorder, prepare_event, replay, sdk_version_problem
from devhost.durable.store import blob_folder

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def host_config(tmp_path: Path, durable: dict[str, Any]) -> HostConfig:
    (tmp_path / "host.json").write_text(
        json.dumps({"version": "2.0", "extensions": {"durableTask": durable}})
    )
    return HostConfig.load(tmp_path)


def test_options_read_host_json_case_insensitively_and_resolve_settings(tmp_path: Path) -> None:
    config = host_config(
        tmp_path,
        {
            "HubName": "%HUB%",
            "maxconcurrentactivityfunctions": 3,
            "storageProvider": {"connectionStringName": "Other"},
        },
    )
    options = DurableOptions.load(config, {"HUB": "MyHub1", "DEVHOST_DURABLE_LEASE_SECONDS": "4"})
    assert (options.hub_name, options.max_activities, options.connection, options.lease_seconds) == (
        "MyHub1",
        3,
        "Other",
        4.0,
    )
    assert DurableOptions.load(HostConfig(), {}).hub_name == "TestHubName"


@pytest.mark.parametrize(
    ("durable", "environ", "message"),
    [
        ({"hubName": "has-dash"}, {}, "hubName"),
        ({"hubName": "ab"}, {}, "hubName"),
        ({"maxConcurrentActivityFunctions": 0}, {}, "maxConcurrentActivityFunctions"),
        ({"maxConcurrentOrchestratorFunctions": "8"}, {}, "maxConcurrentOrchestratorFunctions"),
        ({}, {"DEVHOST_DURABLE_LEASE_SECONDS": "soon"}, "DEVHOST_DURABLE_LEASE_SECONDS"),
    ],
)
def test_options_refuse_bad_values_with_a_clear_message(
    tmp_path: Path, durable: dict[str, Any], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        DurableOptions.load(host_config(tmp_path, durable), environ)


@pytest.mark.parametrize(
    ("policy", "delays"),
    [
        (RetryPolicy(timedelta(seconds=1), 5), [1, 1, 1]),
        (RetryPolicy(timedelta(seconds=1), 5, backoff=2), [1, 2, 4]),
        (RetryPolicy(timedelta(seconds=1), 5, backoff=3, max_interval=timedelta(seconds=5)), [1, 3, 5]),
    ],
)
def test_retry_delays_follow_the_back_off(policy: RetryPolicy, delays: list[float]) -> None:
    assert [policy.delay(failed).total_seconds() for failed in (1, 2, 3)] == delays


def test_retry_policy_reads_the_extension_json() -> None:
    policy = RetryPolicy.from_json(
        {
            "firstRetryIntervalInMilliseconds": 250,
            "maxNumberOfAttempts": 4,
            "backoffCoefficient": 1.5,
            "retryTimeoutInMilliseconds": 1000,
        }
    )
    assert policy == RetryPolicy(timedelta(milliseconds=250), 4, 1.5, None, timedelta(seconds=1))


def running_state(**fields: Any) -> InstanceState:
    state = InstanceState(
        instance_id="i",
        etag="e",
        name="orch",
        execution_id="x1",
        status="Running",
        created=NOW,
        updated=NOW,
        **fields,
    )
    events = [
        new_event(EventType.ORCHESTRATOR_STARTED, NOW),
        new_event(EventType.EXECUTION_STARTED, NOW, Name="orch", Version="", Input="null"),
        new_event(EventType.TASK_SCHEDULED, NOW, 0, Name="a", Input="1"),
        new_event(EventType.TIMER_CREATED, NOW, 1, FireAt=format_time(NOW)),
        new_event(EventType.ORCHESTRATOR_COMPLETED, NOW),
    ]
    state.add_events(events, [prepare_event(event) for event in events])
    return state


def test_intake_keeps_one_completion_per_open_task_of_the_current_execution() -> None:
    state = running_state()
    results = [
        ResultItem("x1", 0, "2"),
        ResultItem("x1", 0, "3"),
        ResultItem("old", 1, "4"),
        ResultItem("x1", 9),
    ]
    timers = [TimerItem("t-x1-00000001", "x1", 1, NOW), TimerItem("t-old-00000001", "old", 1, NOW)]
    intake = take_intake(state, [], timers, results, NOW + timedelta(seconds=1))
    kinds = [EventType(event["EventType"]) for event in intake.events]
    assert kinds == [EventType.ORCHESTRATOR_STARTED, EventType.TIMER_FIRED, EventType.TASK_COMPLETED]
    assert intake.events[2]["Result"] == "2" and intake.replay
    assert len(intake.results) == 4 and len(intake.timers) == 2  # the rest is consumed and dropped


def test_intake_buffers_messages_while_suspended_and_terminate_drops_the_rest() -> None:
    state = running_state()

    def item(key: str, kind: str, **body: Any) -> InboxItem:
        return InboxItem(key, kind, "", body)

    suspended = take_intake(
        state,
        [item("i-1", SUSPEND), item("i-2", EVENT_RAISED, Name="e", Input="1")],
        [],
        [ResultItem("x1", 0, "2")],
        NOW,
    )
    assert suspended.status == "Suspended" and [i.row_key for i in suspended.inbox] == ["i-1"]
    assert not suspended.results and not suspended.replay
    state.status = "Suspended"
    resumed = take_intake(
        state, [item("i-2", EVENT_RAISED, Name="e", Input="1"), item("i-3", RESUME)], [], [], NOW
    )
    assert resumed.status == "Running" and resumed.replay
    state.status = "Running"
    ended = take_intake(
        state,
        [item("i-4", TERMINATE, Reason="stop"), item("i-5", EVENT_RAISED, Name="e")],
        [],
        [ResultItem("x1", 0, "2")],
        NOW,
    )
    assert ended.status == "Terminated" and ended.terminate_reason == "stop" and not ended.replay
    assert len(ended.inbox) == 2 and len(ended.results) == 1
    plan = build_plan(state, ended, None)
    assert (
        plan.output == '"stop"' and EventType(plan.events[-2]["EventType"]) == EventType.EXECUTION_COMPLETED
    )


def test_a_start_message_for_another_execution_is_dropped() -> None:
    state = InstanceState(
        instance_id="i", etag="e", name="orch", execution_id="x2", status="Pending", created=NOW, updated=NOW
    )
    stale = take_intake(state, [InboxItem("i-1", EXECUTION_STARTED, "x1", {"Input": "1"})], [], [], NOW)
    assert len(stale.events) == 1 and not stale.replay and len(stale.inbox) == 1
    fresh = take_intake(state, [InboxItem("i-2", EXECUTION_STARTED, "x2", {"Input": "1"})], [], [], NOW)
    assert (
        EventType(fresh.events[1]["EventType"]) == EventType.EXECUTION_STARTED and fresh.status == "Running"
    )


def test_activities_are_chunked_into_about_25_work_rows() -> None:
    assert chunk_activities([7]) == [(7,)]
    chunks = chunk_activities(list(range(1000)))
    assert len(chunks) == 25 and sum(len(chunk) for chunk in chunks) == 1000
    assert chunk_activities([]) == []


def test_status_history_folds_scheduling_into_completions() -> None:
    events = [
        new_event(EventType.ORCHESTRATOR_STARTED, NOW),
        new_event(EventType.EXECUTION_STARTED, NOW, Name="orch", Input='{"a": 1}'),
        new_event(EventType.TASK_SCHEDULED, NOW, 0, Name="a", Input="1"),
        new_event(EventType.ORCHESTRATOR_COMPLETED, NOW),
        new_event(EventType.ORCHESTRATOR_STARTED, NOW + timedelta(seconds=1)),
        new_event(EventType.TASK_COMPLETED, NOW + timedelta(seconds=1), TaskScheduledId=0, Result='"ok"'),
        new_event(EventType.EXECUTION_COMPLETED, NOW, OrchestrationStatus="Completed", Result='"ok"'),
    ]
    quiet = status_history(events, with_output=False)
    assert [entry["EventType"] for entry in quiet] == [
        "ExecutionStarted",
        "TaskCompleted",
        "ExecutionCompleted",
    ]
    assert "Result" not in quiet[1] and quiet[1]["FunctionName"] == "a"
    loud = status_history(events, with_output=True)
    assert loud[0]["Input"] == {"a": 1} and loud[1]["Result"] == "ok" and loud[2]["Result"] == "ok"
    assert loud[1]["ScheduledTime"] == format_time(NOW)


@pytest.mark.parametrize(
    ("instance_id", "ok"),
    [
        ("abc", True),
        ("a:b c", True),
        ("", False),
        ("a/b", False),
        ("a#b", False),
        ("a\x01", False),
        ("x" * 257, False),
    ],
)
def test_instance_ids_follow_the_table_key_rules(instance_id: str, ok: bool) -> None:
    assert (instance_id_problem(instance_id) is None) is ok


def _two_steps(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
    first = yield context.call_activity("a", 1)
    second = yield context.call_activity("b", first)
    return second


def _replay(handle: Any, events: list[Any], *, new_from: int) -> Any:
    """Replay `events` through the SDK for instance "i", the new ones starting at `new_from`."""
    return replay(
        handle,
        instance_id="i",
        parent_instance_id=None,
        input_text="null",
        events=events,
        prepared=[prepare_event(event) for event in events],
        new_from=new_from,
    )


def test_replay_numbers_tasks_like_the_sdk_and_spots_changed_code() -> None:
    handle = df.Orchestrator.create(_two_steps)
    state = running_state()
    intake = take_intake(state, [], [], [ResultItem("x1", 0, '"one"')], NOW + timedelta(seconds=1))
    events = [*state.events, *intake.events]
    outcome = _replay(handle, events, new_from=len(state.events))
    # The history scheduled a timer at sequence number 1; this code schedules activity 'b' there instead.
    assert (
        outcome.tasks[0].name == "a" and outcome.tasks[1].kind == "activity" and outcome.tasks[1].name == "b"
    )
    plan = build_plan(state, intake, outcome)
    assert plan.status == "Failed" and "Non-deterministic" in (plan.output or "")
    assert "a durable timer" in (plan.output or "") and "activity 'b'" in (plan.output or "")


def test_only_the_sdk_series_the_replay_hooks_were_written_for_is_accepted() -> None:
    assert sdk_version_problem() is None  # the installed one
    assert sdk_version_problem("1.7.3") is None
    problem = sdk_version_problem("1.8.0")
    assert (
        problem is not None
        and "1.8.0 is installed" in problem
        and "azure-functions-durable~=1.7.0" in problem
    )


def test_a_replay_the_hooks_misread_fails_the_instance_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    handle = df.Orchestrator.create(_two_steps)
    state = running_state()
    del state.scheduled[1]  # the history knows only activity 'a'
    state.open.discard(1)
    intake = take_intake(state, [], [], [ResultItem("x1", 0, '"one"')], NOW + timedelta(seconds=1))
    events = [*state.events, *intake.events]

    def run() -> Any:
        return _replay(handle, events, new_from=len(state.events))

    assert run().error is None
    # An SDK whose internals changed: the hook no longer sees the tasks it numbers.
    monkeypatch.setattr(_Recorder, "__call__", lambda self, task: self.original(task))
    outcome = run()
    assert outcome.error is not None and "devhost could not follow this replay" in outcome.error
    assert "activity 'b'" in outcome.error


def test_blob_folders_never_nest_one_instance_in_another() -> None:
    assert not blob_folder("a/b").startswith(blob_folder("a"))
    assert blob_folder("a") != blob_folder("b") and blob_folder("a").endswith("/")
