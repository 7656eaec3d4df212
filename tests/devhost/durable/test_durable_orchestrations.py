"""Orchestrator features through the real SDK on Azurite: outputs, statuses, custom status and histories."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from azure.data.tables import TableClient
from azure.storage.blob import ContainerClient

from devhost import Host
from devhost.azurite import Azurite
from devhost.durable.history import parse_time
from devhost.durable.store import blob_folder
from tests.devhost.durable.support import Driver, events_of, serve


def test_activities_in_sequence_complete_with_output_and_history(conformance: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        started = await driver.start("hello_sequence")
        seen["final"] = await driver.wait(started["id"])
        seen["sdk"] = await driver.sdk_status(started["id"], history=True)
        seen["started"] = started

    serve(conformance, scenario)
    expected = ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
    assert seen["final"]["runtimeStatus"] == "Completed" and seen["final"]["output"] == expected
    sdk = seen["sdk"]
    assert (
        sdk["runtimeStatus"] == "Completed" and sdk["output"] == expected and sdk["name"] == "hello_sequence"
    )
    kinds = [event["EventType"] for event in sdk["history"]]
    assert kinds == [
        "ExecutionStarted",
        "TaskCompleted",
        "TaskCompleted",
        "TaskCompleted",
        "ExecutionCompleted",
    ]
    completed = events_of(sdk, "TaskCompleted")
    assert [event["Result"] for event in completed] == expected
    assert {event["FunctionName"] for event in completed} == {"hello"}
    assert all(parse_time(event["ScheduledTime"]) <= parse_time(event["Timestamp"]) for event in completed)
    assert events_of(sdk, "ExecutionCompleted")[0]["OrchestrationStatus"] == "Completed"
    urls = seen["started"]
    assert urls["statusQueryGetUri"].endswith(
        f"/instances/{urls['id']}?taskHub={conformance.environ['TEST_HUB']}&connection=Storage"
    )
    for key in (
        "sendEventPostUri",
        "terminatePostUri",
        "purgeHistoryDeleteUri",
        "suspendPostUri",
        "resumePostUri",
    ):
        assert urls["id"] in urls[key]


def test_fan_out_fan_in_and_wait_for_completion(conformance: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        async with driver.session.post(f"{driver.base_url}/api/run/fan_out", json=150) as response:
            seen["run"] = (response.status, await response.json())

    serve(conformance, scenario)
    assert seen["run"] == (200, sum(2 * number for number in range(150)))


def test_wait_for_completion_answers_the_check_status_response_on_timeout(conformance: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        url = f"{driver.base_url}/api/run/waiter?timeout_ms=300"
        async with driver.session.post(url) as response:
            seen["run"] = (response.status, await response.json(), response.headers.get("Location"))
        seen["status"] = await driver.wait(seen["run"][1]["id"], until=("Running",))

    serve(conformance, scenario)
    status, payload, location = seen["run"]
    assert status == 202 and location == payload["statusQueryGetUri"]
    assert payload["id"] in payload["statusQueryGetUri"] and "sendEventPostUri" in payload
    assert seen["status"]["runtimeStatus"] == "Running"


def test_activity_concurrency_is_capped_by_host_json(conformance: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        seen["final"] = await driver.run("busy_fan_out", {"count": 40, "seconds": 0.05})

    serve(conformance, scenario)
    assert seen["final"]["output"] == 40
    assert conformance.module.CONCURRENCY["max"] == 3  # host.json maxConcurrentActivityFunctions


def test_orchestrator_concurrency_is_capped_by_host_json(conformance: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        started = [await driver.start("slow_replay", number) for number in range(10)]
        seen["finals"] = [await driver.wait(payload["id"]) for payload in started]

    serve(conformance, scenario)
    assert [final["output"] for final in seen["finals"]] == [2 * number for number in range(10)]
    assert conformance.module.REPLAYS["max"] == 4  # host.json maxConcurrentOrchestratorFunctions


def test_retry_backs_off_and_counts_attempts(conformance: Host) -> None:
    keys = {name: uuid.uuid4().hex for name in ("backoff", "exhausted", "capped", "timeout")}
    specs = {
        "backoff": {"fail_times": 2, "first_ms": 150, "backoff": 2.0, "max_attempts": 5},
        "exhausted": {"fail_times": 10, "first_ms": 50, "max_attempts": 3},
        "capped": {"fail_times": 3, "first_ms": 100, "backoff": 10.0, "max_ms": 200, "max_attempts": 5},
        "timeout": {"fail_times": 10, "first_ms": 300, "max_attempts": 6, "timeout_ms": 250},
    }
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        started = {
            name: await driver.start("retrying", {**spec, "key": keys[name]}) for name, spec in specs.items()
        }
        for name, payload in started.items():
            await driver.wait(payload["id"])
            seen[name] = await driver.sdk_status(payload["id"], history=True)

    serve(conformance, scenario)
    attempts = conformance.module.ATTEMPTS
    gaps = {
        name: [b - a for a, b in zip(attempts[key], attempts[key][1:], strict=False)]
        for name, key in keys.items()
    }
    assert seen["backoff"]["output"] == {"attempt": 3}
    assert len(attempts[keys["backoff"]]) == 3
    assert (
        0.14 <= gaps["backoff"][0] < gaps["backoff"][1] and gaps["backoff"][1] >= 0.29
    )  # 150 ms, then 300 ms
    assert len(events_of(seen["backoff"], "TaskFailed")) == 2
    assert len(events_of(seen["backoff"], "TimerFired")) == 2

    assert seen["exhausted"]["output"]["failed"].startswith(
        "Activity function 'flaky' failed: RuntimeError: attempt 3"
    )
    assert len(attempts[keys["exhausted"]]) == 3
    assert len(events_of(seen["exhausted"], "TaskFailed")) == 3

    assert seen["capped"]["output"] == {"attempt": 4}
    assert (
        all(0.09 <= gap < 0.45 for gap in gaps["capped"]) and gaps["capped"][1] >= 0.19
    )  # 100, then 200 cap

    # The retry timeout (250 ms) has passed when the second attempt (300 ms later) fails: no third one runs.
    assert len(attempts[keys["timeout"]]) == 2
    assert seen["timeout"]["output"]["failed"].startswith(
        "Activity function 'flaky' failed: RuntimeError: attempt 2"
    )


def test_sub_orchestrations_with_ids_retries_and_failures(conformance: Host) -> None:
    seen: dict[str, Any] = {}
    child_id = f"child-{uuid.uuid4().hex[:8]}"

    async def scenario(driver: Driver) -> None:
        started = await driver.start("parent", {"child_id": child_id})
        seen["parent"] = await driver.wait(started["id"])
        seen["child"] = await driver.sdk_status(child_id)
        seen["parent_history"] = await driver.sdk_status(started["id"], history=True)
        seen["id"] = started["id"]

    serve(conformance, scenario)
    output = seen["parent"]["output"]
    assert seen["parent"]["runtimeStatus"] == "Completed"
    assert output["first"] == {"greeting": "Hello Ada!", "parent": seen["id"], "me": child_id}
    assert output["second"]["greeting"] == "Hello Grace!" and output["second"]["me"] == f"{seen['id']}:1"
    assert output["retried"]["greeting"] == "Hello Linus!"
    assert "child was asked to fail" in output["failure"]
    assert seen["child"]["runtimeStatus"] == "Completed" and seen["child"]["output"]["me"] == child_id
    history = seen["parent_history"]
    assert len(events_of(history, "SubOrchestrationInstanceCompleted")) == 3
    failed = events_of(history, "SubOrchestrationInstanceFailed")
    assert len(failed) == 1 and failed[0]["FunctionName"] == "child"


def test_external_events_and_custom_status(conformance: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        started = await driver.start("waiter")
        instance = started["id"]
        await driver.wait_for(lambda: driver.custom_is(instance, "waiting for first"))
        assert (await driver.client("raise_event", instance_id=instance, event="first", data={"n": 1}))[
            0
        ] == 200
        await driver.wait_for(lambda: driver.custom_is(instance, "waiting for second"))
        seen["middle"] = await driver.sdk_status(instance)
        await driver.client("raise_event", instance_id=instance, event="second", data=[2])
        seen["final"] = await driver.wait(instance)
        # An event raised before the orchestrator waits for it is kept until it does.
        early = await driver.start("waiter")
        await driver.client("raise_event", instance_id=early["id"], event="second", data="b")
        await driver.client("raise_event", instance_id=early["id"], event="first", data="a")
        seen["early"] = await driver.wait(early["id"])

    serve(conformance, scenario)
    assert (
        seen["middle"]["runtimeStatus"] == "Running"
        and seen["middle"]["customStatus"] == "waiting for second"
    )
    assert seen["final"]["output"] == [{"n": 1}, [2]] and seen["final"]["customStatus"] == "done"
    assert seen["early"]["output"] == ["a", "b"]


def test_task_any_between_an_event_and_a_durable_timer(conformance: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        approved = await driver.start("approval", 60)
        timed_out = await driver.start("approval", 0.5)
        await driver.wait_for(lambda: driver.custom_is(approved["id"], {"stage": "waiting"}))
        await driver.client("raise_event", instance_id=approved["id"], event="approve", data="yes")
        seen["approved"] = await driver.wait(approved["id"])
        seen["timed_out"] = await driver.wait(timed_out["id"])
        seen["timer_history"] = await driver.sdk_status(timed_out["id"], history=True)

    serve(conformance, scenario)
    assert seen["approved"]["output"] == {"approved": "yes"}
    assert seen["approved"]["customStatus"] == {"stage": "approved"}
    assert seen["timed_out"]["output"] == {"approved": None}
    assert seen["timed_out"]["customStatus"] == {"stage": "timed out"}
    fired = events_of(seen["timer_history"], "TimerFired")
    assert len(fired) == 1 and parse_time(fired[0]["Timestamp"]) >= parse_time(fired[0]["FireAt"])


def test_durable_timer_and_deterministic_time(conformance: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        seen["sleeper"] = await driver.run("sleeper", 1)
        facts = await driver.start("replay_facts")
        seen["facts"] = await driver.wait(facts["id"])
        seen["history"] = await driver.sdk_status(facts["id"], history=True)

    serve(conformance, scenario)
    assert (
        seen["sleeper"]["output"]["greeting"] == "Hello timer!" and seen["sleeper"]["output"]["waited"] >= 1
    )
    observed = seen["facts"]["output"]["observed"]
    # Replayed points see is_replaying; the point reached by the newest event does not.
    assert [point["replaying"] for point in observed] == [True, True, False]
    history = seen["history"]
    started = events_of(history, "ExecutionStarted")[0]["Timestamp"]
    completed = [event["Timestamp"] for event in events_of(history, "TaskCompleted")]
    # current_utc_datetime is the time of the episode that reached each point (from the history).
    assert [parse_time(point["now"]) for point in observed] == [
        parse_time(started),
        *map(parse_time, completed),
    ]
    assert uuid.UUID(seen["facts"]["output"]["uuid"])


def test_continue_as_new_starts_fresh_history_and_keeps_unprocessed_events(conformance: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        plain = await driver.start("counter", {"count": 0, "target": 3, "events": []})
        seen["plain"] = await driver.wait(plain["id"])
        seen["plain_history"] = await driver.sdk_status(plain["id"], history=True)
        ticks = await driver.start("counter", {"count": 0, "target": 3, "events": [], "wait_event": True})
        for number in (1, 2, 3):
            await driver.client("raise_event", instance_id=ticks["id"], event="tick", data=number)
        seen["ticks"] = await driver.wait(ticks["id"])

    serve(conformance, scenario)
    assert seen["plain"]["output"] == {"count": 3, "target": 3, "events": []}
    kinds = [event["EventType"] for event in seen["plain_history"]["history"]]
    assert kinds == ["ExecutionStarted", "ExecutionCompleted"]  # only the last execution's history
    assert seen["ticks"]["output"]["events"] == [1, 2, 3]


def test_orchestrator_failure_fails_the_instance_with_message_and_details(conformance: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        seen["own"] = await driver.run("failing")
        seen["own_history"] = await driver.sdk_status(seen["own"]["instanceId"], history=True)
        seen["activity"] = await driver.run("unhandled_activity_failure")

    serve(conformance, scenario)
    own = seen["own"]
    assert own["runtimeStatus"] == "Failed"
    assert own["output"].startswith(
        "Orchestrator function 'failing' failed: orchestrator exploded on purpose"
    )
    assert "Traceback" in own["output"] and "ValueError" in own["output"]
    completed = events_of(seen["own_history"], "ExecutionCompleted")[0]
    assert completed["OrchestrationStatus"] == "Failed"
    assert completed["FailureDetails"]["ErrorMessage"] == "orchestrator exploded on purpose"
    activity = seen["activity"]
    assert activity["runtimeStatus"] == "Failed"
    assert (
        "Activity function 'explode' failed: ValueError: activity exploded on purpose" in activity["output"]
    )


def test_all_settled_raises_a_fan_outs_failure_once_every_task_has_ended(conformance: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        seen["run"] = await driver.run("settled_fan_out")
        seen["history"] = await driver.sdk_status(seen["run"]["instanceId"], history=True)

    serve(conformance, scenario)
    completed = [event["FunctionName"] for event in events_of(seen["history"], "TaskCompleted")]
    assert completed == ["echo", "busy", "busy"]  # the stand-down went out while the others still ran
    assert seen["run"]["runtimeStatus"] == "Completed"
    # task_all failed at once; the slow tasks had ended, with their results, before the error was raised.
    output = seen["run"]["output"]
    assert output["error"].startswith("Activity function 'explode' failed: ValueError: first")
    assert output["others"] == [1, 1]


def test_a_nondeterministic_orchestrator_fails_naming_expected_and_actual(conformance: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        started = await driver.start("nondeterministic")
        instance = started["id"]

        async def first_done() -> bool:
            status = await driver.sdk_status(instance, history=True)
            return bool(events_of(status, "TaskCompleted"))

        await driver.wait_for(first_done)
        conformance.module.NONDETERMINISTIC_ACTIVITY = "double"  # the code "changed" while it was running
        await driver.client("raise_event", instance_id=instance, event="continue")
        seen["final"] = await driver.wait(instance)

    serve(conformance, scenario)
    output = seen["final"]["output"]
    assert seen["final"]["runtimeStatus"] == "Failed"
    assert "Non-deterministic workflow detected" in output
    assert "activity 'hello'" in output and "activity 'double'" in output


def test_entities_fail_clearly(conformance: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        seen["orchestration"] = await driver.run("uses_entity")
        seen["signal"] = await driver.client("signal_entity")

    serve(conformance, scenario)
    assert [item.name for item in conformance.skipped] == ["counter_entity"]
    assert "entities are not supported by devhost" in conformance.skipped[0].reason
    assert seen["orchestration"]["runtimeStatus"] == "Failed"
    assert "entities are not supported by devhost" in seen["orchestration"]["output"]
    assert seen["signal"][0] == 409 and "501" in seen["signal"][1]["error"]


def test_large_inputs_outputs_and_custom_status_spill_to_blobs(conformance: Host, azurite: Azurite) -> None:
    payload = "x" * 70_000 + "é" * 30_000
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        started = await driver.start("large", payload)
        seen["final"] = await driver.wait(started["id"])
        seen["history"] = await driver.sdk_status(started["id"], history=True)
        seen["id"] = started["id"]
        seen["blobs"] = blob_names(started["id"])
        await asyncio.sleep(0.3)  # blobs nothing refers to any more are deleted in the background
        seen["referenced"] = referenced_blobs(started["id"])
        seen["left"] = blob_names(started["id"])
        seen["purged"] = await driver.client("purge", instance_id=started["id"])

    def blob_names(instance_id: str) -> list[str]:
        with ContainerClient.from_connection_string(azurite.connection_string, container) as blobs:
            return list(blobs.list_blob_names(name_starts_with=blob_folder(instance_id)))

    def referenced_blobs(instance_id: str) -> set[str]:
        with TableClient.from_connection_string(
            azurite.connection_string, f"{conformance.environ['TEST_HUB']}Instances"
        ) as table:
            rows = list(table.query_entities(f"PartitionKey eq '{instance_id}'"))
        return {str(value) for row in rows for key, value in row.items() if key.endswith("Blob")}

    container = f"{conformance.environ['TEST_HUB'].lower()}-largemessages"
    serve(conformance, scenario)
    assert seen["final"]["runtimeStatus"] == "Completed"
    assert seen["final"]["output"] == payload + payload + "!"
    assert seen["final"]["customStatus"] == payload[:40_000]
    assert events_of(seen["history"], "TaskCompleted")[0]["Result"] == payload + payload
    assert seen["blobs"]
    # Unchanged documents are not uploaded again; replaced and consumed ones are deleted after the commit.
    assert seen["referenced"] and sorted(seen["left"]) == sorted(seen["referenced"])
    # A purge leaves nothing behind: no row in the instance's partition, no blob in its folder.
    assert seen["purged"] == (200, 1)
    assert blob_names(seen["id"]) == []
    with TableClient.from_connection_string(
        azurite.connection_string, f"{conformance.environ['TEST_HUB']}Instances"
    ) as table:
        assert list(table.query_entities(f"PartitionKey eq '{seen['id']}'")) == []


def test_steps_larger_than_one_batch(conformance: Host) -> None:
    """150 timers, 20 sub-orchestrations and 60 queued events: more rows than one table batch holds."""
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        timers = await driver.start("many_timers", 150)
        children = await driver.start("sub_fan_out", 20)
        events = await driver.start("collect", 60)
        await asyncio.gather(
            *(
                driver.client("raise_event", instance_id=events["id"], event="item", data=number)
                for number in range(60)
            )
        )
        seen["timers"] = await driver.wait(timers["id"])
        seen["children"] = await driver.wait(children["id"])
        seen["events"] = await driver.wait(events["id"])
        seen["timer_history"] = await driver.sdk_status(timers["id"], history=True)

    serve(conformance, scenario)
    assert seen["timers"]["output"] == 150
    assert len(events_of(seen["timer_history"], "TimerFired")) == 150
    assert seen["children"]["output"] == [f"Hello n{number}!" for number in range(20)]
    assert sorted(seen["events"]["output"]) == list(range(60))


def test_a_sub_orchestration_with_an_invalid_instance_id_fails_its_task(conformance: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        for bad in ("a/b", "a#b"):
            seen[bad] = await driver.run("bad_child_id", bad, timeout=15)

    serve(conformance, scenario)
    for bad in ("a/b", "a#b"):
        assert seen[bad]["runtimeStatus"] == "Completed"
        assert f"'{bad}' is not valid" in seen[bad]["output"]["failed"]
