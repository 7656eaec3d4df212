"""HTTP → queue → profile worker → tables, through a real devhost against Azurite."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient

from devhost.azurite import Azurite
from devhost.processes import REPO_ROOT, stop
from tests.e2e.conftest import Devhost, principal_header, start_devhost

ROWS = [
    ["id", "name", "amount", "joined"],
    ["1", "Ada", "3.5", "2024-01-02"],
    ["2", "Bob", "4", "2024-02-29"],
    ["3", "Cy", "", "2023-12-31"],
]


def delimited(delimiter: str, rows: list[list[str]] = ROWS, newline: str = "\n") -> str:
    return newline.join(delimiter.join(row) for row in rows) + newline


CASES: dict[str, tuple[bytes, dict[str, Any]]] = {
    "comma": (delimited(",").encode(), {"delimiter": ",", "encoding": "utf-8"}),
    "semicolon": (delimited(";").encode(), {"delimiter": ";", "encoding": "utf-8"}),
    "tab": (delimited("\t").encode(), {"delimiter": "\t", "encoding": "utf-8"}),
    "pipe": (delimited("|").encode(), {"delimiter": "|", "encoding": "utf-8"}),
    "utf8-bom": (b"\xef\xbb\xbf" + delimited(",").encode(), {"delimiter": ",", "encoding": "utf-8-sig"}),
    "utf16-le-bom": (
        delimited(";").encode("utf-16-le").join([b"\xff\xfe", b""]),
        {"delimiter": ";", "encoding": "utf-16-le"},
    ),
    "crlf": (delimited(",", newline="\r\n").encode(), {"delimiter": ",", "encoding": "utf-8"}),
    # Excel's first line naming the delimiter: no record, even for one no other file uses.
    "excel-sep-line": (
        b"\xef\xbb\xbfsep=#\r\n" + delimited("#", newline="\r\n").encode(),
        {"delimiter": "#", "encoding": "utf-8-sig", "sepLine": True},
    ),
}


def assert_typed_columns(body: dict[str, Any]) -> None:
    columns = {column["name"]: column for column in body["columns"]}
    assert [column["name"] for column in body["columns"]] == ROWS[0]
    assert columns["id"]["type"] == "integer"
    assert columns["name"]["type"] == "string"
    assert columns["amount"]["type"] == "number"
    assert columns["amount"]["nullCount"] == 1
    assert columns["joined"]["type"] == "date"
    assert columns["id"]["min"] == 1 and columns["id"]["max"] == 3


@pytest.mark.parametrize("case", sorted(CASES))
def test_inline_upload_is_profiled(devhost: Devhost, case: str) -> None:
    content, expected = CASES[case]
    api = devhost.api("alice")
    body = api.wait_for_upload(api.upload(content, f"{case}.csv"))
    assert body["status"] == "profiled", body
    assert body["fileName"] == f"{case}.csv"
    assert body["size"] == len(content)
    assert body["encoding"] == expected["encoding"]
    assert body["dialect"]["delimiter"] == expected["delimiter"]
    assert body["dialect"]["header"] is True
    assert body["dialect"]["sepLine"] is expected.get("sepLine", False)
    assert body["rowCount"] == 3
    assert body["preview"][0] == ROWS[1]
    assert_typed_columns(body)
    fields = body["inferredSchema"]["fields"]
    assert [(field["name"], field["type"]) for field in fields] == [
        ("id", "integer"),
        ("name", "string"),
        ("amount", "number"),
        ("joined", "date"),
    ]


def test_cp1252_with_accents(devhost: Devhost) -> None:
    content = "name;city;code\nZoë;Málaga;00501\nRenée;Besançon;00720\n".encode("cp1252")
    api = devhost.api()
    body = api.wait_for_upload(api.upload(content))
    assert body["status"] == "profiled", body
    assert body["encoding"] == "cp1252"
    assert body["dialect"]["delimiter"] == ";"
    assert body["preview"] == [["Zoë", "Málaga", "00501"], ["Renée", "Besançon", "00720"]]
    assert [column["type"] for column in body["columns"]] == ["string", "string", "string"]


def test_quoted_fields_with_delimiters_quotes_and_newlines(devhost: Devhost) -> None:
    content = b'id,comment\r\n1,"Hello, world"\r\n2,"She said ""hi"""\r\n3,"line one\r\nline two"\r\n'
    api = devhost.api()
    body = api.wait_for_upload(api.upload(content))
    assert body["status"] == "profiled", body
    assert body["rowCount"] == 3
    assert body["dialect"]["quoteChar"] == '"'
    assert [row[1] for row in body["preview"]] == ["Hello, world", 'She said "hi"', "line one\r\nline two"]


def test_header_only_file(devhost: Devhost) -> None:
    api = devhost.api()
    body = api.wait_for_upload(api.upload(b"id,name,email\n"))
    assert body["status"] == "profiled", body
    assert body["dialect"]["header"] is True
    assert body["rowCount"] == 0
    assert [column["name"] for column in body["columns"]] == ["id", "name", "email"]
    assert body["preview"] == []


