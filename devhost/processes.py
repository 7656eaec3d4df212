"""Child processes for the local stack: start in their own process group, wait for ports, stop by PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def node_tool(name: str) -> str:
    """Find a pinned npm tool (azurite, swa) in node_modules, installed by `npm ci --ignore-scripts`."""
    local = REPO_ROOT / "node_modules" / ".bin" / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed: run `npm ci --ignore-scripts` (make does it)")
    return found


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Tell whether something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((host, port)) == 0


def start(
    command: list[str],
    *,
    env: dict[str, str] | None = None,
    log_file: Path | None = None,
    cwd: Path | None = None,
    inherit_output: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a child in its own session, so stopping it also stops its children."""
    if log_file is None:
        output = None if inherit_output else subprocess.DEVNULL
        return subprocess.Popen(
            command, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    log_file.parent.mkdir(parents=True, exist_ok=True)
    # The child keeps its own copy of the descriptor; ours is closed as soon as it has started.
    with log_file.open("ab") as sink:
        return subprocess.Popen(
            command, env=env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes], *, grace: float = 15.0) -> int:
    """Stop a child and everything in its process group: SIGTERM, then SIGKILL after `grace` seconds."""
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
    # Children that outlived their leader (SWA's proxies) still share its process group.
    _signal_group(process, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _group_alive(process) and time.monotonic() < deadline:
        time.sleep(0.05)
    return process.returncode


def _group_alive(process: subprocess.Popen[bytes]) -> bool:
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def wait_for_url(
    url: str,
    *,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    expect: int = 200,
    headers: dict[str, str] | None = None,
) -> None:
    """Poll `url` until it answers with status `expect`; fail early if `process` exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} while waiting for {url}")
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=5) as answer:
                if answer.status == expect:
                    return
                last = f"HTTP {answer.status}"
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}"
            if error.code == expect:
                return
        except (urllib.error.URLError, OSError) as error:
            last = str(error)
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer {expect} within {timeout:.0f} s (last: {last})")
