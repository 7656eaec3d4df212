"""Jobs, their outbox and Idempotency-Key claims, against the session's real Azurite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from core import datasets, idempotency, jobs
from core.auth import Principal
from core.errors import BadRequest, Conflict, Invalid
from core.idempotency import STALE_CLAIM, Answer
from core.ids import new_id
from core.settings import StorageConfig
from core.storage import IDEMPOTENCY_TABLE, Storage

OWNER = Principal(user_id="jobs-test", user_details="j", identity_provider="aad", roles=frozenset())
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def storage(storage_connection_string: str) -> Storage:
    connected = Storage.connect(StorageConfig(connection_string=storage_connection_string))
    connected.ensure_resources()
    return connected


@pytest.fixture
def queue_name(storage: Storage) -> Iterator[str]:
    """A queue of this test's own: nothing else sharing the session's Azurite reads from it."""
    name = f"jobs-test-{new_id()}"
    storage.queues.create_queue(name)
    yield name
    storage.queues.delete_queue(name)


def messages(storage: Storage, queue: str) -> list[dict[str, Any]]:
    return [json.loads(message.content) for message in storage.queue(queue).peek_messages(max_messages=32)]


def outbox_exists(storage: Storage, dataset_id: str, job_id: str) -> bool:
    try:
        jobs.datasets_table(storage).get_entity(dataset_id, jobs.outbox_row(job_id))
    except ResourceNotFoundError:
        return False
    return True


def write_outbox(
    storage: Storage, *, queue: str, created_ago: timedelta, traceparent: str = ""
) -> tuple[str, str]:
    dataset_id, job_id = new_id(), new_id()
    entity = jobs.outbox_entity(dataset_id, job_id, queue)
    entity["createdAt"] = jobs.now() - created_ago
    entity["traceparent"] = traceparent
    jobs.datasets_table(storage).create_entity(entity)
    return dataset_id, job_id


def create_job(storage: Storage, *, status: str = jobs.QUEUED) -> jobs.Job:
    dataset_id, job_id = new_id(), new_id()
    jobs.index_job(storage, job_id=job_id, dataset_id=dataset_id, kind=jobs.IMPORT, owner=OWNER)
    jobs.datasets_table(storage).create_entity(
        jobs.new_job_entity(
            dataset_id=dataset_id, job_id=job_id, kind=jobs.IMPORT, owner=OWNER, status=status
        )
    )
    job = jobs.load_job(storage, job_id)
    assert job is not None
    return job


# The outbox


def test_send_command_queues_the_command_and_clears_the_outbox_row(storage: Storage, queue_name: str) -> None:
    dataset_id, job_id = write_outbox(storage, queue=queue_name, created_ago=timedelta(0))
    written = jobs.datasets_table(storage).get_entity(dataset_id, jobs.outbox_row(job_id))
    assert jobs.send_command(
        storage,
        dataset_id=dataset_id,
        job_id=job_id,
        queue=queue_name,
        traceparent=TRACEPARENT,
        etag=written.metadata["etag"],
    )
    assert messages(storage, queue_name) == [{"id": job_id, "traceparent": TRACEPARENT}]
    assert not outbox_exists(storage, dataset_id, job_id)


def test_send_command_without_the_rows_etag_leaves_the_row_alone(storage: Storage, queue_name: str) -> None:
    dataset_id, job_id = write_outbox(storage, queue=queue_name, created_ago=timedelta(0))
    assert jobs.send_command(
        storage, dataset_id=dataset_id, job_id=job_id, queue=queue_name, traceparent=None
    )
    assert outbox_exists(storage, dataset_id, job_id)  # not this sender's row: the sweeper's
    jobs.datasets_table(storage).delete_entity(dataset_id, jobs.outbox_row(job_id))


def test_a_failed_send_leaves_the_outbox_row_for_the_sweeper(storage: Storage) -> None:
    missing_queue = f"jobs-missing-{new_id()}"
    dataset_id, job_id = write_outbox(storage, queue=missing_queue, created_ago=timedelta(0))
    assert not jobs.send_command(
        storage, dataset_id=dataset_id, job_id=job_id, queue=missing_queue, traceparent=None
    )
    assert outbox_exists(storage, dataset_id, job_id)
    jobs.datasets_table(storage).delete_entity(dataset_id, jobs.outbox_row(job_id))


@pytest.fixture
def other_queue(storage: Storage) -> Iterator[str]:
    name = f"jobs-other-{new_id()}"
    storage.queues.create_queue(name)
    yield name
    storage.queues.delete_queue(name)


def test_sweep_sends_old_outbox_rows_and_leaves_fresh_ones(
    storage: Storage, queue_name: str, other_queue: str
) -> None:
    at = jobs.now() + timedelta(minutes=10)
    old_dataset, old_job = write_outbox(
        storage, queue=queue_name, created_ago=timedelta(minutes=1), traceparent=TRACEPARENT
    )
    # Written 10 s before `at`: its first send may still be on its way.
    fresh_dataset, fresh_job = write_outbox(
        storage, queue=other_queue, created_ago=-timedelta(minutes=10) + timedelta(seconds=10)
    )

    sent = jobs.sweep_outbox(storage, at=at)

    assert sent >= 1  # others sharing the session's Azurite may have left rows too
    assert messages(storage, queue_name) == [{"id": old_job, "traceparent": TRACEPARENT}]
    assert not outbox_exists(storage, old_dataset, old_job)
    assert messages(storage, other_queue) == []
    assert outbox_exists(storage, fresh_dataset, fresh_job)
    jobs.datasets_table(storage).delete_entity(fresh_dataset, jobs.outbox_row(fresh_job))


def test_sweep_waits_resend_after_before_sending_again(storage: Storage, queue_name: str) -> None:
    dataset_id, job_id = write_outbox(storage, queue=queue_name, created_ago=timedelta(0))
    created = jobs.datasets_table(storage).get_entity(dataset_id, jobs.outbox_row(job_id))["createdAt"]

    jobs.sweep_outbox(storage, at=created + jobs.RESEND_AFTER - timedelta(seconds=1))
    assert messages(storage, queue_name) == []
    assert outbox_exists(storage, dataset_id, job_id)

    jobs.sweep_outbox(storage, at=created + jobs.RESEND_AFTER + timedelta(seconds=1))
    assert [message["id"] for message in messages(storage, queue_name)] == [job_id]
    assert not outbox_exists(storage, dataset_id, job_id)


def test_sweep_reads_outbox_rows_only(storage: Storage) -> None:
    job = create_job(storage)  # a job row has no queue: sweeping it would fail
    jobs.sweep_outbox(storage, at=jobs.now() + timedelta(hours=1))
    loaded = jobs.load_job(storage, job.id)
    assert loaded is not None and loaded.etag == job.etag


# Conditional job updates


def test_update_job_merges_changes_and_returns_the_new_etag(storage: Storage) -> None:
    job = create_job(storage)
    updated = jobs.update_job(storage, job, status=jobs.VALIDATING, totalRows=12)
    assert updated is not None
    assert updated.status == jobs.VALIDATING
    assert updated.etag != job.etag
    loaded = jobs.load_job(storage, job.id)
    assert loaded is not None
    assert (loaded.status, loaded.get("totalRows"), loaded.owner) == (jobs.VALIDATING, 12, OWNER.user_id)
    assert loaded.etag == updated.etag
    assert jobs.update_job(storage, updated, status=jobs.APPLYING) is not None  # the returned ETag works


def test_update_job_refuses_a_stale_etag(storage: Storage) -> None:
    job = create_job(storage)
    assert jobs.update_job(storage, job, status=jobs.VALIDATING) is not None
    assert jobs.update_job(storage, job, status=jobs.CANCELLED) is None
    loaded = jobs.load_job(storage, job.id)
    assert loaded is not None and loaded.status == jobs.VALIDATING


def test_update_job_of_a_deleted_job_is_none(storage: Storage) -> None:
    job = create_job(storage)
    jobs.datasets_table(storage).delete_entity(job.dataset_id, jobs.job_row(job.id))
    assert jobs.update_job(storage, job, status=jobs.FAILED) is None


def test_update_job_cuts_long_error_text(storage: Storage) -> None:
    job = create_job(storage)
    updated = jobs.update_job(storage, job, error="e" * 5000, lastError="l" * 5000)
    assert updated is not None
    loaded = jobs.load_job(storage, job.id)
    assert loaded is not None
    assert loaded.get("error") == "e" * 2000
    assert loaded.get("lastError") == "l" * 2000


def test_change_job_retries_until_its_update_lands(storage: Storage) -> None:
    job = create_job(storage)
    seen: list[str] = []

    def change(current: jobs.Job) -> dict[str, Any]:
        seen.append(current.etag)
        if len(seen) == 1:  # someone else writes between our read and our update
            assert jobs.update_job(storage, current, progress=50) is not None
        return {"status": jobs.COMPLETED}

    changed = jobs.change_job(storage, job.id, change)
    assert changed is not None and changed.status == jobs.COMPLETED
    assert len(seen) == 2 and seen[0] != seen[1]
    loaded = jobs.load_job(storage, job.id)
    assert loaded is not None
    assert (loaded.status, loaded.get("progress")) == (jobs.COMPLETED, 50)


def test_change_job_leaves_the_job_when_the_change_declines(storage: Storage) -> None:
    job = create_job(storage, status=jobs.COMPLETED)
    unchanged = jobs.change_job(storage, job.id, lambda current: None)
    assert unchanged is not None
    assert unchanged.etag == job.etag
    assert unchanged.status == jobs.COMPLETED


def test_change_job_of_an_unknown_job_is_none(storage: Storage) -> None:
    assert jobs.change_job(storage, new_id(), lambda current: {"status": jobs.FAILED}) is None
    assert jobs.change_job(storage, "not-an-id", lambda current: {"status": jobs.FAILED}) is None


def test_change_job_gives_up_when_the_job_never_stops_changing(storage: Storage) -> None:
    job = create_job(storage)
    calls = 0

    def change(current: jobs.Job) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        assert jobs.update_job(storage, current, progress=calls) is not None
        return {"status": jobs.COMPLETED}

    with pytest.raises(RuntimeError, match=job.id):
        jobs.change_job(storage, job.id, change, attempts=3)
    assert calls == 3
    loaded = jobs.load_job(storage, job.id)
    assert loaded is not None and loaded.status == jobs.QUEUED


def claim(storage: Storage, user_id: str, key: str, request: str) -> Answer | None:
    return idempotency.claim(storage, user_id=user_id, key=key, request=request)


def stored_claim(storage: Storage, request: str) -> dict[str, Any]:
    """Find a claim by its (unique) request fingerprint, without reimplementing how keys are hashed."""
    table = storage.tables.get_table_client(IDEMPOTENCY_TABLE)
    found = list(table.query_entities("request eq @request", parameters={"request": request}))
    assert len(found) == 1
    return dict(found[0])


def test_a_first_claim_is_free_and_a_repeat_gets_the_stored_answer(storage: Storage) -> None:
    user, key = new_id(), new_id()
    request = idempotency.fingerprint("POST", "/api/imports", b'{"a":1}')
    assert claim(storage, user, key, request) is None
    answer = Answer(201, '{"id":"x"}', "/api/imports/x")
    idempotency.remember(storage, user_id=user, key=key, answer=answer)
    assert claim(storage, user, key, request) == answer
    assert claim(storage, user, key, request) == answer  # as often as it is repeated


def test_an_answer_without_location_replays_without_one(storage: Storage) -> None:
    user, key, request = new_id(), new_id(), new_id()
    assert claim(storage, user, key, request) is None
    idempotency.remember(storage, user_id=user, key=key, answer=Answer(200, "", None))
    assert claim(storage, user, key, request) == Answer(200, "", None)


@pytest.mark.parametrize(
    "text",
    [
        "x" * (idempotency.MAX_STORED_BODY_UNITS + 100),
        # Fewer characters than the limit, but Table Storage counts an emoji as two UTF-16 units
        "\N{GRINNING FACE}" * (idempotency.MAX_STORED_BODY_UNITS // 2 + 100),
    ],
    ids=["ascii", "emoji"],
)
def test_a_long_answer_is_replayed_as_valid_json_pointing_at_the_resource(
    storage: Storage, text: str
) -> None:
    user, key, request = new_id(), new_id(), new_id()
    assert claim(storage, user, key, request) is None
    body = json.dumps({"text": text}, ensure_ascii=False)
    idempotency.remember(storage, user_id=user, key=key, answer=Answer(201, body, "/api/datasets/x"))
    replayed = claim(storage, user, key, request)
    assert replayed is not None and replayed.status == 201 and replayed.location == "/api/datasets/x"
    assert json.loads(replayed.body)["location"] == "/api/datasets/x"  # never JSON cut in half


def test_an_answer_storage_refuses_is_replayed_pointing_at_the_resource(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Had the claim stayed pending, a repeat after STALE_CLAIM would do the work a second time."""
    user, key, request = new_id(), new_id(), new_id()
    assert claim(storage, user, key, request) is None
    monkeypatch.setattr(idempotency, "MAX_STORED_BODY_UNITS", 1_000_000)  # let storage be the one to refuse
    body = json.dumps({"text": "x" * 70_000})  # over Table Storage's 64 KiB for a property
    idempotency.remember(storage, user_id=user, key=key, answer=Answer(201, body, "/api/datasets/x"))
    replayed = claim(storage, user, key, request)
    assert replayed is not None and replayed.status == 201 and replayed.location == "/api/datasets/x"
    assert json.loads(replayed.body)["location"] == "/api/datasets/x"