def test_empty_file_fails_with_a_reason(devhost: Devhost) -> None:
    api = devhost.api()
    body = api.wait_for_upload(api.upload(b""))
    assert body["status"] == "failed"
    assert body["error"] == "The file is empty."


def test_valet_key_upload_then_commit(devhost: Devhost) -> None:
    api = devhost.api("carol")
    content = delimited(",").encode()
    created = api.post("/api/uploads", json={"fileName": "C:\\exports\\big.csv", "size": len(content)})
    assert created.status_code == 201, created.text
    ticket = created.json()
    assert created.headers["Location"] == f"/api/uploads/{ticket['id']}"
    assert ticket["status"] == "pending"
    assert ticket["maxBytes"] == 1024 * 1024 * 1024
    assert "sig=" in ticket["uploadUrl"] and "sp=cw" in ticket["uploadUrl"]

    early = api.post(f"/api/uploads/{ticket['id']}/commit")
    assert early.status_code == 409
    assert early.headers["Content-Type"].startswith("application/problem+json")

    put = requests.put(ticket["uploadUrl"], data=content, headers={"x-ms-blob-type": "BlockBlob"}, timeout=30)
    assert put.status_code == 201, put.text
    # The write-only URL cannot read the blob back.
    assert requests.get(ticket["uploadUrl"], timeout=30).status_code == 403

    committed = api.post(f"/api/uploads/{ticket['id']}/commit")
    assert committed.status_code == 202
    assert committed.headers["Location"] == f"/api/uploads/{ticket['id']}"
    again = api.post(f"/api/uploads/{ticket['id']}/commit")
    assert again.status_code == 202  # committing twice is harmless
    body = api.wait_for_upload(ticket["id"])
    assert body["status"] == "profiled", body
    assert body["fileName"] == "big.csv"
    assert_typed_columns(body)


def test_get_upload_honours_if_none_match(devhost: Devhost) -> None:
    api = devhost.api()
    upload_id = api.upload(delimited(","))
    api.wait_for_upload(upload_id)
    first = api.get(f"/api/uploads/{upload_id}")
    assert first.status_code == 200 and first.headers["ETag"]
    cached = api.get(f"/api/uploads/{upload_id}", headers={"If-None-Match": first.headers["ETag"]})
    assert cached.status_code == 304
    assert cached.content == b""


@pytest.mark.parametrize(
    ("request_kwargs", "status", "detail"),
    [
        ({"data": b"{nope", "headers": {"Content-Type": "application/json"}}, 400, "not valid JSON"),
        ({"json": [1, 2]}, 400, "JSON object"),
        ({"data": b"[" * 50_000, "headers": {"Content-Type": "application/json"}}, 400, "JSON"),
        ({"json": {"size": 10}}, 422, "fileName"),
        ({"json": {"fileName": "a.csv", "size": -1}}, 422, "size"),
        ({"json": {"fileName": "a.csv", "size": "12"}}, 422, "size"),
        ({"json": {"fileName": "a\x00.csv", "size": 1}}, 422, "control characters"),
        ({"json": {"fileName": "a.csv", "size": 5 * 1024**3}}, 413, "limit is 1,073,741,824 bytes"),
        ({"data": b"<xml/>", "headers": {"Content-Type": "application/xml"}}, 415, "application/xml"),
        ({"data": b"a" * (4 * 1024 * 1024 + 1), "headers": {"Content-Type": "text/csv"}}, 413, "4,194,304"),
    ],
)
def test_bad_upload_requests_get_clear_problems(
    devhost: Devhost, request_kwargs: dict[str, Any], status: int, detail: str
) -> None:
    answer = devhost.api().post("/api/uploads", **request_kwargs)
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["status"] == status
    assert detail in problem["detail"] or detail in json.dumps(problem.get("problems", []))


def test_uploads_belong_to_their_owner(devhost: Devhost) -> None:
    owner, stranger, admin = devhost.api("dora"), devhost.api("eve"), devhost.api("root", roles=("admin",))
    upload_id = owner.upload(delimited(","))
    for path in (f"/api/uploads/{upload_id}",):
        assert stranger.get(path).status_code == 404
        assert admin.get(path).status_code == 200
    assert stranger.post(f"/api/uploads/{upload_id}/commit").status_code == 404
    assert owner.get("/api/uploads/not-an-id").status_code == 404
    assert owner.get("/api/uploads/01aaaaaaaaaaaaaaaaaaaaaaaa").status_code == 404


