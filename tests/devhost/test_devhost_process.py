"""`python -m devhost` as a real subprocess: HTTP, graceful SIGTERM with work in flight, --burst."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from devhost.azurite import Azurite, free_port
from devhost.processes import REPO_ROOT
from tests.devhost.support import APPS, Queues

APP = APPS / "shutdown_app"


class DevhostProcess:
    """A devhost child process whose stderr is collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "devhost", "--app-dir", str(APP), *args]
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        """Wait until a log line contains `text`."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"devhost never logged {text!r}:\n{self.log}")
            time.sleep(0.05)

    def terminate(self, timeout: float = 20.0) -> int:
        """Send SIGTERM and wait for the exit code."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def close(self) -> None:
        """Kill the child by PID if it is still running, then release its pipe."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()


@pytest.fixture
def start_devhost(azurite: Azurite) -> Iterator[Callable[..., DevhostProcess]]:
    """Start devhost subprocesses for the shutdown_app; any still running at teardown are killed by PID."""
    started: list[DevhostProcess] = []

    def start(*args: str, **settings: str) -> DevhostProcess:
        env = {**os.environ, "AzureWebJobsStorage": azurite.connection_string, **settings}
        child = DevhostProcess(list(args), env)
        started.append(child)
        return child

    yield start
    for child in started:
        child.close()


@pytest.fixture
def names(unique: Callable[[str], str]) -> dict[str, str]:
    return {"SLOW_QUEUE": unique("slow"), "DONE_QUEUE": unique("done")}


def test_serves_http_then_stops_on_sigterm_with_exit_0_and_no_children(
    start_devhost: Callable[..., DevhostProcess], names: dict[str, str]
) -> None:
    port = free_port()
    devhost = start_devhost("--port", str(port), **names)
    devhost.wait_for("Host started")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=10) as response:
        assert (response.status, response.read()) == (200, b"ok")
    assert f"http_health: [GET] http://127.0.0.1:{port}/api/health" in devhost.log
    children = psutil.Process(devhost.process.pid).children(recursive=True)
    assert devhost.terminate() == 0
    assert not [child for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
    assert "Host stopped" in devhost.log
    assert "Executed 'http_health' (http," in devhost.log


def test_sigterm_lets_the_invocation_in_flight_finish_and_deletes_its_message(
    start_devhost: Callable[..., DevhostProcess], queues: Queues, names: dict[str, str]
) -> None:
    devhost = start_devhost("--port", str(free_port()), SLOW_SECONDS="2", **names)
    devhost.wait_for("Host started")
    queues.send(names["SLOW_QUEUE"], b"first")
    devhost.wait_for("slow_worker started first")
    assert devhost.terminate() == 0
    stopping = next(index for index, line in enumerate(devhost.lines) if "Stopping" in line)
    executed = next(index for index, line in enumerate(devhost.lines) if "Executed 'slow_worker'" in line)
    assert stopping < executed and "Succeeded" in devhost.lines[executed]
    assert queues.count(names["SLOW_QUEUE"]) == 0
    assert queues.count(names["DONE_QUEUE"]) == 1


def test_an_invocation_cut_off_by_the_grace_period_leaves_its_message_queued(
    start_devhost: Callable[..., DevhostProcess], queues: Queues, names: dict[str, str]
) -> None:
    devhost = start_devhost("--port", str(free_port()), "--grace-period", "0.5", SLOW_SECONDS="30", **names)
    devhost.wait_for("Host started")
    sent = queues.send(names["SLOW_QUEUE"], b"unfinished")
    devhost.wait_for("slow_worker started unfinished")
    began = time.monotonic()
    assert devhost.terminate() == 0
    assert time.monotonic() - began < 10  # a stuck synchronous function does not hold the process
    assert queues.peek(names["SLOW_QUEUE"]) == [sent.content]  # released at once, not lost
    assert "Abandoning" in devhost.log
    assert queues.count(names["DONE_QUEUE"]) == 0


def test_burst_mode_drains_and_exits_0(azurite: Azurite, queues: Queues, names: dict[str, str]) -> None:
    for body in (b"a", b"b", b"c"):
        queues.send(names["SLOW_QUEUE"], body)
    env = {**os.environ, "AzureWebJobsStorage": azurite.connection_string, "SLOW_SECONDS": "0", **names}
    finished = subprocess.run(
        [sys.executable, "-m", "devhost", "--app-dir", str(APP), "--burst"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    assert "Host started (burst)" in finished.stderr
    assert "Burst finished: 3 invocations, 0 failed" in finished.stderr
    assert queues.count(names["SLOW_QUEUE"]) == 0
    assert sorted(queues.peek(names["DONE_QUEUE"])) == ["YQ==", "Yg==", "Yw=="]


def test_bad_configuration_exits_non_zero_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text('{"version": "2.0", "extensions": {"queues": {"batchSize": 64}}}')
    (tmp_path / "function_app.py").write_text("import azure.functions as func\napp = func.FunctionApp()\n")
    finished = subprocess.run(
        [sys.executable, "-m", "devhost", "--app-dir", str(tmp_path), "--burst"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert finished.returncode == 2
    assert "batchSize" in finished.stderr and "Traceback" not in finished.stderr