def test_the_same_key_for_a_different_request_is_invalid(storage: Storage) -> None:
    user, key = new_id(), new_id()
    first = idempotency.fingerprint("POST", "/api/imports", b'{"a":1}')
    second = idempotency.fingerprint("POST", "/api/imports", b'{"a":2}')
    assert claim(storage, user, key, first) is None
    with pytest.raises(Invalid) as caught:
        claim(storage, user, key, second)
    assert caught.value.status == 422
    idempotency.remember(storage, user_id=user, key=key, answer=Answer(201, "{}", None))
    with pytest.raises(Invalid):
        claim(storage, user, key, second)


def test_a_claim_still_pending_is_a_conflict(storage: Storage) -> None:
    user, key, request = new_id(), new_id(), new_id()
    assert claim(storage, user, key, request) is None
    with pytest.raises(Conflict) as caught:
        claim(storage, user, key, request)
    assert caught.value.status == 409


def test_keys_belong_to_their_user(storage: Storage) -> None:
    key, request = new_id(), new_id()
    first_user, second_user = new_id(), new_id()
    assert claim(storage, first_user, key, request) is None
    idempotency.remember(storage, user_id=first_user, key=key, answer=Answer(201, "mine", None))
    assert claim(storage, second_user, key, request) is None  # the same key, another user: a new claim