def test_health_and_principal_shapes_direct_to_the_devhost(devhost: Devhost) -> None:
    assert requests.get(devhost.url + "/api/health", timeout=10).json() == {"status": "ok", "storage": "ok"}
    assert requests.get(devhost.url + "/api/me", timeout=10).status_code == 401

    swa = requests.get(
        devhost.url + "/api/me",
        headers={
            "x-ms-client-principal": principal_header("u-1", roles=("admin",), details="ada@example.com")
        },
        timeout=10,
    )
    assert swa.status_code == 200
    assert swa.json() == {
        "userId": "u-1",
        "userDetails": "ada@example.com",
        "identityProvider": "aad",
        "userRoles": ["admin", "authenticated"],
        "isAdmin": True,
    }

    app_service = base64.b64encode(
        json.dumps(
            {
                "auth_typ": "aad",
                "name_typ": "name",
                "role_typ": "roles",
                "claims": [
                    {"typ": "oid", "val": "o-2"},
                    {"typ": "name", "val": "Grace"},
                    {"typ": "roles", "val": "reader"},
                ],
            }
        ).encode()
    ).decode()
    answer = requests.get(devhost.url + "/api/me", headers={"x-ms-client-principal": app_service}, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["userId"] == "o-2" and answer.json()["userRoles"] == ["authenticated", "reader"]

    deep = base64.b64encode(b"[" * 3_000).decode()  # deeper than the JSON parser recurses
    assert (
        requests.get(devhost.url + "/api/me", headers={"x-ms-client-principal": deep}, timeout=10).status_code
        == 401
    )
    for malformed in ("%%%", base64.b64encode(b"[]").decode(), base64.b64encode(b'{"claims": 5}').decode()):
        bad = requests.get(devhost.url + "/api/me", headers={"x-ms-client-principal": malformed}, timeout=10)
        assert bad.status_code == 401
        assert bad.headers["Content-Type"].startswith("application/problem+json")


FAILING_APP = """
\"\"\"Loadbay with a profile step that always raises, to watch retries end in the poison queue.\"\"\"
import importlib.util

import core.uploads


def always_fails(**kwargs):
    raise RuntimeError("simulated outage")


core.uploads.profile_upload = always_fails
# This file is itself function_app.py, so load Loadbay's under another name.
spec = importlib.util.spec_from_file_location("loadbay_function_app", {path!r})
loadbay = importlib.util.module_from_spec(spec)
spec.loader.exec_module(loadbay)
app = loadbay.app
"""


def test_a_handler_that_always_raises_ends_in_poison(app_copy: Any, tmp_path: Path) -> None:
    app_dir = app_copy(FAILING_APP.format(path=str(REPO_ROOT / "function_app.py")))
    host_json = json.loads((app_dir / "host.json").read_text())
    host_json["extensions"]["queues"]["visibilityTimeout"] = "00:00:00"
    (app_dir / "host.json").write_text(json.dumps(host_json))
    # An Azurite of its own: the session's devhost would otherwise take these messages and succeed.
    with Azurite() as azurite:
        _watch_poison(azurite, app_dir, tmp_path)


def _watch_poison(azurite: Azurite, app_dir: Path, tmp_path: Path) -> None:
    host = start_devhost(app_dir, azurite, tmp_path / "devhost.log")
    try:
        api = host.api("frank")
        upload_id = api.upload(delimited(","))
        body = api.wait_for_upload(upload_id, timeout=90)
        poison = QueueClient.from_connection_string(azurite.connection_string, "profile-requests-poison")
        deadline = time.monotonic() + 30
        bodies: list[str] = []
        while time.monotonic() < deadline and not any(upload_id in text for text in bodies):
            bodies = [base64.b64decode(message.content).decode() for message in poison.peek_messages(32)]
            time.sleep(0.2)
    finally:
        assert stop(host.process) == 0
    assert body["status"] == "failed"
    assert body["error"] == (
        "Profiling failed after 5 attempts because of an internal error; "
        "the operators can look it up by the upload id."
    )
    assert any(json.loads(text)["id"] == upload_id for text in bodies)
    entity = (
        TableServiceClient.from_connection_string(azurite.connection_string)
        .get_table_client("uploads")
        .get_entity(upload_id, "upload")
    )
    assert entity["attempts"] == 5
    assert entity["lastError"] == "RuntimeError: simulated outage"
    log = (tmp_path / "devhost.log").read_text()
    assert log.count("profile_upload") >= 5


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/vnd.ms-excel", b"id,name\n1,a\n"),  # Windows registers it for .csv
        ("text/tab-separated-values", b"id\tname\n1\ta\n"),  # a .tsv file
    ],
)
def test_a_csv_body_sent_as_the_type_an_os_gives_its_file_is_stored(
    devhost: Devhost, content_type: str, body: bytes
) -> None:
    """Clients that send what the OS says a .csv or .tsv file is get through."""
    api = devhost.api("alice")
    answer = api.post(
        "/api/uploads", params={"fileName": "win.csv"}, data=body, headers={"Content-Type": content_type}
    )
    assert answer.status_code == 201, answer.text
    profiled = api.wait_for_upload(answer.json()["id"])
    assert profiled["status"] == "profiled"
    assert [column["name"] for column in profiled["columns"]] == ["id", "name"]
