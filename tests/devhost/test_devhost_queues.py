"""Queue triggers against real Azurite, driven in-process in burst mode: host.json semantics end to end."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devhost import Host
from tests.devhost.support import Queues

QUEUE_APP_SETTINGS = ("RECORD_QUEUE", "FAIL_QUEUE", "SLOW_QUEUE", "FORWARD_QUEUE", "TEXT_QUEUE")


@pytest.fixture
def queue_names(unique: Callable[[str], str]) -> dict[str, str]:
    """Unique names for every queue the queue_app and retry_app listen on."""
    keys = (*QUEUE_APP_SETTINGS, "RETRY_QUEUE", "SLEEPY_QUEUE")
    return {key: unique(key.split("_")[0].lower()) for key in keys}


def test_base64_body_and_metadata_reach_the_function(
    load_host: Callable[..., Host], queues: Queues, queue_names: dict[str, str]
) -> None:
    name = queue_names["RECORD_QUEUE"]
    sent = queues.send(name, "grüße \x00 binary-safe".encode())
    host = load_host("queue_app", **queue_names)
    result = host.run_burst_sync(timeout=30)
    records = host.module.RECORDS
    assert len(records) == 1
    record = records[0]
    assert record["body"] == "grüße \x00 binary-safe".encode()
    assert record["id"] == sent.id
    assert record["dequeue_count"] == 1
    assert record["insertion_time"] == sent.inserted_on
    assert record["expiration_time"] == sent.expires_on
    assert record["pop_receipt"]
    assert (result.invocations, result.failures) == (1, 0)
    assert queues.count(name) == 0  # success deletes the message


def test_a_str_parameter_gets_the_decoded_body(
    load_host: Callable[..., Host], queues: Queues, queue_names: dict[str, str]
) -> None:
    queues.send(queue_names["TEXT_QUEUE"], b'{"id": "u-1"}')
    host = load_host("queue_app", **queue_names)
    host.run_burst_sync(timeout=30)
    assert host.module.TEXTS == ['{"id": "u-1"}']


def test_batch_size_bounds_concurrency(
    load_host: Callable[..., Host], queues: Queues, queue_names: dict[str, str]
) -> None:
    # queue_app: batchSize 3, newBatchThreshold 0, so never more than 3 in flight at once.
    for number in range(9):
        queues.send(queue_names["SLOW_QUEUE"], f"slow {number}".encode())
    host = load_host("queue_app", **queue_names)
    host.run_burst_sync(timeout=30)
    assert host.module.CONCURRENCY["total"] == 9
    assert host.module.CONCURRENCY["max"] == 3


def test_always_failing_message_goes_to_poison_after_max_dequeue_count(
    load_host: Callable[..., Host], queues: Queues, queue_names: dict[str, str]
) -> None:
    name = queue_names["FAIL_QUEUE"]
    original = queues.send(name, b'{"id": "job-1"}')
    host = load_host("queue_app", **queue_names)
    result = host.run_burst_sync(timeout=30)
    assert host.module.FAILURES == [1, 2, 3, 4, 5]
    assert result.failures == 5
    assert queues.count(name) == 0
    assert queues.peek(f"{name}-poison") == [original.content]


def test_invalid_base64_goes_straight_to_poison(
    load_host: Callable[..., Host], queues: Queues, queue_names: dict[str, str]
) -> None:
    name = queue_names["RECORD_QUEUE"]
    queues.send_raw(name, "this is not base64!")
    host = load_host("queue_app", **queue_names)
    result = host.run_burst_sync(timeout=30)
    assert host.module.RECORDS == []
    assert result.invocations == 0
    assert queues.count(name) == 0
    assert queues.peek(f"{name}-poison") == ["this is not base64!"]


def test_visibility_timeout_delays_the_retry(
    load_host: Callable[..., Host], queues: Queues, queue_names: dict[str, str]
) -> None:
    # retry_app: visibilityTimeout 00:00:02; the first attempt fails, the retry succeeds.
    queues.send(queue_names["RETRY_QUEUE"], b"try me")
    host = load_host("retry_app", **queue_names)
    result = host.run_burst_sync(timeout=30)
    attempts = host.module.ATTEMPTS
    assert [count for count, _ in attempts] == [1, 2]
    assert attempts[1][1] - attempts[0][1] >= 1.5
    assert (result.invocations, result.failures) == (2, 1)
    assert queues.count(queue_names["RETRY_QUEUE"]) == 0


def test_output_binding_messages_are_drained_in_the_same_burst(
    load_host: Callable[..., Host], queues: Queues, queue_names: dict[str, str]
) -> None:
    queues.send(queue_names["FORWARD_QUEUE"], b"parcel")
    host = load_host("queue_app", **queue_names)
    host.run_burst_sync(timeout=30)
    bodies = sorted(record["body"] for record in host.module.RECORDS)
    assert bodies == [b"parcel (forwarded 1)", b"parcel (forwarded 2)"]
    assert queues.count(queue_names["FORWARD_QUEUE"]) == 0
    assert queues.count(queue_names["RECORD_QUEUE"]) == 0


def test_long_invocation_keeps_its_message_invisible_by_renewing_the_lease(
    load_host: Callable[..., Host], queues: Queues, queue_names: dict[str, str]
) -> None:
    # A 2 s lease and a 3 s invocation: without renewal the message would be delivered again meanwhile.
    queues.send(queue_names["SLEEPY_QUEUE"], b"zzz")
    host = load_host("retry_app", DEVHOST_QUEUE_LEASE_SECONDS="2", SLEEPY_SECONDS="3", **queue_names)
    host.run_burst_sync(timeout=30)
    assert host.module.SLEEPY == [1]
    assert queues.count(queue_names["SLEEPY_QUEUE"]) == 0