def test_a_released_key_can_be_claimed_again(storage: Storage) -> None:
    user, key = new_id(), new_id()
    assert claim(storage, user, key, "first request") is None
    idempotency.release(storage, user_id=user, key=key)
    assert claim(storage, user, key, "fixed request") is None  # a different request is fine after release
    with pytest.raises(Conflict):
        claim(storage, user, key, "fixed request")


def test_releasing_an_unknown_key_is_no_error(storage: Storage) -> None:
    user, key = new_id(), new_id()
    idempotency.release(storage, user_id=user, key=key)
    assert claim(storage, user, key, new_id()) is None


def test_a_stale_pending_claim_is_taken_over(storage: Storage) -> None:
    user, key, request = new_id(), new_id(), new_id()
    assert claim(storage, user, key, request) is None
    abandoned = stored_claim(storage, request)
    abandoned["claimedAt"] = jobs.now() - STALE_CLAIM - timedelta(seconds=5)
    storage.tables.get_table_client(IDEMPOTENCY_TABLE).upsert_entity(abandoned)

    assert claim(storage, user, key, request) is None  # the dead process's claim is ours now

    renewed = stored_claim(storage, request)
    assert renewed["state"] == "pending"
    assert renewed["claimedAt"] > jobs.now() - timedelta(minutes=1)
    with pytest.raises(Conflict):  # and, being fresh, it blocks a third caller
        claim(storage, user, key, request)


