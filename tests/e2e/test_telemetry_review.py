"""DESIGN §7 in fact: one import is one trace (the app served in-process, spans caught in memory), and
Application Insights gets every Loadbay logger, only when configured."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from core import runtime as runtime_module
from core import telemetry
from devhost.azurite import Azurite
from devhost.host import Host
from devhost.processes import REPO_ROOT
from tests.conftest import span_exporter
from tests.e2e.conftest import principal_header

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
SCHEMA = {"fields": [{"name": "id", "type": "integer"}, {"name": "name", "type": "string"}]}
CSV = b"id,name\n1,Secret Alice\n2,Secret Bob\n"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    return span_exporter()


@pytest.fixture(scope="module")
def own_azurite() -> Iterator[Azurite]:
    # Its own emulator: the end-to-end devhost process polls the shared one and would take the work.
    with Azurite() as azurite:
        yield azurite


async def _import(base_url: str) -> tuple[str, str]:
    headers = {"x-ms-client-principal": principal_header("trace-user")}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def call(method: str, path: str, **kwargs: Any) -> Any:
            async with http.request(method, base_url + path, **kwargs) as answer:
                assert answer.status < 300, await answer.text()
                return await answer.json()

        async def wait(path: str, done: tuple[str, ...]) -> dict[str, Any]:
            deadline = time.monotonic() + 60
            while True:
                body: dict[str, Any] = await call("GET", path)
                if body["status"] in done or time.monotonic() > deadline:
                    return body
                await asyncio.sleep(0.2)

        upload = await call(
            "POST",
            "/api/uploads",
            params={"fileName": "t.csv"},
            data=CSV,
            headers={"Content-Type": "text/csv"},
        )
        assert (await wait(f"/api/uploads/{upload['id']}", ("profiled", "failed")))["status"] == "profiled"
        dataset = await call("POST", "/api/datasets", json={"name": "traced", "schema": SCHEMA})
        job = await call(
            "POST",
            f"/api/datasets/{dataset['id']}/imports",
            json={"uploadId": upload["id"], "autoApply": True},
            headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"},
        )
        assert (await wait(f"/api/imports/{job['id']}", ("completed", "failed")))["status"] == "completed"
        return str(dataset["id"]), str(job["id"])


def _run(azurite: Azurite) -> tuple[str, str]:
    runtime_module.runtime.cache_clear()
    host = Host.load(REPO_ROOT, environ_overrides={"AzureWebJobsStorage": azurite.connection_string})
    try:

        async def serve() -> tuple[str, str]:
            async with host.serving(port=0):
                return await _import(host.base_url)

        return asyncio.run(serve())
    finally:
        host.close()
        runtime_module.runtime.cache_clear()


def _one(found: list[ReadableSpan], name: str) -> ReadableSpan:
    named = [span for span in found if span.name == name]
    assert named, f"no {name} span among {sorted({span.name for span in found})}"
    return named[0]


def test_an_import_is_one_trace_from_the_post_to_the_last_activity(
    own_azurite: Azurite, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    _dataset_id, job_id = _run(own_azurite)
    in_trace = [span for span in spans.get_finished_spans() if f"{span.context.trace_id:032x}" == TRACE_ID]

    post = _one(in_trace, "start_import")
    assert post.kind == SpanKind.SERVER
    assert post.parent is not None and f"{post.parent.span_id:016x}" == CALLER_SPAN
    assert post.attributes is not None and post.attributes["enduser.id"] == "trace-user"

    relay = _one(in_trace, "import-requests")
    assert relay.kind == SpanKind.CONSUMER
    assert relay.parent is not None and relay.parent.span_id == post.context.span_id
    assert relay.attributes is not None and relay.attributes["loadbay.job_id"] == job_id

    orchestrator = _one(in_trace, "import_orchestrator")
    assert orchestrator.parent is not None and orchestrator.parent.span_id == relay.context.span_id
    assert orchestrator.attributes is not None and orchestrator.attributes["loadbay.job_id"] == job_id

    activities = [
        "import_plan",
        "import_validate_chunk",
        "import_review",
        "import_apply_chunk",
        "import_finalize",
    ]
    for name in activities:
        activity = _one(in_trace, name)
        assert activity.parent is not None and activity.parent.span_id == relay.context.span_id, name
        assert activity.attributes is not None and activity.attributes["loadbay.job_id"] == job_id, name
    assert all(span.status.is_ok for span in in_trace)


# Run in a child process: configure_azure_monitor installs global providers the other tests must not see.
CHECK = """
import logging
from core.telemetry import configure_telemetry
assert configure_telemetry({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=%s;IngestionEndpoint=http://127.0.0.1:9/"})
names = ["loadbay.http", "core.jobs", "core.imports", "queue_workers.jobs", "orchestrations.imports",
         "http_api.health"]
def exported(name):
    logger = logging.getLogger(name)
    while logger is not None:
        if any(type(handler).__name__ == "LoggingHandler" for handler in logger.handlers):
            return True
        logger = logger.parent if logger.propagate else None
    return False
print(sorted(name for name in names if not exported(name)))
""" % ("0" * 8 + "-0000-0000-0000-" + "0" * 12)


def test_every_loadbay_logger_reaches_application_insights() -> None:
    env = {"APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_application_insights_is_left_alone_without_a_connection_string() -> None:
    assert telemetry.configure_telemetry({}) is False
    assert telemetry.configure_telemetry({"APPLICATIONINSIGHTS_CONNECTION_STRING": ""}) is False
