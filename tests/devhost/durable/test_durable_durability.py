"""State in Azurite survives restarts and SIGKILL; two devhosts share a task hub; bursts run to quiescence."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
from azure.data.tables import TableClient

from devhost import Host
from devhost.azurite import Azurite
from tests.devhost.durable.support import (
    CONFORMANCE,
    DURABLE_APPS,
    FINISHED,
    WEBHOOKS,
    DevhostProcess,
    Driver,
    serve,
)


def start(devhost: DevhostProcess, name: str, value: Any) -> str:
    response = requests.post(f"{devhost.base_url}/api/start/{name}", json=value, timeout=30)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def status(devhost: DevhostProcess, instance_id: str) -> dict[str, Any]:
    response = requests.get(f"{devhost.base_url}{WEBHOOKS}/instances/{instance_id}", timeout=30)
    return dict(response.json()) if response.status_code in (200, 202) else {}


def wait(
    devhost: DevhostProcess, instance_id: str, until: tuple[str, ...] = FINISHED, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = status(devhost, instance_id)
        if body.get("runtimeStatus") in until:
            return body
        time.sleep(0.05)
    raise AssertionError(f"{instance_id} never reached {until}; last status {status(devhost, instance_id)}")


def test_a_durable_timer_due_while_devhost_is_down_fires_after_restart(
    load_host: Callable[..., Host], hub: str
) -> None:
    seen: dict[str, Any] = {}

    async def start_then_stop(driver: Driver) -> None:
        seen["id"] = (await driver.start("sleeper", 2))["id"]
        await driver.wait(seen["id"], until=("Running",))
        seen["stopped_at"] = time.monotonic()

    first = load_host(CONFORMANCE, TEST_HUB=hub)
    serve(first, start_then_stop)
    first.close()
    time.sleep(2.5)  # the timer comes due while no devhost runs

    async def finish(driver: Driver) -> None:
        seen["final"] = await driver.wait(seen["id"])

    serve(load_host(CONFORMANCE, TEST_HUB=hub), finish)
    assert seen["final"]["runtimeStatus"] == "Completed"
    assert seen["final"]["output"]["greeting"] == "Hello timer!" and seen["final"]["output"]["waited"] >= 2


@pytest.mark.parametrize("kill_after", [0, 1, 100])
def test_sigkill_during_a_fan_out_and_a_timer_wait_then_restart_finishes_both(
    start_devhost: Callable[..., DevhostProcess], azurite: Azurite, hub: str, kill_after: int
) -> None:
    """Kill -9 after `kill_after` activities ran; a new devhost carries both instances to their results."""
    first = start_devhost(SLOW_ACTIVITY_SECONDS="0.02")
    sleeper = start(first, "sleeper", 3)
    fan_out = start(first, "tagged_fan_out", 200)
    # The timer wait has begun (its row is stored) before the kill, whenever the kill comes.
    wait_for_timer_row(azurite, hub, sleeper)
    if kill_after:
        first.wait_for("Executed 'tagged'", count=kill_after)
    first.kill()
    with TableClient.from_connection_string(azurite.connection_string, f"{hub}Instances") as table:
        stored = {
            instance: table.get_entity(instance, "s")["RuntimeStatus"] for instance in (sleeper, fan_out)
        }
    assert set(stored.values()) <= {"Pending", "Running"}  # killed mid-way: nothing had finished
    second = start_devhost(SLOW_ACTIVITY_SECONDS="0.02")
    fanned = wait(second, fan_out)
    slept = wait(second, sleeper)
    # The same output as an uninterrupted run.
    assert fanned["runtimeStatus"] == "Completed"
    assert {key: fanned["output"][key] for key in ("sum", "count")} == {
        "sum": sum(2 * n for n in range(200)),
        "count": 200,
    }
    assert slept["runtimeStatus"] == "Completed"
    assert slept["output"]["greeting"] == "Hello timer!" and slept["output"]["waited"] >= 3


def timer_rows(azurite: Azurite, hub: str, instance: str) -> list[Any]:
    with TableClient.from_connection_string(azurite.connection_string, f"{hub}Instances") as table:
        query = f"PartitionKey eq '{instance}' and RowKey ge 't-' and RowKey lt 't.'"
        return list(table.query_entities(query))


def wait_for_timer_row(azurite: Azurite, hub: str, instance: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not timer_rows(azurite, hub, instance):
        assert time.monotonic() < deadline, f"no timer row for {instance}"
        time.sleep(0.02)


def test_a_durable_timer_due_while_devhost_was_killed_fires_after_restart(
    start_devhost: Callable[..., DevhostProcess], azurite: Azurite, hub: str
) -> None:
    first = start_devhost()
    sleeper = start(first, "sleeper", 2)
    wait_for_timer_row(azurite, hub, sleeper)
    first.kill()
    began = time.monotonic()
    time.sleep(2.5)  # the timer comes due while no devhost runs
    second = start_devhost()
    slept = wait(second, sleeper)
    assert slept["runtimeStatus"] == "Completed"
    assert slept["output"]["greeting"] == "Hello timer!" and slept["output"]["waited"] >= 2
    assert time.monotonic() - began < 30 and timer_rows(azurite, hub, sleeper) == []


def test_a_multi_step_orchestration_survives_one_of_two_devhosts_being_killed(
    start_devhost: Callable[..., DevhostProcess],
) -> None:
    first = start_devhost(SLOW_ACTIVITY_SECONDS="0.02")
    second = start_devhost(SLOW_ACTIVITY_SECONDS="0.02")
    instance = start(first, "rounds", {"rounds": 5, "width": 30})
    first.wait_for("Executed 'tagged'", count=40)  # into the second round
    first.kill()
    final = wait(second, instance, timeout=60)
    assert final["runtimeStatus"] == "Completed"
    assert final["output"]["total"] == rounds_total(5, 30)
    assert second.process.pid in final["output"]["pids"]


def test_two_devhosts_on_one_task_hub_share_a_fan_out(start_devhost: Callable[..., DevhostProcess]) -> None:
    first = start_devhost(SLOW_ACTIVITY_SECONDS="0.03")
    second = start_devhost(SLOW_ACTIVITY_SECONDS="0.03")
    instance = start(first, "tagged_fan_out", 300)
    final = wait(second, instance)
    assert final["runtimeStatus"] == "Completed"
    assert final["output"]["sum"] == sum(2 * n for n in range(300)) and final["output"]["count"] == 300
    # Both processes ran activities of the one instance.
    assert sorted(final["output"]["pids"]) == sorted([first.process.pid, second.process.pid])
    assert first.count("Executed 'tagged'") > 0 and second.count("Executed 'tagged'") > 0
    assert (first.terminate(), second.terminate()) == (0, 0)
    assert "Host stopped" in first.lines[-1] and "Host stopped" in second.lines[-1]


def test_burst_runs_orchestrations_until_only_events_and_later_timers_remain(
    load_host: Callable[..., Host], azurite: Azurite, hub: str
) -> None:
    prefix = uuid.uuid4().hex[:8]
    host = load_host(DURABLE_APPS / "burst", TEST_HUB=hub, INSTANCE_PREFIX=prefix)
    began = time.monotonic()
    result = host.run_burst_sync(timeout=60)
    elapsed = time.monotonic() - began
    with TableClient.from_connection_string(azurite.connection_string, f"{hub}Instances") as table:
        statuses = {
            name: table.get_entity(f"{prefix}-{name}", "s")["RuntimeStatus"]
            for name in ("sequence", "short_sleep", "waiter", "long_sleep")
        }
    assert statuses == {
        "sequence": "Completed",
        "short_sleep": "Completed",
        "waiter": "Running",
        "long_sleep": "Running",
    }
    assert result.failures == 0 and result.invocations >= 4  # kick_off and three add_one activities
    assert elapsed < 20


def test_restart_after_a_clean_stop_resumes_a_fan_out(load_host: Callable[..., Host], hub: str) -> None:
    seen: dict[str, Any] = {}

    async def start_then_stop(driver: Driver) -> None:
        seen["id"] = (await driver.start("busy_fan_out", {"count": 60, "seconds": 0.05}))["id"]
        await asyncio.sleep(0.2)

    first = load_host(CONFORMANCE, TEST_HUB=hub)
    serve(first, start_then_stop)
    first.close()

    async def finish(driver: Driver) -> None:
        seen["final"] = await driver.wait(seen["id"])

    serve(load_host(CONFORMANCE, TEST_HUB=hub), finish)
    assert seen["final"]["runtimeStatus"] == "Completed" and seen["final"]["output"] == 60


def rounds_total(rounds: int, width: int) -> int:
    return sum(2 * (r * 1000 + n) for r in range(rounds) for n in range(width))


def test_two_devhosts_run_a_multi_step_orchestration_without_losing_activities(
    start_devhost: Callable[..., DevhostProcess],
) -> None:
    """Steps commit in both processes, so each one's cached state goes stale: no chunk may be lost."""
    first = start_devhost(SLOW_ACTIVITY_SECONDS="0.01")
    second = start_devhost(SLOW_ACTIVITY_SECONDS="0.01")
    instances = [start(first, "rounds", {"rounds": 6, "width": 30}) for _ in range(3)]
    for instance in instances:
        final = wait(second, instance, timeout=60)
        assert final["runtimeStatus"] == "Completed"
        assert final["output"]["total"] == rounds_total(6, 30)
    assert first.count("Executed 'tagged'") > 0 and second.count("Executed 'tagged'") > 0


