"""Request bodies: what could not be stored and answered again is a 400; a key replays only its request."""

from __future__ import annotations

import base64
import json

import azure.functions as func
import pytest

from core.auth import PRINCIPAL_HEADER, Principal
from core.errors import BadRequest, UnsupportedMediaType
from core.ids import new_id
from core.ratelimit import RateLimiter
from core.runtime import Runtime
from core.settings import Settings
from core.storage import Storage
from http_api import responses
from http_api.responses import endpoint, json_response, media_type, read_json_object


def request(body: bytes) -> func.HttpRequest:
    headers = {"Content-Type": "application/json"}
    return func.HttpRequest("POST", "http://127.0.0.1/api/datasets", body=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"maximum": NaN}', "NaN is not a JSON number"),
        (b'{"maximum": Infinity}', "Infinity is not a JSON number"),
        (b'{"minimum": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"maximum": 1e999}', "1e999 is too large for a number"),
        (b'{"name": "\\ud800"}', "lone UTF-16 surrogate"),
        (b'{"name": "ok", "fields": [{"name": "\\udfff"}]}', "lone UTF-16 surrogate"),
        # json.loads decodes bytes with "surrogatepass": a surrogate written as raw bytes gets through too
        (b'{"name": "\xed\xa0\x80"}', "lone UTF-16 surrogate"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"name": ', "not valid JSON"),
    ],
)
def test_bodies_that_could_not_be_answered_again_are_refused(body: bytes, detail: str) -> None:
    with pytest.raises(BadRequest) as refused:
        read_json_object(request(body))
    assert refused.value.status == 400
    assert detail in refused.value.detail


def test_ordinary_bodies_are_read_as_they_are() -> None:
    body = b'{"name": "\\ud83d\\ude00 caf\\u00e9", "maximum": 1.5e300, "big": 100000000000000000000000}'
    assert read_json_object(request(body)) == {
        "name": "😀 café",
        "maximum": 1.5e300,
        "big": 100_000_000_000_000_000_000_000,
    }


@pytest.fixture
def idempotency_storage(storage_connection_string: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Claim Idempotency-Keys in the session's Azurite, with a rate limiter of this test's own."""
    settings = Settings.from_env({"AzureWebJobsStorage": storage_connection_string})
    storage = Storage.connect(settings.storage)
    storage.ensure_resources()
    monkeypatch.setattr(responses, "runtime", lambda: Runtime(settings=settings, storage=storage))
    monkeypatch.setattr(responses, "_rate_limiter", lambda: RateLimiter(settings.requests_per_minute))


@endpoint(idempotent=True, accepts=frozenset({"text/csv"}))
def create_upload(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Stand in for POST /uploads with a text/csv body: the answer depends on more than the body."""
    return json_response({"fileName": req.params.get("fileName"), "type": media_type(req)}, status=201)


def upload(user_id: str, key: str, file_name: str, content_type: str = "text/csv") -> func.HttpResponse:
    principal = base64.b64encode(json.dumps({"userId": user_id, "userDetails": "u"}).encode()).decode()
    return create_upload(
        func.HttpRequest(
            "POST",
            f"http://127.0.0.1/api/uploads?fileName={file_name}",
            body=b"a,b\n1,2\n",
            headers={PRINCIPAL_HEADER: principal, "Idempotency-Key": key, "Content-Type": content_type},
            params={"fileName": file_name},
        )
    )


@pytest.mark.usefixtures("idempotency_storage")
@pytest.mark.parametrize(
    ("file_name", "content_type"),
    [("second.csv", "text/csv"), ("first.csv", "text/csv; charset=windows-1252")],
    ids=["query string", "content type"],
)
def test_the_same_key_for_another_query_or_content_type_is_refused(file_name: str, content_type: str) -> None:
    user, key = new_id(), new_id()
    first = upload(user, key, "first.csv")
    assert first.status_code == 201 and json.loads(first.get_body())["fileName"] == "first.csv"
    repeat = upload(user, key, "first.csv")
    assert repeat.status_code == 201 and repeat.headers["Idempotent-Replayed"] == "true"
    other = upload(user, key, file_name, content_type)
    assert other.status_code == 422, other.get_body()
    assert "different request" in json.loads(other.get_body())["detail"]


@endpoint()
def decide(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Stand in for a POST that acts on what its URL names, with no body (approve, cancel, commit)."""
    return json_response({"done": principal.user_id}, status=202)


def sent(method: str, content_type: str | None, body: bytes = b"") -> func.HttpResponse:
    principal = base64.b64encode(json.dumps({"userId": "form-test", "userDetails": "u"}).encode()).decode()
    headers = {PRINCIPAL_HEADER: principal} | ({"Content-Type": content_type} if content_type else {})
    return decide(
        func.HttpRequest(method, "http://127.0.0.1/api/imports/x/approve", body=body, headers=headers)
    )


@pytest.mark.usefixtures("idempotency_storage")
@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain;charset=UTF-8"],
)
def test_a_request_only_a_form_of_another_site_could_send_acts_on_nothing(content_type: str) -> None:
    refused = sent("POST", content_type, b"a=1")
    assert refused.status_code == 415
    assert json.loads(refused.get_body())["detail"] == (
        f"Send JSON (Content-Type: application/json); got {content_type.split(';')[0]}."
    )
    assert sent("DELETE", content_type).status_code == 415
    assert sent("GET", content_type).status_code == 202  # reads change nothing


@pytest.mark.usefixtures("idempotency_storage")
def test_a_body_that_names_no_type_is_refused_as_a_blob_from_another_site_would_be() -> None:
    refused = sent("POST", None, b'{"a": 1}')
    assert refused.status_code == 415
    assert json.loads(refused.get_body())["detail"] == (
        "Send JSON (Content-Type: application/json); got a body of no type."
    )


@pytest.mark.usefixtures("idempotency_storage")
@pytest.mark.parametrize(
    ("content_type", "body"),
    [(None, b""), ("application/json", b"{}"), ("application/json; charset=utf-8", b"{}")],
)
def test_json_or_no_body_at_all_is_accepted(content_type: str | None, body: bytes) -> None:
    assert sent("POST", content_type, body).status_code == 202


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "text/csv", ""])
def test_a_json_body_sent_as_another_type_is_refused(content_type: str) -> None:
    sent_as = func.HttpRequest(
        "POST", "http://127.0.0.1/api/datasets", body=b'{"name": "x"}', headers={"Content-Type": content_type}
    )
    with pytest.raises(UnsupportedMediaType, match=f"got {content_type or 'a body of no type'}"):
        read_json_object(sent_as)
    sent_as_json = func.HttpRequest(
        "POST",
        "http://127.0.0.1/api/datasets",
        body=b'{"name": "x"}',
        headers={"Content-Type": "application/json"},
    )
    assert read_json_object(sent_as_json) == {"name": "x"}
