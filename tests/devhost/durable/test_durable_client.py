"""The durable client binding and the extension's HTTP endpoints, driven through the SDK's client."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables import TableClient

from devhost import Host
from devhost.azurite import Azurite
from devhost.durable.store import inbox_key
from tests.devhost.durable.support import CONFORMANCE, Driver, serve


def test_a_running_instance_id_is_refused_and_a_finished_one_can_start_again(conformance: Host) -> None:
    instance = f"fixed-{uuid.uuid4().hex[:8]}"
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        seen["first"] = await driver.client("start", name="waiter", instance_id=instance)
        seen["pending_duplicate"] = await driver.client("start", name="waiter", instance_id=instance)
        await driver.wait(instance, until=("Running",))
        seen["duplicate"] = await driver.client("start", name="waiter", instance_id=instance)
        await driver.client("raise_event", instance_id=instance, event="first", data=1)
        await driver.client("raise_event", instance_id=instance, event="second", data=2)
        seen["done"] = await driver.wait(instance)
        seen["again"] = await driver.client("start", name="hello_sequence", instance_id=instance)
        seen["second_run"] = await driver.wait(instance)
        seen["generated"] = await driver.client("start", name="hello_sequence")
        seen["unknown"] = await driver.client("start", name="no_such_orchestrator")
        seen["bad_id"] = await driver.client("start", name="hello_sequence", instance_id="bad\\id")

    serve(conformance, scenario)
    assert seen["first"] == (200, instance)
    status, body = seen["duplicate"]
    assert status == 409 and "already exists" in body["error"] and "Running" in body["error"]
    assert seen["pending_duplicate"][0] == 409 and "already exists" in seen["pending_duplicate"][1]["error"]
    assert seen["done"]["output"] == [1, 2]
    assert seen["again"] == (200, instance)
    assert (
        seen["second_run"]["name"] == "hello_sequence" and seen["second_run"]["runtimeStatus"] == "Completed"
    )
    assert seen["generated"][0] == 200 and uuid.UUID(seen["generated"][1])
    assert seen["unknown"][0] == 409 and "doesn't exist" in seen["unknown"][1]["error"]
    assert seen["bad_id"][0] == 409 and "must not contain" in seen["bad_id"][1]["error"]


def test_status_queries_and_purges(conformance: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        done = [(await driver.run("hello_sequence"))["instanceId"] for _ in range(2)]
        waiting = (await driver.start("waiter"))["id"]
        await driver.wait(waiting, until=("Running",))
        seen.update(done=done, waiting=waiting)
        seen["all"] = await driver.client("status_all")
        now = datetime.now(UTC)
        hour = timedelta(hours=1)
        seen["running"] = await driver.client(
            "status_by",
            created_from=(now - hour).isoformat(),
            created_to=(now + hour).isoformat(),
            statuses=["Running"],
        )
        seen["future"] = await driver.client("status_by", created_from=(now + hour).isoformat())
        seen["unknown"] = await driver.sdk_status("no-such-instance")
        seen["with_input"] = await driver.sdk_status(waiting)
        seen["purge_running"] = await driver.client("purge", instance_id=waiting)
        seen["purge_one"] = await driver.client("purge", instance_id=done[0])
        seen["after_purge"] = await driver.sdk_status(done[0])
        seen["purge_missing"] = await driver.client("purge", instance_id=done[0])
        seen["purge_by"] = await driver.client(
            "purge_by", created_from=(now - hour).isoformat(), statuses=["Completed"]
        )
        seen["left"] = await driver.client("status_all")

    serve(conformance, scenario)
    assert {status["instanceId"] for status in seen["all"][1]} == {*seen["done"], seen["waiting"]}
    assert [status["instanceId"] for status in seen["running"][1]] == [seen["waiting"]]
    assert seen["future"] == (200, [])
    assert seen["unknown"]["found"] is False
    assert (
        seen["with_input"]["runtimeStatus"] == "Running"
        and seen["with_input"]["customStatus"] == "waiting for first"
    )
    assert seen["purge_running"] == (200, 0)  # only finished instances are purged
    assert seen["purge_one"] == (200, 1)
    assert seen["after_purge"]["found"] is False
    assert seen["purge_missing"] == (200, 0)
    assert seen["purge_by"] == (200, 1)
    assert [status["instanceId"] for status in seen["left"][1]] == [seen["waiting"]]


def test_terminate_suspend_and_resume(conformance: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        instance = (await driver.start("waiter"))["id"]
        await driver.wait(instance, until=("Running",))
        await driver.client("suspend", instance_id=instance, reason="hold on")
        seen["suspended"] = await driver.wait(instance, until=("Suspended",))
        await driver.client("raise_event", instance_id=instance, event="first", data="while suspended")
        seen["still"] = await driver.sdk_status(instance)
        await driver.client("resume", instance_id=instance, reason="go")
        await driver.wait_for(lambda: driver.custom_is(instance, "waiting for second"))
        await driver.client("terminate", instance_id=instance, reason="enough")
        seen["terminated"] = await driver.wait(instance)
        seen["history"] = await driver.sdk_status(instance, history=True)
        seen["late_event"] = await driver.client("raise_event", instance_id=instance, event="second")
        seen["late_terminate"] = await driver.client("terminate", instance_id=instance, reason="again")
        seen["missing"] = await driver.client("raise_event", instance_id="no-such-instance", event="x")

    serve(conformance, scenario)
    assert seen["suspended"]["runtimeStatus"] == "Suspended"
    assert (
        seen["still"]["runtimeStatus"] == "Suspended" and seen["still"]["customStatus"] == "waiting for first"
    )
    assert seen["terminated"]["runtimeStatus"] == "Terminated" and seen["terminated"]["output"] == "enough"
    kinds = [event["EventType"] for event in seen["history"]["history"]]
    assert kinds[:1] == ["ExecutionStarted"] and "ExecutionSuspended" in kinds and "ExecutionResumed" in kinds
    assert kinds[-2:] == ["ExecutionTerminated", "ExecutionCompleted"]
    assert seen["late_event"][0] == 409 and "is gone" in seen["late_event"][1]["error"]
    assert seen["late_terminate"] == (200, None)  # the SDK accepts 410 for terminate
    assert seen["missing"][0] == 409 and "No instance" in seen["missing"][1]["error"]


def test_management_urls_work_over_plain_http(conformance: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        session = driver.session
        urls = await driver.start("waiter")
        async with session.get(urls["statusQueryGetUri"]) as response:
            seen["running"] = (response.status, await response.json())
        for event, data in (("first", {"from": "curl"}), ("second", [1, 2])):
            url = urls["sendEventPostUri"].replace("{eventName}", event)
            async with session.post(url, json=data) as response:
                seen.setdefault("sent", []).append(response.status)
        await driver.wait(urls["id"])
        async with session.get(urls["statusQueryGetUri"]) as response:
            seen["done"] = (response.status, await response.json())
        async with session.delete(urls["purgeHistoryDeleteUri"]) as response:
            seen["purged"] = (response.status, await response.json())
        other = await driver.start("waiter")
        async with session.post(other["terminatePostUri"].replace("{text}", "stop")) as response:
            seen["terminate"] = response.status
        seen["terminated"] = await driver.wait(other["id"])
        async with session.post(other["rewindPostUri"].replace("{text}", "why")) as response:
            seen["rewind"] = (response.status, await response.json())
        seen["sdk_rewind"] = await driver.client("rewind", instance_id=other["id"])

    serve(conformance, scenario)
    assert seen["running"][0] == 202 and seen["running"][1]["runtimeStatus"] in ("Pending", "Running")
    assert seen["sent"] == [202, 202]
    assert seen["done"][0] == 200 and seen["done"][1]["output"] == [{"from": "curl"}, [1, 2]]
    assert seen["purged"] == (200, {"instancesDeleted": 1})
    assert seen["terminate"] == 202 and seen["terminated"]["output"] == "stop"
    assert seen["rewind"] == (501, "rewind is not supported by devhost")
    assert seen["sdk_rewind"] == (409, {"error": "rewind is not supported by devhost"})


def test_restart_runs_the_orchestrator_again_with_its_input(conformance: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        first = await driver.run("fan_out", 10)
        status, new_id = await driver.client("restart", instance_id=first["instanceId"])
        seen["new"] = (status, await driver.wait(new_id), new_id != first["instanceId"])
        before = await driver.sdk_status(first["instanceId"], history=True)
        status, same_id = await driver.client("restart", instance_id=first["instanceId"], new_id=False)
        seen["same"] = (status, same_id == first["instanceId"], await driver.wait(same_id))
        after = await driver.sdk_status(same_id, history=True)
        seen["runs"] = (before, after)
        seen["missing"] = await driver.client("restart", instance_id="no-such-instance")

    serve(conformance, scenario)
    status, final, fresh = seen["new"]
    assert status == 200 and fresh and final["output"] == 90 and final["input"] == "10"
    status, same, final = seen["same"]
    assert status == 200 and same and final["runtimeStatus"] == "Completed" and final["output"] == 90
    # The restart really ran: a new execution, created after the first one finished, with its own history.
    before, after = seen["runs"]
    assert after["createdTime"] > before["lastUpdatedTime"]
    started = [event["Timestamp"] for event in after["history"] if event["EventType"] == "ExecutionStarted"]
    assert len(started) == 1 and started[0] > before["lastUpdatedTime"]
    assert seen["missing"][0] == 409 and "No instance" in seen["missing"][1]["error"]


def test_a_suspended_instance_with_a_backlog_of_events_resumes_and_terminates(
    conformance: Host, load_host: Callable[..., Host], azurite: Azurite, hub: str
) -> None:
    """More events wait than one step takes: resume and terminate still act, and a burst still ends."""
    seen: dict[str, Any] = {}
    backlog = 45  # more than one step's inbox limit (40)

    async def scenario(driver: Driver) -> None:
        resumed, terminated, later = [(await driver.start("collect", backlog))["id"] for _ in range(3)]
        for instance in (resumed, terminated, later):
            await driver.wait(instance, until=("Running",))
            await driver.client("suspend", instance_id=instance, reason="hold")
            await driver.wait(instance, until=("Suspended",))
            await asyncio.gather(
                *(
                    driver.client("raise_event", instance_id=instance, event="item", data=number)
                    for number in range(backlog)
                )
            )
        await driver.client("resume", instance_id=resumed, reason="go")
        await driver.client("terminate", instance_id=terminated, reason="stop")
        seen["resumed"] = await driver.wait(resumed)
        seen["terminated"] = await driver.wait(terminated)
        seen["later"] = later

    serve(conformance, scenario)
    assert seen["resumed"]["runtimeStatus"] == "Completed"
    assert sorted(seen["resumed"]["output"]) == list(range(backlog))
    assert seen["terminated"]["runtimeStatus"] == "Terminated" and seen["terminated"]["output"] == "stop"
    conformance.close()
    # A resume written while no devhost runs, behind the backlog: a burst carries the instance to the end.
    later = seen["later"]
    with TableClient.from_connection_string(azurite.connection_string, f"{hub}Instances") as table:
        table.create_entity(
            {
                "PartitionKey": later,
                "RowKey": inbox_key(),
                "Kind": "Resume",
                "ExecutionId": "",
                "D0": json.dumps({"Reason": "go"}),
            }
        )
        result = load_host(CONFORMANCE, TEST_HUB=hub).run_burst_sync(timeout=60)
        assert result.failures == 0
        assert table.get_entity(later, "s")["RuntimeStatus"] == "Completed"


def test_a_purge_skips_an_instance_with_a_follow_up_pending(
    conformance: Host, azurite: Azurite, hub: str
) -> None:
    """A finished instance that still has to notify its parent (or reconcile) is not purged yet."""
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        instance = (await driver.run("hello_sequence"))["instanceId"]
        with TableClient.from_connection_string(azurite.connection_string, f"{hub}Instances") as table:
            for flag in ("NotifyParent", "Reconcile"):
                table.update_entity({"PartitionKey": instance, "RowKey": "s", flag: True})
                seen[flag] = await driver.client("purge", instance_id=instance)
                table.update_entity({"PartitionKey": instance, "RowKey": "s", flag: False})
        seen["purged"] = await driver.client("purge", instance_id=instance)

    serve(conformance, scenario)
    assert seen["NotifyParent"] == (200, 0) and seen["Reconcile"] == (200, 0)
    assert seen["purged"] == (200, 1)


def test_events_sent_to_an_earlier_run_do_not_reach_a_restarted_instance(
    conformance: Host, azurite: Azurite, hub: str
) -> None:
    instance = f"again-{uuid.uuid4().hex[:8]}"
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        await driver.client("start", name="waiter", instance_id=instance)
        await driver.client("raise_event", instance_id=instance, event="first", data="early")
        await driver.wait(instance, until=("Running",))
        await driver.client("raise_event", instance_id=instance, event="second", data="run 1")
        seen["first_run"] = await driver.wait(instance)
        with TableClient.from_connection_string(azurite.connection_string, f"{hub}Instances") as table:
            old = table.get_entity(instance, "s")
            # An event meant for the first run, still on its way when the id starts again.
            table.create_entity(
                {
                    "PartitionKey": instance,
                    "RowKey": inbox_key(),
                    "Kind": "EventRaised",
                    "ExecutionId": old["ExecutionId"],
                    "Generation": old["Generation"],
                    "D0": json.dumps({"Name": "first", "Input": '"stale"'}),
                }
            )
        await driver.client("start", name="waiter", instance_id=instance)
        await driver.wait_for(lambda: driver.custom_is(instance, "waiting for first"))
        await asyncio.sleep(0.5)
        seen["waiting"] = await driver.sdk_status(instance)
        for event, data in (("first", "new 1"), ("second", "new 2")):
            await driver.client("raise_event", instance_id=instance, event=event, data=data)
        seen["second_run"] = await driver.wait(instance)

    serve(conformance, scenario)
    # An event raised while the instance was Pending (before its execution started) still arrives.
    assert seen["first_run"]["output"] == ["early", "run 1"]
    assert seen["waiting"]["customStatus"] == "waiting for first"
    assert seen["second_run"]["output"] == ["new 1", "new 2"]
