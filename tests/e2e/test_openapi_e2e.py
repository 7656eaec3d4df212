"""The OpenAPI document through the devhost: public, versioned with an ETag, revalidated with a 304."""

from __future__ import annotations

from tests.e2e.conftest import Devhost


def test_the_openapi_document_is_public_and_revalidates(devhost: Devhost) -> None:
    anonymous = devhost.api(None)
    answer = anonymous.get("/api/openapi.json")
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json()["openapi"] == "3.1.0"
    assert "/openapi.json" in answer.json()["paths"]
    etag = answer.headers["ETag"]
    again = anonymous.get("/api/openapi.json", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["ETag"] == etag
    assert again.content == b""