def test_a_pending_claim_younger_than_stale_claim_is_not_taken_over(storage: Storage) -> None:
    user, key, request = new_id(), new_id(), new_id()
    assert claim(storage, user, key, request) is None
    recent = stored_claim(storage, request)
    recent["claimedAt"] = jobs.now() - STALE_CLAIM + timedelta(seconds=30)
    storage.tables.get_table_client(IDEMPOTENCY_TABLE).upsert_entity(recent)
    with pytest.raises(Conflict):
        claim(storage, user, key, request)


def test_a_stale_claim_for_another_request_is_still_invalid(storage: Storage) -> None:
    user, key, request = new_id(), new_id(), new_id()
    assert claim(storage, user, key, request) is None
    abandoned = stored_claim(storage, request)
    abandoned["claimedAt"] = jobs.now() - STALE_CLAIM - timedelta(minutes=5)
    storage.tables.get_table_client(IDEMPOTENCY_TABLE).upsert_entity(abandoned)
    with pytest.raises(Invalid):
        claim(storage, user, key, "another request")


@pytest.mark.parametrize("key", ["", "k" * (idempotency.MAX_KEY_CHARS + 1), "line\nbreak", "tab\tkey"])
def test_unusable_keys_are_bad_requests(storage: Storage, key: str) -> None:
    with pytest.raises(BadRequest) as caught:
        claim(storage, new_id(), key, "request")
    assert caught.value.status == 400
    with pytest.raises(BadRequest):
        idempotency.release(storage, user_id=new_id(), key=key)


