"""Deleting a dataset survives a crash at its last step, against the session's real Azurite."""

from __future__ import annotations

from typing import Any

import pytest

from core import datasets, jobs
from core.auth import Principal
from core.storage import Storage

OWNER = Principal(user_id="delete-test", user_details="d", identity_provider="aad", roles=frozenset())
SCHEMA = {"fields": [{"name": "id", "type": "integer"}], "primaryKey": "id"}


class _CrashOnLastStep:
    """The datasets table, except that the transaction deleting the dataset's own row fails once."""

    def __init__(self, table: Any) -> None:
        self.table, self.crashed = table, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.table, name)

    def submit_transaction(self, operations: list[tuple[str, Any]]) -> Any:
        if not self.crashed and any(entity["RowKey"] == jobs.DATASET_ROW for _, entity in operations):
            self.crashed = True
            raise RuntimeError("the host died here")
        return self.table.submit_transaction(operations)


def test_a_delete_that_dies_at_its_last_step_finishes_on_the_next_run(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "doomed", "schema": SCHEMA})
    job_id = datasets.request_delete(storage=storage, principal=OWNER, dataset_id=dataset.id)
    crashing = _CrashOnLastStep(jobs.datasets_table(storage))
    monkeypatch.setattr(datasets.jobs, "datasets_table", lambda _storage: crashing)
    with pytest.raises(RuntimeError, match="the host died here"):
        datasets.delete_dataset(storage=storage, job_id=job_id)
    monkeypatch.undo()

    # The job and the dataset are both still there, so the queue's retry knows what to finish.
    job = jobs.load_job(storage, job_id)
    assert job is not None and job.kind == jobs.DELETE
    left = datasets.load_dataset(storage, dataset.id)
    assert left is not None and left.status == datasets.DELETING

    assert datasets.delete_dataset(storage=storage, job_id=job_id) == jobs.COMPLETED
    assert datasets.load_dataset(storage, dataset.id) is None
    assert jobs.load_job(storage, job_id) is None
    remaining = list(
        jobs.datasets_table(storage).query_entities("PartitionKey eq @pk", parameters={"pk": dataset.id})
    )
    assert remaining == []


def test_asking_again_for_a_delete_under_way_sends_no_second_command(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "twice", "schema": SCHEMA})
    sent: list[str] = []
    real_send = jobs.send_command

    def send(storage: Storage, **kwargs: Any) -> bool:
        sent.append(kwargs["job_id"])
        return bool(real_send(storage, **kwargs))

    monkeypatch.setattr(jobs, "send_command", send)
    job_id = datasets.request_delete(storage=storage, principal=OWNER, dataset_id=dataset.id)
    assert sent == [job_id]
    for _ in range(3):  # queued: its command is on its way (or in the outbox), once is enough
        assert datasets.request_delete(storage=storage, principal=OWNER, dataset_id=dataset.id) == job_id
    assert sent == [job_id]

    # Its worker gave up: asking again sends it once more.
    jobs.change_job(storage, job_id, lambda _: {"status": jobs.FAILED, "error": "gave up"})
    assert datasets.request_delete(storage=storage, principal=OWNER, dataset_id=dataset.id) == job_id
    assert sent == [job_id, job_id]
    job = jobs.load_job(storage, job_id)
    assert job is not None and job.status == jobs.QUEUED
    assert datasets.delete_dataset(storage=storage, job_id=job_id) == jobs.COMPLETED
