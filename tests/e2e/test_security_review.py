"""Security review: principals, SAS URLs, settings secrets, answer headers; others' SAS via a devhost."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
import pytest
import requests
from azure.storage.blob import BlobSasPermissions

from core.auth import Principal, principal_from_header
from core.errors import Unauthorized
from core.settings import Settings, SettingsError, StorageConfig
from core.storage import EXPORTS_CONTAINER, UPLOADS_CONTAINER, Storage
from http_api.responses import endpoint, json_response
from tests.e2e.conftest import Devhost

KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def encode(payload: Any) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


def swa(user_id: Any, roles: list[str]) -> str:
    return encode({"identityProvider": "aad", "userId": user_id, "userDetails": "x", "userRoles": roles})


@pytest.fixture(scope="module")
def storage(storage_connection_string: str) -> Storage:
    connected = Storage.connect(StorageConfig(connection_string=storage_connection_string))
    connected.ensure_resources()
    return connected


# --- principals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("roles", [["anonymous"], ["Anonymous"], ["anonymous", "admin"]])
def test_a_principal_swa_marks_anonymous_is_not_signed_in(roles: list[str]) -> None:
    with pytest.raises(Unauthorized):
        principal_from_header(swa("u-1", roles))


@pytest.mark.parametrize("user_id", ["a\nb", "a\r\nX-Injected: 1", "a\x00b", "a\u200bb", "u" * 513])
def test_user_ids_no_identity_provider_gives_are_refused(user_id: str) -> None:
    with pytest.raises(Unauthorized, match="user id"):
        principal_from_header(swa(user_id, ["anonymous", "authenticated"]))


def test_real_ids_and_signed_in_principals_still_work() -> None:
    real = ("d1f1c0a2b3c4d5e6f708192a3b4c5d6e", "7f0e6a55-1c7e-4ef0-9a1c-3d2f4e5a6b7c", "001234.ab.1234")
    for user_id in real:
        assert principal_from_header(swa(user_id, ["anonymous", "authenticated"])).user_id == user_id
    assert principal_from_header(swa("u-1", [])).user_id == "u-1"  # no roles at all: still signed in
    assert principal_from_header(swa("u" * 512, ["authenticated"])).user_id == "u" * 512


def test_nothing_but_an_exact_admin_role_makes_an_admin() -> None:
    # Only a role the platform grants counts, spelled exactly; names, details or providers never do.
    spoofs = [
        swa("u-1", ["anonymous", "authenticated", "Admin"]),
        swa("u-1", ["anonymous", "authenticated", " ADMIN "]),
        encode({"identityProvider": "admin", "userId": "admin", "userDetails": "admin", "userRoles": []}),
        encode(
            {
                "auth_typ": "aad",
                "claims": [
                    {"typ": "oid", "val": "u-1"},
                    {"typ": "name", "val": "admin"},
                    {"typ": "groups", "val": "admin"},
                ],
            }
        ),
    ]
    for header in spoofs:
        assert not principal_from_header(header).is_admin


# --- SAS URLs ---------------------------------------------------------------------------------------


def sas_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def test_a_key_signed_url_for_a_real_account_works_over_https_only() -> None:
    storage = Storage.connect(
        StorageConfig(
            connection_string=(
                f"DefaultEndpointsProtocol=https;AccountName=loadbaytest;AccountKey={KEY};"
                "EndpointSuffix=core.windows.net"
            )
        )
    )
    url, _ = storage.blob_sas_url(UPLOADS_CONTAINER, "u1", BlobSasPermissions(create=True, write=True), 15)
    assert url.startswith("https://")
    assert sas_of(url).get("spr") == "https"


def test_upload_url_writes_one_blob_only_for_a_short_time(storage: Storage) -> None:
    url, expires = storage.blob_sas_url(
        UPLOADS_CONTAINER, "sec-review-up", BlobSasPermissions(create=True, write=True), 15
    )
    sas = sas_of(url)
    assert (sas["sr"], sas["sp"]) == ("b", "cw")
    start = datetime.fromisoformat(sas["st"].replace("Z", "+00:00"))
    now = datetime.now(UTC)
    assert now - timedelta(minutes=6) < start <= now
    assert expires - now <= timedelta(minutes=15)
    put = {"x-ms-blob-type": "BlockBlob"}
    assert requests.put(url, data=b"a,b\n", headers=put, timeout=10).status_code == 201
    assert requests.get(url, timeout=10).status_code == 403  # write-only
    assert requests.delete(url, timeout=10).status_code == 403
    other = url.replace("/sec-review-up?", "/sec-review-other?")
    assert requests.put(other, data=b"x", headers=put, timeout=10).status_code == 403  # one blob
    container = url.split("/sec-review-up?")[0] + "?restype=container&comp=list&" + urlsplit(url).query
    assert requests.get(container, timeout=10).status_code == 403


def test_download_url_reads_one_blob_as_an_attachment(storage: Storage) -> None:
    storage.blobs.get_blob_client(EXPORTS_CONTAINER, "sec-review.csv").upload_blob(b"a\n1\n", overwrite=True)
    url, _ = storage.blob_sas_url(
        EXPORTS_CONTAINER,
        "sec-review.csv",
        BlobSasPermissions(read=True),
        15,
        content_disposition='attachment; filename="people-1.csv"',
    )
    assert (sas_of(url)["sr"], sas_of(url)["sp"]) == ("b", "r")
    answer = requests.get(url, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Disposition"] == 'attachment; filename="people-1.csv"'
    put = {"x-ms-blob-type": "BlockBlob"}
    assert requests.put(url, data=b"x", headers=put, timeout=10).status_code == 403
    other = url.replace("/sec-review.csv?", "/other.csv?")
    assert requests.get(other, timeout=10).status_code == 403


# --- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["<your-account-key>", "changeme", "xxx", "REPLACE_ME", "a2V5"])
def test_a_placeholder_account_key_stops_start_up_without_echoing_it(key: str) -> None:
    environ = {"AzureWebJobsStorage": f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={key};"}
    with pytest.raises(SettingsError, match="AccountKey") as raised:
        Settings.from_env(environ)
    assert key not in str(raised.value)


def test_a_real_account_key_is_accepted() -> None:
    environ = {"AzureWebJobsStorage": f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};"}
    assert Settings.from_env(environ).storage.connection_string


# --- answer headers ----------------------------------------------------------------------------------


def request(headers: dict[str, str] | None = None) -> func.HttpRequest:
    return func.HttpRequest("GET", "http://127.0.0.1/api/probe", headers=headers or {}, body=b"")


def bare(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    return func.HttpResponse("a,b\n", status_code=200, mimetype="text/csv")


def tagged(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    return json_response({"ok": True}, version="etag-1")


def test_every_api_answer_is_nosniff_and_not_cached() -> None:
    answers = [
        endpoint(anonymous=True)(bare)(request()),  # a handler that set no headers
        endpoint()(bare)(request()),  # 401 problem
        endpoint()(bare)(request({"x-ms-client-principal": "!!"})),  # 401 malformed
    ]
    for answer in answers:
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Cache-Control"] == "no-store"
    revalidated = endpoint(anonymous=True)(tagged)(request())
    assert revalidated.headers["X-Content-Type-Options"] == "nosniff"
    assert revalidated.headers["Cache-Control"] == "private, no-cache"  # a handler's choice is kept


# --- through a devhost ------------------------------------------------------------------------------


def test_no_user_gets_a_sas_for_another_users_upload_and_answers_are_nosniff(devhost: Devhost) -> None:
    alice, mallory = devhost.api("sec-alice"), devhost.api("sec-mallory")
    created = alice.post("/api/uploads", json={"fileName": "a.csv", "size": 4})
    assert created.status_code == 201, created.text
    assert created.headers["X-Content-Type-Options"] == "nosniff"
    upload_id = created.json()["id"]
    for path in (f"/api/uploads/{upload_id}", f"/api/uploads/{upload_id}/commit"):
        method = mallory.post if path.endswith("commit") else mallory.get
        answer = method(path)
        assert answer.status_code == 404, answer.text
        assert "sig=" not in answer.text
    me = mallory.get("/api/me")
    assert me.status_code == 200
    assert me.headers["X-Content-Type-Options"] == "nosniff"
    assert me.headers["Cache-Control"] == "no-store"
    assert "sig=" not in devhost.log()


def test_no_user_gets_another_users_export_download_url(devhost: Devhost) -> None:
    alice, mallory = devhost.api("sec-alice"), devhost.api("sec-mallory")
    dataset_id = alice.create_dataset({"fields": [{"name": "a", "type": "string"}]}, name="secreview")
    started = alice.post(f"/api/datasets/{dataset_id}/exports", json={})
    assert started.status_code == 202, started.text
    export_id = started.json()["id"]
    assert alice.wait_for_export(export_id)["status"] == "completed"
    assert "sig=" in alice.get(f"/api/exports/{export_id}").json()["downloadUrl"]
    answer = mallory.get(f"/api/exports/{export_id}")
    assert answer.status_code == 404, answer.text
    assert "sig=" not in answer.text
    assert "sig=" not in devhost.log()


def test_what_a_form_on_another_site_could_send_changes_nothing(devhost: Devhost) -> None:
    alice = devhost.api("sec-form")
    dataset_id = alice.create_dataset({"fields": [{"name": "a", "type": "string"}]}, name="formtarget")
    schema = json.dumps({"name": "forged", "schema": {"fields": [{"name": "a"}]}})
    forms = [  # what a cross-site form, or a fetch the browser sends without asking leave, can send
        {"data": {"x": schema}},
        {"files": {"x": ("x", schema)}},
        {"data": schema, "headers": {"Content-Type": "text/plain"}},
        {"data": schema.encode()},  # a Blob body names no type
    ]
    for form in forms:
        for path in ("/api/datasets", f"/api/datasets/{dataset_id}/exports"):
            answer = alice.post(path, **form)
            assert answer.status_code == 415, (path, answer.text)
            assert "Send JSON (Content-Type: application/json)" in answer.json()["detail"]
        deleted = alice.delete(f"/api/datasets/{dataset_id}", **form)
        assert deleted.status_code == 415, deleted.text
    inline = alice.post("/api/uploads", data=b"a,b\n1,2\n", headers={"Content-Type": "text/plain"})
    assert inline.status_code == 415, inline.text  # not even an upload
    names = [item["name"] for item in alice.get("/api/datasets").json()["items"]]
    assert names == ["formtarget"]
    assert alice.get(f"/api/datasets/{dataset_id}/imports").json()["items"] == []
    assert alice.get(f"/api/datasets/{dataset_id}").json()["status"] == "active"