def test_a_key_of_the_longest_length_is_accepted(storage: Storage) -> None:
    user, key = new_id(), "k" * idempotency.MAX_KEY_CHARS
    assert claim(storage, user, key, new_id()) is None


def test_fingerprints_tell_requests_apart() -> None:
    base = idempotency.fingerprint("POST", "/api/imports", b"{}")
    assert base == idempotency.fingerprint("POST", "/api/imports", b"{}")
    assert base != idempotency.fingerprint("PUT", "/api/imports", b"{}")
    assert base != idempotency.fingerprint("POST", "/api/exports", b"{}")
    assert base != idempotency.fingerprint("POST", "/api/imports", b"{ }")
    assert base != idempotency.fingerprint("POST", "/api/imports?mode=a", b"{}")
    assert base != idempotency.fingerprint("POST", "/api/imports", b"{}", content_type="text/csv")


def release_just_before(
    storage: Storage, monkeypatch: pytest.MonkeyPatch, method: str, *, user_id: str, key: str
) -> None:
    """Have the holder's request fail and release the key just before claim's next `method` on the table."""
    table = storage.tables.get_table_client(IDEMPOTENCY_TABLE)
    call = getattr(table, method)
    released = False

    def racing(*args: Any, **kwargs: Any) -> Any:
        nonlocal released
        if not released:
            released = True
            idempotency.release(storage, user_id=user_id, key=key)
        return call(*args, **kwargs)

    monkeypatch.setattr(table, method, racing)
    monkeypatch.setattr(idempotency, "_table", lambda _storage: table)


