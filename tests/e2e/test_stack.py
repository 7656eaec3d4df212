"""`make run`'s stack: Azurite + devhost + SWA come up, answer through SWA, and Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from devhost.azurite import free_port
from devhost.processes import REPO_ROOT, port_in_use


def descendants(pid: int) -> set[int]:
    """Every process whose ancestry includes `pid` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier} - found
        found |= children
        frontier = children
    return found


def session_members(session_ids: set[int]) -> set[int]:
    """Processes still alive in any of the given sessions (children started with their own session)."""
    alive = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) in session_ids:
                    alive.add(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
    return alive


def test_stack_starts_answers_through_swa_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(5)]
    storage, api_port, swa_port = ports[:3], ports[3], ports[4]
    command = [
        sys.executable,
        "-m",
        "devhost.stack",
        "--swa-port",
        str(swa_port),
        "--api-port",
        str(api_port),
        "--storage-ports",
        ",".join(map(str, storage)),
        "--data-dir",
        str(tmp_path),
    ]
    stack = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sessions: set[int] = set()
    try:
        assert stack.stdout is not None
        seen = b""
        while b"Loadbay is running at" not in seen:  # printed once /api/health answers through SWA
            line = stack.stdout.readline()
            assert line, f"the stack exited early:\n{seen.decode()}"
            seen += line
        me = requests.get(f"http://127.0.0.1:{swa_port}/api/me", timeout=30, allow_redirects=False)
        assert me.status_code == 302 and "/.auth/login/" in me.headers["Location"]
        children = descendants(stack.pid)
        sessions = {os.getsid(pid) for pid in children}
        assert len(children) >= 3  # Azurite, devhost, SWA (and SWA's own children)
        stack.send_signal(signal.SIGINT)
        output, _ = stack.communicate(timeout=60)
    finally:
        if stack.poll() is None:
            stack.kill()
    assert stack.returncode == 0, (seen + output).decode()
    assert b"Stopped Azurite, devhost and the SWA emulator" in output
    assert not session_members(sessions - {os.getsid(0)}), "a process of the stack outlived Ctrl-C"
    assert not [port for port in ports if port_in_use(port)]
    assert (tmp_path / "azurite").is_dir()  # disk mode: data survives restarts
