"""HTTP triggers served in-process on a free port: routing, auth levels, limits, errors, conversions."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azure.data.tables import TableClient

from devhost import Host
from devhost.azurite import Azurite
from tests.devhost.support import APPS, Queues

Scenario = Callable[[aiohttp.ClientSession, str], Awaitable[None]]


def serve(host: Host, scenario: Scenario) -> None:
    """Serve the host on a free port, run the scenario against it, stop the host."""

    async def main() -> None:
        async with host.serving(port=0), aiohttp.ClientSession() as session:
            await scenario(session, host.base_url)

    asyncio.run(main())


async def fetch(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, str, Any]:
    async with session.request(method, url, **kwargs) as response:
        return response.status, await response.text(), response.headers


@pytest.fixture
def http_host(load_host: Callable[..., Host]) -> Host:
    return load_host("http_app")


def test_route_query_headers_and_body_reach_the_function(http_host: Host) -> None:
    seen: dict[str, Any] = {}

    async def scenario(session: aiohttp.ClientSession, base: str) -> None:
        url = f"{base}/api/echo/42/Ada?q=1&q=2&plain=yes"
        status, text, headers = await fetch(session, "POST", url, headers={"X-Trace": "abc"}, data=b"payload")
        seen.update(status=status, body=json.loads(text), content_type=headers["Content-Type"])

    serve(http_host, scenario)
    body = seen["body"]
    assert seen["status"] == 200 and seen["content_type"] == "application/json"
    assert body["method"] == "POST"
    assert body["route"] == {"id": "42", "name": "Ada"}
    assert body["params"] == {"q": "1,2", "plain": "yes"}
    assert body["headers"]["x-trace"] == "abc"
    assert body["body"] == "payload"
    assert body["url"].endswith("/api/echo/42/Ada?q=1&q=2&plain=yes")


def test_routing_constraints_optional_catch_all_and_methods(http_host: Host) -> None:
    answers: dict[str, tuple[int, str]] = {}
    probes = {
        "literal": ("GET", "/api/items/new"),
        "int": ("GET", "/api/items/17"),
        "alpha": ("GET", "/api/items/abc"),
        "neither": ("GET", "/api/items/a1"),
        "optional": ("GET", "/api/echo/1"),
        "catch_all": ("GET", "/api/files/a/b/c.txt"),
        "wrong_method": ("DELETE", "/api/echo/1"),
        "unknown": ("GET", "/api/nothing-here"),
        "no_prefix": ("GET", "/health"),
    }

    async def scenario(session: aiohttp.ClientSession, base: str) -> None:
        for name, (method, path) in probes.items():
            status, text, _ = await fetch(session, method, base + path)
            answers[name] = (status, text)

    serve(http_host, scenario)
    assert answers["literal"] == (200, "literal")
    assert answers["int"] == (200, "int 17")
    assert answers["alpha"] == (200, "alpha abc")
    assert answers["neither"][0] == 404
    assert answers["optional"][0] == 200 and json.loads(answers["optional"][1])["route"] == {"id": "1"}
    assert answers["catch_all"] == (200, "path=a/b/c.txt")
    assert answers["wrong_method"][0] == 404  # the Functions host answers 404, not 405
    assert answers["unknown"][0] == 404
    assert answers["no_prefix"][0] == 404


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        ("/api/secret", {}, 401),
        ("/api/secret?code=wrong", {}, 401),
        ("/api/secret?code=function-key-123", {}, 200),
        ("/api/secret", {"x-functions-key": "function-key-123"}, 200),
        ("/api/secret", {"x-functions-key": "master-key-456"}, 200),
        ("/api/admin-only?code=function-key-123", {}, 401),
        ("/api/admin-only", {"x-functions-key": "master-key-456"}, 200),
        ("/api/health", {}, 200),
    ],
)
def test_auth_levels(http_host: Host, path: str, headers: dict[str, str], expected: int) -> None:
    statuses: list[int] = []

    async def scenario(session: aiohttp.ClientSession, base: str) -> None:
        status, _, _ = await fetch(session, "GET", base + path, headers=headers)
        statuses.append(status)

    serve(http_host, scenario)
    assert statuses == [expected]


def test_body_limit_answers_413(load_host: Callable[..., Host]) -> None:
    host = load_host("http_app", DEVHOST_MAX_REQUEST_BODY_BYTES="1024")
    answers: list[tuple[int, str]] = []

    async def chunks(total: int) -> AsyncIterator[bytes]:
        for _ in range(total // 512):
            yield b"x" * 512

    async def scenario(session: aiohttp.ClientSession, base: str) -> None:
        for body in (b"x" * 1024, b"x" * 1025, chunks(4096)):
            status, text, _ = await fetch(session, "POST", base + "/api/size", data=body)
            answers.append((status, text))

    serve(host, scenario)
    assert answers[0] == (200, "1024")
    assert answers[1][0] == 413 and "1024" in answers[1][1]
    assert answers[2][0] == 413  # chunked, no Content-Length: counted while reading


def test_exception_gives_generic_500_and_logs_the_traceback(
    http_host: Host, caplog: pytest.LogCaptureFixture
) -> None:
    answers: list[tuple[int, str]] = []

    async def scenario(session: aiohttp.ClientSession, base: str) -> None:
        for path in ("/api/boom", "/api/bad-return"):
            status, text, _ = await fetch(session, "GET", base + path)
            answers.append((status, text))

    with caplog.at_level(logging.INFO, logger="devhost"):
        serve(http_host, scenario)
    assert answers == [(500, "Internal Server Error"), (500, "Internal Server Error")]
    assert all("hunter2" not in text and "Traceback" not in text for _, text in answers)
    failed = [record for record in caplog.records if "Executed 'boom'" in record.getMessage()]
    assert len(failed) == 1 and "Failed: RuntimeError" in failed[0].getMessage()
    assert "hunter2" in caplog.text  # the traceback is in the log, not in the answer


def test_response_conversion_and_async_functions(http_host: Host) -> None:
    answers: dict[str, Any] = {}

    async def scenario(session: aiohttp.ClientSession, base: str) -> None:
        async with session.get(base + "/api/custom") as response:
            answers["custom"] = (response.status, await response.json(), response.headers)
        answers["async"] = await fetch(session, "GET", base + "/api/async-hello?name=Ada")
        answers["plain"] = await fetch(session, "GET", base + "/api/health")

    serve(http_host, scenario)
    status, body, headers = answers["custom"]
    assert (status, body) == (201, {"created": True})
    assert headers["X-Custom"] == "yes" and headers["Content-Type"] == "application/json"
    assert headers.getall("Set-Cookie") == ["a=1", "b=2"]
    assert answers["async"][:2] == (200, "hello Ada")
    assert answers["plain"][2]["Content-Type"] == "text/plain; charset=utf-8"


def test_queue_output_binding_from_http(
    load_host: Callable[..., Host], queues: Queues, unique: Callable[[str], str]
) -> None:
    output = unique("http-out")
    host = load_host("http_app", OUTPUT_QUEUE=output)
    statuses: list[int] = []

    async def scenario(session: aiohttp.ClientSession, base: str) -> None:
        status, _, _ = await fetch(session, "POST", base + "/api/enqueue", data="héllo")
        statuses.append(status)

    serve(host, scenario)
    assert statuses == [202]
    assert [base64.b64decode(text).decode() for text in queues.peek(output)] == ["héllo"]


def test_route_prefix_from_host_json(tmp_path: Path, load_host: Callable[..., Host]) -> None:
    app_dir = tmp_path / "app"
    shutil.copytree(APPS / "http_app", app_dir)
    (app_dir / "host.json").write_text(
        json.dumps({"version": "2.0", "extensions": {"http": {"routePrefix": ""}}})
    )
    host = load_host(app_dir)
    statuses: list[int] = []

    async def scenario(session: aiohttp.ClientSession, base: str) -> None:
        for path in ("/health", "/api/health"):
            status, _, _ = await fetch(session, "GET", base + path)
            statuses.append(status)

    serve(host, scenario)
    assert statuses == [200, 404]


def test_start_up_lists_functions_and_reports_unsupported_ones_once(
    http_host: Host, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(session: aiohttp.ClientSession, base: str) -> None:
        assert f"http_health: [GET] {base}/api/health" in caplog.text

    with caplog.at_level(logging.INFO, logger="devhost"):
        serve(http_host, scenario)
    messages = [record.getMessage() for record in caplog.records]
    unsupported = [message for message in messages if message.startswith("Not loaded")]
    assert len(unsupported) == 1
    assert "watch_blobs (blobTrigger" in unsupported[0] and "watch_events (eventHubTrigger" in unsupported[0]
    assert {item.name for item in http_host.skipped} == {"watch_blobs", "watch_events"}
    assert messages.index("Host started") > messages.index("Functions:")


def test_table_output_binding_inserts_an_entity(
    load_host: Callable[..., Host], azurite: Azurite, unique: Callable[[str], str]
) -> None:
    table = unique("rows").replace("-", "")
    host = load_host("http_app", TABLE_NAME=table)
    statuses: list[int] = []

    async def scenario(session: aiohttp.ClientSession, base: str) -> None:
        status, _, _ = await fetch(session, "PUT", base + "/api/rows/r1", data="v1")
        statuses.append(status)

    serve(host, scenario)
    assert statuses == [204]
    with TableClient.from_connection_string(azurite.connection_string, table) as client:
        entity = client.get_entity("sample", "r1")
    assert entity["value"] == "v1"
