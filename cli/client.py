"""Loadbay's HTTP API for the command line: sign-in, JSON calls, problems, waiting, files.

Sign-in, in this order:
- ``LOADBAY_CLIENT_ID`` set: an Entra ID app's client credentials (``LOADBAY_TENANT_ID``,
  ``LOADBAY_CLIENT_SECRET``, ``LOADBAY_SCOPE``, optional ``LOADBAY_AUTHORITY``) get a bearer token
  from msal; App Service Authentication in front of the Function App checks it.
- Otherwise ``--user`` / ``LOADBAY_USER``: the devhost has nothing in front of it, so the client
  sends the principal itself, as SWA would (local development only: Azure drops such a header).
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Final
from urllib.parse import quote

import msal
import requests

TIMEOUT: Final = 60  # seconds for one HTTP request
BLOCK_BYTES: Final = 8 * 1024 * 1024  # files above this go up in blocks, as Azure's own tools send them
ENTRA: Final = "https://login.microsoftonline.com/"
ENDED: Final = frozenset({"completed", "failed", "rejected", "cancelled", "expired"})


class CliError(Exception):
    """Something the person running the command should read; the command exits with status 1."""


class ApiError(CliError):
    """A problem answer (RFC 9457) from the API, with each listed problem on a line of its own."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        lines = [f"{status} {problem.get('title') or 'error'}: {problem.get('detail') or ''}".rstrip(": ")]
        lines += [
            f"  {item.get('field') or '-'}: {item.get('message') or item.get('code')}"
            for item in problem.get("problems") or []
            if isinstance(item, Mapping)
        ]
        super().__init__("\n".join(lines))
        self.status = status