def test_a_claim_released_between_create_and_read_is_claimed_afresh(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, key, request = new_id(), new_id(), new_id()
    assert claim(storage, user, key, "a request about to fail") is None
    release_just_before(storage, monkeypatch, "get_entity", user_id=user, key=key)
    assert claim(storage, user, key, request) is None
    assert stored_claim(storage, request)["state"] == "pending"


def test_a_stale_claim_released_before_its_takeover_is_claimed_afresh(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, key, request = new_id(), new_id(), new_id()
    assert claim(storage, user, key, request) is None
    slow = stored_claim(storage, request)  # not dead after all: it fails and releases at the last moment
    slow["claimedAt"] = jobs.now() - STALE_CLAIM - timedelta(seconds=5)
    storage.tables.get_table_client(IDEMPOTENCY_TABLE).upsert_entity(slow)
    release_just_before(storage, monkeypatch, "update_entity", user_id=user, key=key)
    assert claim(storage, user, key, request) is None
    assert stored_claim(storage, request)["claimedAt"] > jobs.now() - timedelta(minutes=1)


def test_a_claim_released_and_taken_again_every_time_is_a_conflict(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, key, theirs = new_id(), new_id(), new_id()
    assert claim(storage, user, key, theirs) is None
    table = storage.tables.get_table_client(IDEMPOTENCY_TABLE)
    read = table.get_entity
    reads = 0

    def flipping(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        idempotency.release(storage, user_id=user, key=key)
        try:
            return read(*args, **kwargs)
        finally:  # their retry claims the key again before ours can
            assert claim(storage, user, key, theirs) is None

    monkeypatch.setattr(table, "get_entity", flipping)
    monkeypatch.setattr(idempotency, "_table", lambda _storage: table)
    with pytest.raises(Conflict) as caught:
        claim(storage, user, key, new_id())
    assert caught.value.status == 409
    assert reads > 1  # it did try again


def test_a_job_refused_its_claim_leaves_no_index_row(storage: Storage, queue_name: str) -> None:
    """The claim's ETag no longer matches (another job claimed the dataset): 409, and nothing is left."""
    dataset = datasets.create_dataset(
        storage=storage, owner=OWNER, body={"name": "claimed", "schema": {"fields": [{"name": "id"}]}}
    )
    dataset_id, job_id = dataset.id, new_id()
    with pytest.raises(Conflict, match="taken"):
        jobs.start_job(
            storage,
            dataset_id=dataset_id,
            kind=jobs.EXPORT,
            owner=OWNER,
            queue=queue_name,
            fields={},
            conflict="taken",
            claim_etag="W/\"datetime'2001-01-01T00%3A00%3A00.0000000Z'\"",
            job_id=job_id,
        )
    with pytest.raises(ResourceNotFoundError):
        jobs.jobs_index(storage).get_entity(job_id, "job")
    assert jobs.load_job(storage, job_id) is None


def test_a_job_that_landed_though_its_answer_was_a_conflict_goes_on(
    storage: Storage, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first try committed, its answer was lost, and the SDK's retry was refused (409/412)."""
    dataset = datasets.create_dataset(
        storage=storage, owner=OWNER, body={"name": "landed", "schema": {"fields": [{"name": "id"}]}}
    )
    submit = jobs.submit_or_conflict

    def landed_then_refused(*args: Any) -> Any:
        submit(*args)
        raise Conflict("taken")

    monkeypatch.setattr(jobs, "submit_or_conflict", landed_then_refused)
    job = jobs.start_job(
        storage,
        dataset_id=dataset.id,
        kind=jobs.EXPORT,
        owner=OWNER,
        queue=queue_name,
        fields={},
        conflict="taken",
        claim_etag=dataset.etag,
    )
    assert jobs.load_job(storage, job.id) is not None  # still found through its index row
    assert messages(storage, queue_name) == [{"id": job.id, "traceparent": None}]
