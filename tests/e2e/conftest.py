"""End-to-end fixtures: Loadbay served by a real devhost process against the session's Azurite."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from core.jobs import FINISHED
from devhost.azurite import Azurite, free_port
from devhost.processes import REPO_ROOT, start, stop, wait_for_url

OUTPUT_DIR = REPO_ROOT / "test-output"


def principal_header(user_id: str, *, roles: tuple[str, ...] = (), details: str | None = None) -> str:
    """Encode an SWA-shaped client principal, as SWA would send it to the API."""
    payload = {
        "identityProvider": "aad",
        "userId": user_id,
        "userDetails": details or f"{user_id}@example.com",
        "userRoles": ["anonymous", "authenticated", *roles],
    }
    return base64.b64encode(json.dumps(payload).encode()).decode()


@dataclass
class Api:
    """A tiny client for Loadbay's HTTP API, signed in as one user."""

    base_url: str
    user_id: str | None
    roles: tuple[str, ...] = ()

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.user_id is not None:
            headers["x-ms-client-principal"] = principal_header(self.user_id, roles=self.roles)
        return headers

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = self.headers(kwargs.pop("headers", None))
        return requests.request(method, self.base_url + path, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def profiled(self, content: bytes, file_name: str = "data.csv") -> str:
        """Upload a file inline, wait for its profile, and return its id."""
        upload_id = self.upload(content, file_name)
        assert self.wait_for_upload(upload_id)["status"] == "profiled"
        return upload_id

    def create_dataset(self, schema: dict[str, Any], name: str = "people") -> str:
        """Create a dataset with this Table Schema and return its id."""
        answer = self.post("/api/datasets", json={"name": name, "schema": schema})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def start_import(self, dataset_id: str, upload_id: str, **options: Any) -> str:
        """Start an import and return its id."""
        answer = self.post(f"/api/datasets/{dataset_id}/imports", json={"uploadId": upload_id, **options})
        assert answer.status_code == 202, answer.text
        assert answer.headers["Location"] == f"/api/imports/{answer.json()['id']}"
        return str(answer.json()["id"])

    def wait_for_import(
        self,
        job_id: str,
        statuses: Collection[str] = FINISHED,
        *,
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        """Poll an import until its status is one of `statuses`."""
        return self._wait(f"/api/imports/{job_id}", statuses, timeout)

    def wait_for_export(self, job_id: str, *, timeout: float = 60.0) -> dict[str, Any]:
        """Poll an export until it has finished."""
        return self._wait(f"/api/exports/{job_id}", ("completed", "failed"), timeout)

    def _wait(self, path: str, statuses: Collection[str], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            answer = self.get(path)
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            if body["status"] in statuses:
                return body
            ended = f"{path} ended {body['status']}, not {sorted(statuses)}: {body}"
            assert body["status"] not in FINISHED, ended
            assert time.monotonic() < deadline, f"{path} is still {body['status']}: {body}"
            time.sleep(0.2)

    def all_rows(self, dataset_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Read every row of a dataset, page by page."""
        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
            answer = self.get(f"/api/datasets/{dataset_id}/rows", params=params)
            assert answer.status_code == 200, answer.text
            found += answer.json()["items"]
            cursor = answer.json()["next"]
            if cursor is None:
                return found

    def upload(self, content: bytes, file_name: str = "data.csv") -> str:
        """Upload a small file inline and return its id."""
        answer = self.post(
            "/api/uploads", params={"fileName": file_name}, data=content, headers={"Content-Type": "text/csv"}
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def wait_for_upload(self, upload_id: str, *, timeout: float = 60.0) -> dict[str, Any]:
        """Poll an upload until profiling has finished (profiled or failed)."""
        deadline = time.monotonic() + timeout
        while True:
            body: dict[str, Any] = self.get(f"/api/uploads/{upload_id}").json()
            if body["status"] in ("profiled", "failed") or time.monotonic() > deadline:
                return body
            time.sleep(0.2)


@dataclass
class Devhost:
    """A running `python -m devhost` on a free port."""

    process: subprocess.Popen[bytes]
    url: str
    log_file: Path

    def api(self, user_id: str | None = "alice", roles: tuple[str, ...] = ()) -> Api:
        return Api(self.url, user_id, roles)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch_chromium(playwright: Any) -> Any:
    """Start Debian's Chromium headless for Playwright (never a downloaded browser build)."""
    return playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)


# Small chunks, so even small test files are split and cross-chunk behaviour is exercised everywhere; an
# export's slice ends after each page of rows, so exports of more than one page resume through the queue.
E2E_SETTINGS = {
    "LOADBAY_CHUNK_ROWS": "50",
    "LOADBAY_REQUESTS_PER_MINUTE": "100000",
    "LOADBAY_EXPORT_SLICE_SECONDS": "0",
}


def start_devhost(
    app_dir: Path, azurite: Azurite, log_file: Path, settings: dict[str, str] | None = None
) -> Devhost:
    """Start the devhost for `app_dir` against `azurite` and wait for its health endpoint."""
    port = free_port()
    env = {
        **os.environ,
        **E2E_SETTINGS,
        **(settings or {}),
        "AzureWebJobsStorage": azurite.connection_string,
        "PYTHONPATH": str(REPO_ROOT),
    }
    command = [sys.executable, "-m", "devhost", "--app-dir", str(app_dir), "--port", str(port)]
    process = start(command, env=env, log_file=log_file, cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_url(url + "/api/health", timeout=60, process=process)
    except (TimeoutError, RuntimeError):
        stop(process)
        raise RuntimeError(f"devhost did not start:\n{log_file.read_text(errors='replace')}") from None
    return Devhost(process, url, log_file)


@pytest.fixture(scope="session")
def devhost(azurite: Azurite) -> Iterator[Devhost]:
    """Loadbay itself, served by the devhost (HTTP + queue workers)."""
    OUTPUT_DIR.mkdir(exist_ok=True)
    host = start_devhost(REPO_ROOT, azurite, OUTPUT_DIR / "devhost-e2e.log")
    yield host
    assert stop(host.process) == 0, "devhost did not stop cleanly"


@pytest.fixture
def app_copy(tmp_path: Path) -> Callable[[str], Path]:
    """Make an app directory whose function_app.py is `source`, next to Loadbay's host.json."""

    def make(source: str) -> Path:
        shutil.copyfile(REPO_ROOT / "host.json", tmp_path / "host.json")
        (tmp_path / "function_app.py").write_text(source)
        return tmp_path

    return make
