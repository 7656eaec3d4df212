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

TIMEOUT: Final = 60  # seconds for one API request
BLOB_TIMEOUT: Final = 300  # seconds for one request to Blob Storage (a block of up to 8 MiB)
BLOCK_BYTES: Final = 8 * 1024 * 1024  # files above this go up in blocks, as Azure's own tools send them
PIECE_BYTES: Final = 1024 * 1024  # a download is written a piece at a time
MAX_POLL_SECONDS: Final = 5.0  # waiting backs off from poll_seconds to this
RATE_LIMITED_TRIES: Final = 6
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
    authority = environ.get("LOADBAY_AUTHORITY") or (f"{ENTRA}{quote(tenant, safe='')}" if tenant else "")
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
    except (ValueError, AttributeError, requests.RequestException, msal.exceptions.MsalError) as error:
        raise CliError(f"Sign-in failed: {error}") from None  # (msal reads whatever the authority answers)
    token = result.get("access_token")
    if not isinstance(token, str) or not token:
        reason = (
            f"{result.get('error')}: {result.get('error_description')}" if result.get("error") else "no token"
        )
        raise CliError(f"Sign-in failed: {reason}")
    return token


class Client:
    """Calls the API under `base_url` (ending in /api) with the sign-in headers."""

    def __init__(self, base_url: str, headers: Mapping[str, str], *, poll_seconds: float = 0.5) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(headers)
        self.poll_seconds = poll_seconds

    def call(self, method: str, path: str, **options: Any) -> Any:
        """Send a request and return its JSON answer; ApiError for a problem answer."""
        answer = self.fetch(method, path, **options)
        if not answer.content:
            return None
        try:
            return answer.json()
        except ValueError:
            kind = answer.headers.get("Content-Type") or "no content type"
            raise CliError(
                f"{answer.url} answered {answer.status_code} with {kind}, not JSON: is --api right?"
            ) from None

    def fetch(self, method: str, path: str, **options: Any) -> requests.Response:
        """Send a request and return its successful answer. A 429 is waited out (the API counts requests
        per user and says when to come back: nothing was done); any other problem is an ApiError."""
        for _ in range(RATE_LIMITED_TRIES):
            try:
                answer = self.session.request(method, self.base_url + path, timeout=TIMEOUT, **options)
            except requests.RequestException as error:
                raise CliError(f"Could not reach {self.base_url}: {type(error).__name__}") from None
            if answer.status_code != 429:
                break
            time.sleep(min(float(answer.headers.get("Retry-After") or 1), MAX_POLL_SECONDS))
        if answer.status_code >= 400:
            raise ApiError(answer.status_code, _problem(answer))
        return answer

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
        """Poll `path`, backing off, until its status is one of `statuses` or has ended.

        CliError after `timeout` seconds; the work itself goes on.
        """
        deadline = time.monotonic() + timeout
        pause = self.poll_seconds
        while True:
            body: dict[str, Any] = self.call("GET", path)
            if body["status"] in statuses or body["status"] in ENDED:
                return body
            if time.monotonic() > deadline:
                raise CliError(f"Still {body['status']} after {timeout:g} seconds; it goes on: GET {path}")
            time.sleep(pause)
            pause = min(pause * 1.5, MAX_POLL_SECONDS)

    def upload(self, file: Path, *, timeout: float) -> dict[str, Any]:
        """Send a file through its upload URL, commit it and wait for its profile; return the upload."""
        size = file.stat().st_size
        ticket = self.call("POST", "/uploads", json={"fileName": file.name, "size": size})
        with file.open("rb") as source:
            put_blob(ticket["uploadUrl"], source, size)
        self.call("POST", f"/uploads/{ticket['id']}/commit")
        upload = self.wait(f"/uploads/{ticket['id']}", ("profiled", "failed"), timeout=timeout)
        if upload["status"] != "profiled":
            raise CliError(f"Profiling {file.name} failed: {upload.get('error')}")
        return upload

    def download(self, url: str, target: Path) -> int:
        """Copy a (SAS) download URL's content to `target`, whole or not at all; return its size."""
        partial = target.with_name(f".{target.name}.part")
        try:
            with requests.get(url, stream=True, timeout=TIMEOUT) as answer, partial.open("wb") as copy:
                if answer.status_code != 200:
                    raise CliError(f"Download failed: {answer.status_code} {answer.reason}")
                for piece in answer.iter_content(PIECE_BYTES):
                    copy.write(piece)
            size = partial.stat().st_size
            expected = answer.headers.get("Content-Length")
            if expected is not None and int(expected) != size:
                raise CliError(f"Download failed: {size:,} of {int(expected):,} bytes arrived")
            partial.replace(target)
            return size
        except requests.RequestException as error:  # its message would show the URL's signature
            raise CliError(f"Download failed: {type(error).__name__}") from None
        finally:
            partial.unlink(missing_ok=True)


def path_part(value: str) -> str:
    """Quote an id or key for a URL path: a key may hold "/", "?", "#" or "%", or be "." or ".."."""
    return quote(value, safe="").replace(".", "%2E")  # clients drop "." and ".." path segments


def put_blob(upload_url: str, source: BinaryIO, size: int) -> None:
    """Put a file at its SAS URL: one Put Blob when small, else Put Block each 8 MiB and Put Block List."""
    if size <= BLOCK_BYTES:
        _put(upload_url, source.read(), {"x-ms-blob-type": "BlockBlob"})
        return
    block_ids: list[str] = []
    while piece := source.read(BLOCK_BYTES):
        block_id = base64.b64encode(f"block-{len(block_ids):08d}".encode()).decode()
        _put(f"{upload_url}&comp=block&blockid={quote(block_id, safe='')}", piece)
        block_ids.append(block_id)
    latest = "".join(f"<Latest>{block_id}</Latest>" for block_id in block_ids)
    _put(
        f"{upload_url}&comp=blocklist",
        f'<?xml version="1.0" encoding="utf-8"?><BlockList>{latest}</BlockList>'.encode(),
    )


def _put(url: str, body: bytes, headers: Mapping[str, str] | None = None) -> None:
    try:
        answer = requests.put(url, data=body, headers=headers, timeout=BLOB_TIMEOUT)
    except requests.RequestException as error:  # its message would show the URL's signature
        raise CliError(f"Uploading the file failed: {type(error).__name__}") from None
    if answer.status_code >= 300:
        raise CliError(f"Uploading the file failed: {answer.status_code} {answer.reason}")


def _problem(answer: requests.Response) -> Mapping[str, Any]:
    """Read a problem answer; a body that is not a JSON object (a proxy's HTML page) becomes its reason."""
    try:
        problem = answer.json()
    except ValueError:
        problem = None
    return problem if isinstance(problem, Mapping) else {"title": answer.reason}