def sign_in_headers(user: str | None, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Return the headers that sign requests in (see the module's docstring)."""
    client_id = environ.get("LOADBAY_CLIENT_ID")
    if client_id:
        return {"Authorization": f"Bearer {_client_token(client_id, environ)}"}
    if user:
        principal = {
            "identityProvider": "loadbay-cli",
            "userId": user,
            "userDetails": user,
            "userRoles": ["anonymous", "authenticated"],
        }
        return {"x-ms-client-principal": base64.b64encode(json.dumps(principal).encode()).decode()}
    raise CliError(
        "Sign in: set LOADBAY_CLIENT_ID (with its tenant, secret and scope), or --user for a devhost."
    )


def _client_token(client_id: str, environ: Mapping[str, str]) -> str:
    missing = [name for name in ("LOADBAY_CLIENT_SECRET", "LOADBAY_SCOPE") if not environ.get(name)]
    tenant = environ.get("LOADBAY_TENANT_ID")
    authority = environ.get("LOADBAY_AUTHORITY") or (f"{ENTRA}{tenant}" if tenant else "")
    if not authority:
        missing.append("LOADBAY_TENANT_ID")
    if missing:
        raise CliError(f"LOADBAY_CLIENT_ID is set, so these are needed too: {', '.join(missing)}.")
    try:
        app = msal.ConfidentialClientApplication(
            client_id,
            authority=authority,
            client_credential=environ["LOADBAY_CLIENT_SECRET"],
            # Another authority (a sovereign cloud's, a test's own) is taken as given.
            validate_authority=authority.startswith(ENTRA),
        )
        result = app.acquire_token_for_client(scopes=[environ["LOADBAY_SCOPE"]])
    except (ValueError, requests.RequestException) as error:  # msal reads the authority's metadata
        raise CliError(f"Sign-in failed: {error}") from None
    if "access_token" not in result:
        raise CliError(f"Sign-in failed: {result.get('error')}: {result.get('error_description')}")
    return str(result["access_token"])


class Client:
    """Calls the API under `base_url` (ending in /api) with the sign-in headers."""

    def __init__(self, base_url: str, headers: Mapping[str, str], *, poll_seconds: float = 0.5) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(headers)
        self.poll_seconds = poll_seconds

    def call(self, method: str, path: str, **options: Any) -> Any:
        """Send a request and return its JSON answer; ApiError for a problem answer."""
        try:
            answer = self.session.request(method, self.base_url + path, timeout=TIMEOUT, **options)
        except requests.RequestException as error:
            raise CliError(f"Could not reach {self.base_url}: {error}") from None
        if answer.status_code >= 400:
            try:
                problem = answer.json()
            except ValueError:
                problem = {"title": answer.reason, "detail": answer.text[:500]}
            raise ApiError(answer.status_code, problem if isinstance(problem, Mapping) else {})
        return answer.json() if answer.content else None

    def pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Yield the items of a paged list, following its `next` cursors."""
        cursor = None
        while True:
            page = self.call("GET", path, params={**params, **({"cursor": cursor} if cursor else {})})
            yield from page["items"]
            cursor = page.get("next")
            if not cursor:
                return

    def wait(self, path: str, statuses: Collection[str], *, timeout: float) -> dict[str, Any]:
        """Poll `path` until its status is one of `statuses` (or has ended); CliError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            body: dict[str, Any] = self.call("GET", path)
            if body["status"] in statuses or body["status"] in ENDED:
                return body
            if time.monotonic() > deadline:
                raise CliError(f"Still {body['status']} after {timeout:g} seconds: {path}")
            time.sleep(self.poll_seconds)

    def upload(self, file: Path, *, timeout: float) -> dict[str, Any]:
        """Send a file through its upload URL, commit it and wait for its profile; return the upload."""
        size = file.stat().st_size
        ticket = self.call("POST", "/uploads", json={"fileName": file.name, "size": size})
        with file.open("rb") as data:
            _put_blob(ticket["uploadUrl"], data, size)
        self.call("POST", f"/uploads/{ticket['id']}/commit")
        upload = self.wait(f"/uploads/{ticket['id']}", ("profiled", "failed"), timeout=timeout)
        if upload["status"] != "profiled":
            raise CliError(f"Profiling {file.name} failed: {upload.get('error')}")
        return upload

    def download(self, url: str, target: BinaryIO) -> int:
        """Copy a (SAS) download URL's content into `target`; return the bytes written."""
        written = 0
        with requests.get(url, stream=True, timeout=TIMEOUT) as answer:
            if answer.status_code != 200:
                raise CliError(f"Download failed: {answer.status_code} {answer.reason}")
            for piece in answer.iter_content(1024 * 1024):
                written += target.write(piece)
        return written


def path_part(value: str) -> str:
    """Quote an id or key for a URL path (a key may hold "/", "?", "#" or "%")."""
    return quote(value, safe="")


def _put_blob(upload_url: str, data: BinaryIO, size: int) -> None:
    """Put the file at its SAS URL: one Put Blob when small, else Put Block each 8 MiB and Put Block List."""
    if size <= BLOCK_BYTES:
        _sent(
            requests.put(upload_url, data=data.read(), headers={"x-ms-blob-type": "BlockBlob"}, timeout=300)
        )
        return
    block_ids: list[str] = []
    while piece := data.read(BLOCK_BYTES):
        block_id = base64.b64encode(f"block-{len(block_ids):08d}".encode()).decode()
        _sent(
            requests.put(
                f"{upload_url}&comp=block&blockid={quote(block_id, safe='')}", data=piece, timeout=300
            )
        )
        block_ids.append(block_id)
    latest = "".join(f"<Latest>{block_id}</Latest>" for block_id in block_ids)
    body = f'<?xml version="1.0" encoding="utf-8"?><BlockList>{latest}</BlockList>'
    _sent(requests.put(f"{upload_url}&comp=blocklist", data=body.encode(), timeout=300))


def _sent(answer: requests.Response) -> None:
    if answer.status_code >= 300:
        raise CliError(f"Uploading the file failed: {answer.status_code} {answer.text[:300]}")