def test_reconciling_never_takes_over_a_work_row_another_process_leased(
    conformance: Host, azurite: Azurite, hub: str
) -> None:
    """Missing rows are created, never upserted: an existing row keeps its owner and lease."""
    seen: dict[str, Any] = {}

    async def scenario(driver: Driver) -> None:
        instance = (await driver.start("busy_fan_out", {"count": 1, "seconds": 1.5}))["id"]
        await driver.wait(instance, until=("Running",))
        assert conformance.runtime is not None
        engine = conformance.runtime.services["durable"].engine  # type: ignore[attr-defined]
        runner = engine.runner(instance)
        await driver.wait_for(lambda: _has_chunk(runner))
        key = next(iter(runner.chunks))
        with TableClient.from_connection_string(azurite.connection_string, f"{hub}Instances") as table:
            table.update_entity({"PartitionKey": instance, "RowKey": key, "Owner": "elsewhere"})
            runner.chunks.clear()  # as if the row appeared after this process loaded the instance
            await runner.create_missing_rows(runner.state)
            seen["owner"] = table.get_entity(instance, key)["Owner"]
        seen["final"] = await driver.wait(instance)

    serve(conformance, scenario)
    assert seen["owner"] == "elsewhere"
    assert seen["final"]["runtimeStatus"] == "Completed" and seen["final"]["output"] == 1


async def _has_chunk(runner: Any) -> bool:
    return bool(runner.chunks)
