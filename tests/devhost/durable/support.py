"""Drive the Durable sample apps over HTTP: starters and client calls go through the real SDK client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Any

import aiohttp

from devhost import Host

DURABLE_APPS = Path(__file__).resolve().parent / "apps"
CONFORMANCE = DURABLE_APPS / "conformance"
FINISHED = ("Completed", "Failed", "Terminated")
WEBHOOKS = "/runtime/webhooks/durabletask"


class Driver:
    """Start orchestrations and call the client through the app's HTTP functions; read status webhooks."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def start(self, name: str, value: Any = None, instance_id: str | None = None) -> dict[str, Any]:
        """Start through the app (client.start_new, create_check_status_response); return the payload."""
        path = f"/api/start/{name}" + (f"/{instance_id}" if instance_id else "")
        body = json.dumps(value).encode() if value is not None else b""
        async with self.session.post(self.base_url + path, data=body) as response:
            payload = await response.json(content_type=None)
            assert response.status == 202, payload
            assert response.headers["Location"] == payload["statusQueryGetUri"]
            return dict(payload)

    async def client(self, operation: str, **args: Any) -> tuple[int, Any]:
        """Call one DurableOrchestrationClient method inside the app; (200, result) or (409, {"error"})."""
        async with self.session.post(f"{self.base_url}/api/client/{operation}", json=args) as response:
            return response.status, await response.json(content_type=None)

    async def sdk_status(self, instance_id: str, *, history: bool = False) -> dict[str, Any]:
        """client.get_status(show_history, show_history_output) as JSON."""
        status, body = await self.client(
            "status", instance_id=instance_id, show_history=history, show_history_output=history
        )
        assert status == 200, body
        return dict(body)

    async def status(self, instance_id: str, **query: str) -> tuple[int, Any]:
        """GET the extension's status webhook for an instance."""
        url = f"{self.base_url}{WEBHOOKS}/instances/{instance_id}"
        async with self.session.get(url, params=query) as response:
            return response.status, await response.json(content_type=None)

    async def wait(
        self, instance_id: str, until: Collection[str] = FINISHED, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Poll the status webhook until the runtime status is one of `until`."""
        deadline = time.monotonic() + timeout
        body: Any = None
        while time.monotonic() < deadline:
            _, body = await self.status(instance_id)
            if isinstance(body, dict) and body.get("runtimeStatus") in until:
                return body
            await asyncio.sleep(0.05)
        raise AssertionError(f"instance {instance_id} never reached {until}: {body}")

    async def custom_is(self, instance_id: str, expected: Any) -> bool:
        """Say whether the instance's custom status (from the status webhook) is `expected`."""
        _, body = await self.status(instance_id)
        return isinstance(body, dict) and body.get("customStatus") == expected

    async def wait_for(self, check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
        """Poll an async condition."""
        deadline = time.monotonic() + timeout
        while not await check():
            if time.monotonic() > deadline:
                raise AssertionError("condition never became true")
            await asyncio.sleep(0.05)

    async def run(self, name: str, value: Any = None, *, timeout: float = 30.0) -> dict[str, Any]:
        """Start and wait until finished."""
        started = await self.start(name, value)
        return await self.wait(started["id"], timeout=timeout)


Scenario = Callable[[Driver], Awaitable[None]]


def serve(host: Host, scenario: Scenario) -> None:
    """Serve the host on a free port, run the scenario with a driver, stop the host."""

    async def main() -> None:
        async with host.serving(port=0), aiohttp.ClientSession() as session:
            await scenario(Driver(session, host.base_url))

    asyncio.run(main())


def events_of(status: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """History entries (from get_status(show_history=True)) of one event type."""
    return [event for event in status["history"] or [] if event["EventType"] == kind]


class DevhostProcess:
    """`python -m devhost` serving an app in a child process; stderr is collected line by line."""

    def __init__(self, app_dir: Path, port: int, env: dict[str, str]) -> None:
        import subprocess
        import sys
        import threading

        from devhost.processes import REPO_ROOT

        command = [sys.executable, "-m", "devhost", "--app-dir", str(app_dir), "--port", str(port)]
        self.port = port
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def count(self, text: str) -> int:
        """How many log lines contain `text`."""
        return sum(text in line for line in list(self.lines))

    def wait_for(self, text: str, count: int = 1, timeout: float = 60.0) -> None:
        """Wait until `count` log lines contain `text`."""
        deadline = time.monotonic() + timeout
        while self.count(text) < count:
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = "\n".join(self.lines[-50:])
                raise AssertionError(f"devhost never logged {text!r} x{count}:\n{log}")
            time.sleep(0.02)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM the child and wait for its exit code (and the last of its log)."""
        self.process.terminate()
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        """SIGKILL the child (by PID) and reap it."""
        self.process.kill()
        self.process.wait(timeout=10)

    def close(self) -> None:
        """Stop the child by PID if it still runs (SIGTERM, then SIGKILL), then release its pipe."""
        import subprocess

        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()
