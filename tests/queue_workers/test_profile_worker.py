"""The profile worker called in-process (no host) against its own Azurite: traces, retries, idempotence."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from azure.functions.queue import QueueMessage
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core import runtime as runtime_module
from core import uploads
from core.auth import Principal
from core.runtime import Runtime, runtime
from core.storage import PROFILE_QUEUE
from devhost.azurite import Azurite

OWNER = Principal(user_id="worker-test", user_details="w", identity_provider="aad", roles=frozenset())
_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)
    return _EXPORTER


@pytest.fixture(scope="module")
def own_azurite() -> Iterator[Azurite]:
    # Its own emulator: the end-to-end devhost polls the shared one and would take these messages.
    with Azurite() as azurite:
        yield azurite


@pytest.fixture
def rt(own_azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setenv("AzureWebJobsStorage", own_azurite.connection_string)
    runtime_module.runtime.cache_clear()
    yield runtime()
    runtime_module.runtime.cache_clear()


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
    assert upload.error == "Profiling failed after 5 attempts; last error: ConnectionError: storage went away"


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"id": "../../x"}', b'{"id": 5}'])
def test_malformed_messages_are_dropped_not_retried(
    rt: Runtime, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    handler()(QueueMessage(id="m-1", body=body, dequeue_count=1))  # returns: a retry cannot help
    assert "Dropped malformed message m-1 on profile-requests" in caplog.text
