"""The import relay called in-process against its own Azurite, with a stand-in for the Durable client.

The stand-in answers get_status as the Durable extension would and records what the relay asked of it.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import azure.durable_functions as df
import pytest
from azure.functions.queue import QueueMessage

from core import datasets, imports, jobs, uploads
from core.auth import Principal
from core.runtime import Runtime

OWNER = Principal(user_id="relay-test", user_details="r", identity_provider="aad", roles=frozenset())


class DurableClient:
    """Answers get_status with one runtime status (None: no such instance) and records calls."""

    def __init__(self, status: df.OrchestrationRuntimeStatus | None) -> None:
        self.status = status
        self.started: list[str] = []
        self.raised: list[str] = []

    async def get_status(self, instance_id: str) -> Any:
        return SimpleNamespace(runtime_status=self.status)

    async def start_new(self, name: str, instance_id: str, _input: Any) -> str:
        self.started.append(instance_id)
        return instance_id

    async def raise_event(self, instance_id: str, _name: str, _data: Any) -> None:
        self.raised.append(instance_id)


def queued_import(rt: Runtime) -> jobs.Job:
    schema = {"fields": [{"name": "id", "type": "integer"}]}
    dataset = datasets.create_dataset(storage=rt.storage, owner=OWNER, body={"name": "r", "schema": schema})
    upload = uploads.store_upload(
        storage=rt.storage, settings=rt.settings, owner=OWNER, file_name="r.csv", body=b"id\n1\n"
    )
    uploads.profile_upload(storage=rt.storage, settings=rt.settings, upload_id=upload["id"])
    return imports.start_import(
        storage=rt.storage,
        settings=rt.settings,
        principal=OWNER,
        dataset_id=dataset.id,
        body={"uploadId": upload["id"]},
    )


def relay(job_id: str, client: DurableClient) -> None:
    from queue_workers.jobs import relay_import

    # Past the binding that builds the Durable client from the host's JSON: the stand-in goes in instead.
    handler = relay_import.build().get_user_function().__wrapped__
    message = QueueMessage(id="m", body=json.dumps({"id": job_id}).encode(), dequeue_count=1)
    asyncio.run(handler(msg=message, client=client))


def test_a_queued_import_starts_its_orchestration_once(rt: Runtime) -> None:
    job = queued_import(rt)
    client = DurableClient(None)
    relay(job.id, client)
    assert client.started == [job.id]
    client.status = df.OrchestrationRuntimeStatus.Running
    relay(job.id, client)  # a second delivery
    assert client.started == [job.id]


@pytest.mark.parametrize(
    "status", [df.OrchestrationRuntimeStatus.Failed, df.OrchestrationRuntimeStatus.Terminated]
)
def test_a_queued_import_whose_orchestration_died_is_failed_and_frees_its_dataset(
    rt: Runtime, status: df.OrchestrationRuntimeStatus
) -> None:
    job = queued_import(rt)
    imports.record_decision(storage=rt.storage, principal=OWNER, job_id=job.id, action="cancel")
    client = DurableClient(status)
    relay(job.id, client)
    ended = jobs.load_job(rt.storage, job.id)
    assert ended is not None and ended.status == jobs.FAILED and not client.started
    dataset = datasets.load_dataset(rt.storage, job.dataset_id)
    assert dataset is not None and dataset.active_job == ""


def test_a_decision_for_an_import_whose_orchestration_died_fails_it_at_once(rt: Runtime) -> None:
    job = queued_import(rt)
    plan = imports.plan_import(storage=rt.storage, settings=rt.settings, job_id=job.id)
    for index in range(plan["chunks"]):
        imports.validate_chunk(storage=rt.storage, job_id=job.id, index=index)
    jobs.change_job(rt.storage, job.id, lambda _: {"autoApply": False})  # so it waits for a review
    assert imports.review_import(storage=rt.storage, job_id=job.id)["next"] == "review"
    imports.record_decision(storage=rt.storage, principal=OWNER, job_id=job.id, action="approve")
    client = DurableClient(df.OrchestrationRuntimeStatus.Terminated)
    relay(job.id, client)  # the decision: no event for a dead instance (it would fail five times)
    ended = jobs.load_job(rt.storage, job.id)
    assert ended is not None and ended.status == jobs.FAILED and not client.raised
    client = DurableClient(df.OrchestrationRuntimeStatus.Running)
    live = queued_import(rt)
    relay(live.id, client)  # queued, instance already running: nothing to do
    assert not client.started and not client.raised


class StartedMeanwhile(DurableClient):
    """Finds no instance, then loses the race to start it: another command started it meanwhile."""

    async def start_new(self, name: str, instance_id: str, _input: Any) -> str:
        self.status = df.OrchestrationRuntimeStatus.Pending
        raise Exception("An Orchestration instance with the status Pending already exists.")  # as the SDK


def test_a_start_that_lost_the_race_to_another_command_succeeds(rt: Runtime) -> None:
    job = queued_import(rt)
    relay(job.id, StartedMeanwhile(None))  # no exception: the message is done, not retried
    loaded = jobs.load_job(rt.storage, job.id)
    assert loaded is not None and loaded.status == jobs.QUEUED


def test_a_start_that_failed_with_no_instance_made_is_retried(rt: Runtime) -> None:
    class Refused(DurableClient):
        async def start_new(self, name: str, instance_id: str, _input: Any) -> str:
            raise Exception("the task hub is not reachable")

    job = queued_import(rt)
    with pytest.raises(Exception, match="not reachable"):
        relay(job.id, Refused(None))
