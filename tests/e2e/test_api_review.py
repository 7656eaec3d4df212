"""Review of the HTTP API against DESIGN §4 and its OpenAPI document, through a real devhost."""

from __future__ import annotations

import requests

from tests.e2e.conftest import Devhost

PROBLEM = "application/problem+json"


def _bad_cursor(answer: requests.Response) -> None:
    assert answer.status_code == 400, answer.text
    assert answer.headers["Content-Type"].startswith(PROBLEM)


def test_a_cursor_from_another_list_or_altered_is_a_bad_request(devhost: Devhost) -> None:
    api = devhost.api("cursor-user")
    schema = {"fields": [{"name": "id", "type": "integer"}], "primaryKey": "id"}
    first, second = api.create_dataset(schema, "one"), api.create_dataset(schema, "two")
    upload = api.profiled(b"id\n1\n2\n3\nx\n")
    job = api.start_import(first, upload)
    assert api.wait_for_import(job, ("awaiting_review",))["status"] == "awaiting_review"
    assert api.post(f"/api/imports/{job}/approve").status_code == 202
    assert api.wait_for_import(job)["status"] == "completed"

    rows = api.get(f"/api/datasets/{first}/rows", params={"limit": "1"}).json()["next"]
    listed = api.get("/api/datasets", params={"limit": "1"}).json()["next"]
    assert rows and listed
    # Each cursor still continues its own list.
    assert api.get(f"/api/datasets/{first}/rows", params={"cursor": rows}).status_code == 200
    assert api.get("/api/datasets", params={"cursor": listed}).status_code == 200
    # ... and no other: these were a 200 that silently restarted or skipped.
    _bad_cursor(api.get("/api/datasets", params={"cursor": rows}))
    _bad_cursor(api.get(f"/api/datasets/{second}/rows", params={"cursor": rows}))
    _bad_cursor(api.get(f"/api/imports/{job}/errors", params={"cursor": listed}))
    _bad_cursor(api.get(f"/api/datasets/{first}/imports", params={"cursor": listed}))
    _bad_cursor(api.get("/api/datasets", params={"cursor": "e30"}))  # base64 of {}
    tampered = listed[:5] + ("A" if listed[5] != "A" else "B") + listed[6:]
    _bad_cursor(api.get("/api/datasets", params={"cursor": tampered}))
    admin = devhost.api("cursor-admin", roles=("admin",))
    _bad_cursor(admin.get("/api/ops/jobs", params={"cursor": listed}))


def test_an_idempotent_replay_is_private_and_says_when_to_poll(devhost: Devhost) -> None:
    api = devhost.api("replay-user")
    dataset_id = api.create_dataset({"fields": [{"name": "a", "type": "string"}]})
    headers = {"Idempotency-Key": "export-once"}
    first = api.post(f"/api/datasets/{dataset_id}/exports", headers=headers)
    again = api.post(f"/api/datasets/{dataset_id}/exports", headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers.get("Cache-Control") == first.headers["Cache-Control"] == "no-store"
    assert again.headers.get("Retry-After") == first.headers["Retry-After"]


def test_ops_jobs_lists_uploads_in_any_upload_status(devhost: Devhost) -> None:
    api = devhost.api("ops-status-user")
    upload = api.profiled(b"a\n1\n")
    admin = devhost.api("ops-status-admin", roles=("admin",))
    found, cursor = [], None
    while True:
        answer = admin.get(
            "/api/ops/jobs", params={"status": "profiled", **({"cursor": cursor} if cursor else {})}
        )
        assert answer.status_code == 200, answer.text
        found += answer.json()["items"]
        cursor = answer.json()["next"]
        if cursor is None:
            break
    assert any(item["id"] == upload and item["kind"] == "upload" for item in found)
