"""Imports that end early or break: review expiry, cancel while applying, and a devhost killed mid-import."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.storage.queue import (
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from devhost.azurite import Azurite
from devhost.processes import stop
from tests.e2e.conftest import OUTPUT_DIR, Api, Devhost, start_devhost
from tests.e2e.test_imports import PEOPLE, people_csv

REPO_ROOT = OUTPUT_DIR.parent


@pytest.fixture(scope="module")
def own_azurite() -> Iterator[Azurite]:
    """An Azurite of this module's own: only this module's devhosts work on its queues and task hub."""
    with Azurite() as instance:
        yield instance


@pytest.fixture
def short_review(own_azurite: Azurite) -> Iterator[Devhost]:
    OUTPUT_DIR.mkdir(exist_ok=True)
    host = start_devhost(
        REPO_ROOT, own_azurite, OUTPUT_DIR / "devhost-short-review.log", {"LOADBAY_REVIEW_SECONDS": "3"}
    )
    yield host
    stop(host.process)


def test_an_undecided_review_expires(short_review: Devhost) -> None:
    api = short_review.api("alice")
    dataset_id = api.create_dataset(PEOPLE)
    job_id = api.start_import(dataset_id, api.profiled(people_csv(10, bad={2: ("age", "x")})), autoApply=True)
    review = api.wait_for_import(job_id, ("awaiting_review", "expired"))
    assert review["expiresAt"]
    job = api.wait_for_import(job_id, timeout=60)
    assert job["status"] == "expired" and job["counts"]["inserted"] == 0
    assert api.post(f"/api/imports/{job_id}/approve").status_code == 409
    assert api.get(f"/api/datasets/{dataset_id}").json()["activeJob"] is None


def _wait_for_applied_rows(api: Api, job_id: str, at_least: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = api.get(f"/api/imports/{job_id}").json()
        if job["status"] == "applying" and job["progress"]["done"] >= at_least:
            return job
        assert job["status"] in ("queued", "validating", "applying"), job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_cancel_while_applying_replace_leaves_the_old_rows(short_review: Devhost) -> None:
    api = short_review.api("alice")
    dataset_id = api.create_dataset(PEOPLE)
    assert (
        api.wait_for_import(api.start_import(dataset_id, api.profiled(people_csv(30)), autoApply=True))[
            "status"
        ]
        == "completed"
    )
    job_id = api.start_import(
        dataset_id, api.profiled(people_csv(3000, start=1000)), mode="replace", autoApply=True
    )
    _wait_for_applied_rows(api, job_id, 1)  # some new rows are written (to the import's own table)
    assert api.post(f"/api/imports/{job_id}/cancel").status_code == 202
    job = api.wait_for_import(job_id)
    assert job["status"] == "cancelled", job
    assert job["counts"]["inserted"] == 0  # they went with that table: none reached the dataset
    dataset = api.get(f"/api/datasets/{dataset_id}").json()
    assert dataset["rowCount"] == 30 and dataset["activeJob"] is None
    assert sorted(int(row["key"]) for row in api.all_rows(dataset_id)) == list(range(1, 31))


def test_cancel_while_applying_insert_says_what_was_applied(short_review: Devhost) -> None:
    api = short_review.api("alice")
    dataset_id = api.create_dataset(PEOPLE)
    job_id = api.start_import(dataset_id, api.profiled(people_csv(3000)), autoApply=True)
    _wait_for_applied_rows(api, job_id, 1)
    api.post(f"/api/imports/{job_id}/cancel")
    job = api.wait_for_import(job_id)
    assert job["status"] == "cancelled", job
    inserted = job["counts"]["inserted"]
    assert 0 < inserted < 3000
    dataset = api.get(f"/api/datasets/{dataset_id}").json()
    assert dataset["rowCount"] == inserted == len(api.all_rows(dataset_id))


def test_a_devhost_killed_while_applying_finishes_with_exact_counts(own_azurite: Azurite) -> None:
    settings = {"DEVHOST_DURABLE_LEASE_SECONDS": "2"}
    log_file = OUTPUT_DIR / "devhost-killed.log"
    host = start_devhost(REPO_ROOT, own_azurite, log_file, settings)
    api = host.api("alice")
    dataset_id = api.create_dataset(PEOPLE)
    job_id = api.start_import(dataset_id, api.profiled(people_csv(3000)), autoApply=True)
    _wait_for_applied_rows(api, job_id, 500)
    os.killpg(host.process.pid, signal.SIGKILL)
    host.process.wait()
    restarted = start_devhost(REPO_ROOT, own_azurite, OUTPUT_DIR / "devhost-restarted.log", settings)
    try:
        api = restarted.api("alice")
        job = api.wait_for_import(job_id, timeout=180)
        assert job["status"] == "completed", job
        assert job["counts"] == {
            "rows": 3000,
            "valid": 3000,
            "invalid": 0,
            "inserted": 3000,
            "updated": 0,
            "unchanged": 0,
        }
        assert api.get(f"/api/datasets/{dataset_id}").json()["rowCount"] == 3000
        assert len(api.all_rows(dataset_id)) == 3000
    finally:
        stop(restarted.process)


def test_a_lost_command_is_sent_by_the_outbox_sweeper(own_azurite: Azurite, short_review: Devhost) -> None:
    """The queue is gone when the import starts, so the send fails; the outbox row still gets it done."""
    queues = QueueServiceClient.from_connection_string(own_azurite.connection_string)
    api = short_review.api("alice")
    dataset_id = api.create_dataset(PEOPLE)
    upload_id = api.profiled(people_csv(10))
    queues.delete_queue("import-requests")
    try:
        job_id = api.start_import(dataset_id, upload_id, autoApply=True)
        assert api.get(f"/api/imports/{job_id}").json()["status"] == "queued"
        outbox = TableServiceClient.from_connection_string(own_azurite.connection_string).get_table_client(
            "datasets"
        )
        assert outbox.get_entity(dataset_id, f"outbox-{job_id}")["queue"] == "import-requests"
    finally:
        queues.create_queue("import-requests")
    job = api.wait_for_import(job_id, timeout=120)
    assert job["status"] == "completed" and job["counts"]["inserted"] == 10
    assert not list(
        outbox.query_entities("PartitionKey eq @pk and RowKey ge 'outbox'", parameters={"pk": dataset_id})
    )


def test_a_malformed_import_command_goes_to_poison_at_once(
    own_azurite: Azurite, short_review: Devhost
) -> None:
    queues = QueueServiceClient.from_connection_string(own_azurite.connection_string)
    queue = queues.get_queue_client("import-requests", message_encode_policy=TextBase64EncodePolicy())
    queue.send_message('{"id": "not a job id"}')
    poison = queues.get_queue_client("import-requests-poison", message_decode_policy=TextBase64DecodePolicy())
    deadline = time.monotonic() + 30
    while True:
        messages = (
            [message.content for message in poison.peek_messages(max_messages=32)] if _exists(poison) else []
        )
        if '{"id": "not a job id"}' in messages:
            break
        assert time.monotonic() < deadline, messages
        time.sleep(0.2)


def _exists(queue: QueueClient) -> bool:
    try:
        queue.get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


def test_too_many_requests_get_429_with_retry_after(own_azurite: Azurite) -> None:
    host = start_devhost(
        REPO_ROOT, own_azurite, OUTPUT_DIR / "devhost-rate-limit.log", {"LOADBAY_REQUESTS_PER_MINUTE": "5"}
    )
    try:
        api = host.api("hasty")
        answers = [api.get("/api/datasets").status_code for _ in range(7)]
        assert answers[:5] == [200] * 5 and answers[5:] == [429, 429]
        refused = api.get("/api/datasets")
        assert int(refused.headers["Retry-After"]) >= 1
        assert "5 a minute" in refused.json()["detail"]
        assert host.api("patient").get("/api/datasets").status_code == 200  # others are not affected
        assert host.api(None).get("/api/health").status_code == 200
    finally:
        stop(host.process)
