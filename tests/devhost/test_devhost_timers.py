"""Timer triggers: runOnStartup and past-due runs in burst mode, schedules while serving."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContainerClient

from devhost import Host
from devhost.azurite import Azurite


@pytest.fixture
def monitor(azurite: Azurite) -> Iterator[ContainerClient]:
    """The container where the host keeps timer schedule status."""
    container = ContainerClient.from_connection_string(azurite.connection_string, "azure-webjobs-hosts")
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    yield container
    container.close()


def status_blob(host_id: str, function: str) -> str:
    return f"timers/{host_id}/Host.Functions.{function}/status"


def test_run_on_startup_fires_in_burst_and_other_timers_wait(
    load_host: Callable[..., Host], unique: Callable[[str], str], monitor: ContainerClient
) -> None:
    host_id = unique("host")
    host = load_host("timer_app", AzureFunctionsWebHost__hostid=host_id)
    result = host.run_burst_sync(timeout=30)
    assert host.module.FIRED == [("on_startup", False)]
    assert result.invocations == 1
    # The hourly timer has no history yet: the monitor records when it is next due.
    status = json.loads(monitor.download_blob(status_blob(host_id, "hourly")).readall())
    assert datetime.fromisoformat(status["Next"]) > datetime.now(UTC)


def test_a_missed_occurrence_runs_past_due(
    load_host: Callable[..., Host], unique: Callable[[str], str], monitor: ContainerClient
) -> None:
    host_id = unique("host")
    missed = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    previous = {"Last": (missed - timedelta(hours=1)).isoformat(), "Next": missed.isoformat(),
                "LastUpdated": missed.isoformat()}  # fmt: skip
    monitor.upload_blob(status_blob(host_id, "hourly"), json.dumps(previous), overwrite=True)
    host = load_host("timer_app", AzureFunctionsWebHost__hostid=host_id)
    host.run_burst_sync(timeout=30)
    assert sorted(host.module.FIRED) == [("hourly", True), ("on_startup", False)]
    status = json.loads(monitor.download_blob(status_blob(host_id, "hourly")).readall())
    assert datetime.fromisoformat(status["Next"]) > datetime.now(UTC)


def test_schedule_from_an_app_setting(load_host: Callable[..., Host], unique: Callable[[str], str]) -> None:
    host = load_host(
        "timer_app", AzureFunctionsWebHost__hostid=unique("host"), YEARLY_SCHEDULE="not a schedule"
    )
    host.run_burst_sync(timeout=30)
    assert [item.name for item in host.skipped] == ["yearly"]
    assert "schedule" in host.skipped[0].reason
    assert host.module.FIRED == [("on_startup", False)]


def test_serving_fires_on_schedule_without_overlapping(
    load_host: Callable[..., Host], unique: Callable[[str], str]
) -> None:
    # Every second, but each run takes 1.2 s: the next run waits for the previous one.
    host = load_host("timer_app", AzureFunctionsWebHost__hostid=unique("host"), FAST_SCHEDULE="* * * * * *")

    async def serve_for_a_while() -> None:
        async with host.serving(port=0):
            await asyncio.sleep(3.5)

    asyncio.run(serve_for_a_while())
    ticks = host.module.TICKS
    assert ticks["total"] >= 2
    assert ticks["max"] == 1
    assert ("on_startup", False) in host.module.FIRED
