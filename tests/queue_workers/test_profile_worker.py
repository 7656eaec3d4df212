"""The profile worker called in-process (no host) against its own Azurite: traces, retries, idempotence."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.queue import QueueMessage
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core import uploads
from core.auth import Principal
from core.errors import Conflict, LimitExceeded
from core.runtime import Runtime
from core.storage import PROFILE_QUEUE, UPLOADS_CONTAINER
from tests.conftest import span_exporter

OWNER = Principal(user_id="worker-test", user_details="w", identity_provider="aad", roles=frozenset())


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    return span_exporter()


def handler() -> Any:
    from queue_workers.profile import profile_upload

    return profile_upload.build().get_user_function()


def take_message(rt: Runtime) -> QueueMessage:
    queued = rt.storage.queues.get_queue_client(PROFILE_QUEUE).receive_message()
    assert queued is not None
    rt.storage.queues.get_queue_client(PROFILE_QUEUE).delete_message(queued)
    body = base64.b64decode(queued.content)
    return QueueMessage(id=queued.id, body=body, dequeue_count=1)


def test_the_worker_continues_the_callers_trace(rt: Runtime, spans: InMemorySpanExporter) -> None:
    spans.clear()
    with trace.get_tracer("test").start_as_current_span("upload request") as root:
        created = uploads.store_upload(
            storage=rt.storage, settings=rt.settings, owner=OWNER, file_name="a.csv", body=b"a,b\n1,2\n"
        )
    message = take_message(rt)
    assert (
        json.loads(message.get_body())["traceparent"].split("-")[1]
        == f"{root.get_span_context().trace_id:032x}"
    )

    handler()(message)
    handler()(message)  # a duplicate delivery changes nothing

    upload = uploads.get_upload(storage=rt.storage, principal=OWNER, upload_id=created["id"])
    assert upload.status == "profiled"
    worker_spans = [span for span in spans.get_finished_spans() if span.name == "profile_upload"]
    assert len(worker_spans) == 2
    assert {span.context.trace_id for span in worker_spans} == {root.get_span_context().trace_id}
    assert worker_spans[0].attributes is not None
    assert worker_spans[0].attributes["loadbay.upload_id"] == created["id"]


def test_failures_are_recorded_and_the_last_attempt_marks_failed(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = uploads.store_upload(
        storage=rt.storage, settings=rt.settings, owner=OWNER, file_name="b.csv", body=b"a,b\n1,2\n"
    )
    message = take_message(rt)

    def broken(**kwargs: Any) -> str:
        raise ConnectionError("storage went away")

    monkeypatch.setattr(uploads, "profile_upload", broken)
    for attempt in range(1, 6):
        retry = QueueMessage(id=message.id, body=message.get_body(), dequeue_count=attempt)
        with pytest.raises(ConnectionError):
            handler()(retry)
        status = uploads.get_upload(storage=rt.storage, principal=OWNER, upload_id=created["id"]).status
        assert status == ("failed" if attempt == 5 else "uploaded")
    upload = uploads.get_upload(storage=rt.storage, principal=OWNER, upload_id=created["id"])
    assert upload.error is not None and upload.error.startswith("Profiling failed after 5 attempts")
    assert "storage went away" not in upload.error  # exception text stays out of what users see


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"id": "../../x"}', b'{"id": 5}', b"[" * 20_000])
def test_malformed_messages_go_straight_to_poison(
    rt: Runtime, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    poison = rt.storage.queue(f"{PROFILE_QUEUE}-poison")
    handler()(QueueMessage(id="m-1", body=body, dequeue_count=1))  # returns: no retry can help
    assert "Malformed message m-1 on profile-requests" in caplog.text
    parked = poison.receive_message()
    assert parked is not None and parked.content == body.decode()
    poison.delete_message(parked)


def test_a_file_changed_after_commit_is_not_profiled(rt: Runtime) -> None:
    ticket = uploads.create_upload(
        storage=rt.storage, settings=rt.settings, owner=OWNER, file_name="c.csv", size=8
    )
    blob = rt.storage.blobs.get_blob_client(UPLOADS_CONTAINER, ticket["id"])
    blob.upload_blob(b"a,b\n1,2\n")
    uploads.commit_upload(storage=rt.storage, settings=rt.settings, principal=OWNER, upload_id=ticket["id"])
    take_message(rt)
    blob.upload_blob(b"x,y\n3,4\n", overwrite=True)  # the upload URL is still valid: someone rewrites
    status = uploads.profile_upload(storage=rt.storage, settings=rt.settings, upload_id=ticket["id"])
    assert status == "failed"
    upload = uploads.get_upload(storage=rt.storage, principal=OWNER, upload_id=ticket["id"])
    assert upload.error == "The file was changed after it was committed; upload it again."


def test_concurrent_deliveries_profile_once_and_neither_fails(rt: Runtime) -> None:
    created = uploads.store_upload(
        storage=rt.storage,
        settings=rt.settings,
        owner=OWNER,
        file_name="d.csv",
        body=b"a,b\n" + b"1,2\n" * 20_000,
    )
    take_message(rt)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(
                lambda _: uploads.profile_upload(
                    storage=rt.storage, settings=rt.settings, upload_id=created["id"]
                ),
                range(2),
            )
        )
    # One delivery profiles; the other sees the claim and leaves (or sees the result). Neither fails.
    assert "profiled" in results and set(results) <= {"profiled", "profiling"}
    assert (
        uploads.get_upload(storage=rt.storage, principal=OWNER, upload_id=created["id"]).status == "profiled"
    )


def test_commit_refuses_oversized_files_then_reports_the_failure(rt: Runtime) -> None:
    small = replace(rt.settings, upload_max_bytes=10)
    ticket = uploads.create_upload(storage=rt.storage, settings=small, owner=OWNER, file_name="e.csv", size=5)
    rt.storage.blobs.get_blob_client(UPLOADS_CONTAINER, ticket["id"]).upload_blob(b"a" * 11)
    with pytest.raises(LimitExceeded, match=r"The file is 11 bytes; the limit is 10 bytes\."):
        uploads.commit_upload(storage=rt.storage, settings=small, principal=OWNER, upload_id=ticket["id"])
    with pytest.raises(Conflict, match="This upload failed"):
        uploads.commit_upload(storage=rt.storage, settings=small, principal=OWNER, upload_id=ticket["id"])


def test_the_sweeper_resends_lost_commands_and_expires_abandoned_profiling(rt: Runtime) -> None:
    lost = uploads.store_upload(
        storage=rt.storage, settings=rt.settings, owner=OWNER, file_name="f.csv", body=b"a\n1\n"
    )
    take_message(rt)  # the command is lost
    stuck = uploads.store_upload(
        storage=rt.storage, settings=rt.settings, owner=OWNER, file_name="g.csv", body=b"a\n1\n"
    )
    take_message(rt)
    # A worker claimed it and died on its last attempt: the host poisoned the message without a call.
    rt.storage.tables.get_table_client("uploads").update_entity(
        {"PartitionKey": stuck["id"], "RowKey": "upload", "status": "profiling"}
    )
    nothing_old = {"resent": 0, "expired": 0, "abandoned": 0}
    assert uploads.sweep_uploads(storage=rt.storage) == nothing_old

    later = datetime.now(UTC) + timedelta(hours=2)
    counts = uploads.sweep_uploads(storage=rt.storage, now=later)
    assert counts["resent"] >= 1 and counts["expired"] >= 1
    resent = take_message(rt)
    assert json.loads(resent.get_body())["id"] in {lost["id"]}
    expired = uploads.get_upload(storage=rt.storage, principal=OWNER, upload_id=stuck["id"])
    assert expired.status == "failed"
    assert expired.error == "Profiling did not finish in time; upload the file again."


def test_the_sweeper_deletes_the_files_of_uploads_never_committed(rt: Runtime) -> None:
    ticket = uploads.create_upload(
        storage=rt.storage, settings=rt.settings, owner=OWNER, file_name="h.csv", size=4
    )
    blob = rt.storage.blobs.get_blob_client(UPLOADS_CONTAINER, ticket["id"])
    blob.upload_blob(b"a\n1\n")  # sent through the upload URL, then never committed

    almost = uploads.sweep_uploads(storage=rt.storage, now=datetime.now(UTC) + timedelta(hours=23))
    assert almost["abandoned"] == 0 and blob.exists()
    later = uploads.sweep_uploads(storage=rt.storage, now=datetime.now(UTC) + timedelta(days=1, minutes=1))
    assert later["abandoned"] >= 1 and not blob.exists()
    abandoned = uploads.get_upload(storage=rt.storage, principal=OWNER, upload_id=ticket["id"])
    assert abandoned.status == "failed"
    assert (
        abandoned.error == "The upload was never committed, and its file was deleted; upload the file again."
    )
    with pytest.raises(Conflict, match="This upload failed"):
        uploads.commit_upload(
            storage=rt.storage, settings=rt.settings, principal=OWNER, upload_id=ticket["id"]
        )


def test_a_file_left_by_a_sweep_that_crashed_is_deleted_by_the_next(rt: Runtime) -> None:
    ticket = uploads.create_upload(
        storage=rt.storage, settings=rt.settings, owner=OWNER, file_name="i.csv", size=4
    )
    blob = rt.storage.blobs.get_blob_client(UPLOADS_CONTAINER, ticket["id"])
    blob.upload_blob(b"a\n1\n")
    # The sweep marked the upload failed, then crashed before deleting its file.
    rt.storage.tables.get_table_client("uploads").update_entity(
        {"PartitionKey": ticket["id"], "RowKey": "upload", "status": "failed", "fileLeft": True}
    )
    uploads.sweep_uploads(storage=rt.storage)
    assert not blob.exists()
    entity = rt.storage.tables.get_table_client("uploads").get_entity(ticket["id"], "upload")
    assert entity["fileLeft"] is False


def test_an_upload_committed_as_the_sweep_reads_it_keeps_its_file(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticket = uploads.create_upload(
        storage=rt.storage, settings=rt.settings, owner=OWNER, file_name="j.csv", size=4
    )
    blob = rt.storage.blobs.get_blob_client(UPLOADS_CONTAINER, ticket["id"])
    blob.upload_blob(b"a\n1\n")
    read = uploads.Upload.from_entity
    committing: list[bool] = []

    def read_then_commit(entity: Any) -> uploads.Upload:  # the commit lands between the query and the update
        upload = read(entity)
        if upload.id == ticket["id"] and upload.status == uploads.PENDING and not committing:
            committing.append(True)
            uploads.commit_upload(
                storage=rt.storage, settings=rt.settings, principal=OWNER, upload_id=ticket["id"]
            )
        return upload

    monkeypatch.setattr(uploads.Upload, "from_entity", staticmethod(read_then_commit))
    # The count would take in other tests' pending uploads (one Azurite per module): look at this one.
    uploads.sweep_uploads(storage=rt.storage, now=datetime.now(UTC) + timedelta(days=1, minutes=1))
    monkeypatch.undo()
    assert committing and blob.exists()
    committed = uploads.get_upload(storage=rt.storage, principal=OWNER, upload_id=ticket["id"])
    assert committed.status != "failed"


def test_a_commit_that_loses_to_the_sweep_is_refused(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    ticket = uploads.create_upload(
        storage=rt.storage, settings=rt.settings, owner=OWNER, file_name="k.csv", size=4
    )
    rt.storage.blobs.get_blob_client(UPLOADS_CONTAINER, ticket["id"]).upload_blob(b"a\n1\n")
    update = uploads._try_update

    def sweep_first(storage: Any, upload: uploads.Upload, **changes: Any) -> uploads.Upload | None:
        monkeypatch.setattr(uploads, "_try_update", update)  # the sweep lands between the read and the update
        uploads.sweep_uploads(storage=rt.storage, now=datetime.now(UTC) + timedelta(days=1, minutes=1))
        return update(storage, upload, **changes)

    monkeypatch.setattr(uploads, "_try_update", sweep_first)
    with pytest.raises(Conflict, match="This upload failed"):
        uploads.commit_upload(
            storage=rt.storage, settings=rt.settings, principal=OWNER, upload_id=ticket["id"]
        )
    assert uploads._try_update is update  # the sweep did run


def test_a_resent_command_continues_the_trace_of_the_upload(rt: Runtime) -> None:
    from core.telemetry import function_span

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with function_span("store", traceparent=f"00-{trace_id}-00f067aa0ba902b7-01", kind=trace.SpanKind.SERVER):
        stored = uploads.store_upload(
            storage=rt.storage, settings=rt.settings, owner=OWNER, file_name="t.csv", body=b"a\n1\n"
        )
    take_message(rt)  # the command is lost
    uploads.sweep_uploads(storage=rt.storage, now=datetime.now(UTC) + timedelta(hours=2))
    resent = {}
    while resent.get("id") != stored["id"]:  # earlier tests' lost commands are re-sent too
        resent = json.loads(take_message(rt).get_body())
    assert resent["traceparent"].split("-")[1] == trace_id  # not the sweeper's own trace
