"""Operator endpoints through the devhost: queue depths, poison messages replayed and discarded."""

from __future__ import annotations

import contextlib
import json
import time

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueServiceClient, TextBase64EncodePolicy

from devhost.azurite import Azurite
from tests.e2e.conftest import Devhost


def _poison(azurite: Azurite, queue: str, body: str) -> None:
    service = QueueServiceClient.from_connection_string(azurite.connection_string)
    client = service.get_queue_client(f"{queue}-poison", message_encode_policy=TextBase64EncodePolicy())
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    client.send_message(body)


def test_ops_need_the_admin_role(devhost: Devhost) -> None:
    for path in ("/api/ops/queues", "/api/ops/poison", "/api/ops/jobs"):
        assert devhost.api("alice").get(path).status_code == 403
        assert devhost.api(None).get(path).status_code == 401


def test_an_admin_sees_queues_and_replays_and_discards_poison(devhost: Devhost, azurite: Azurite) -> None:
    admin = devhost.api("root", roles=("admin",))
    api = devhost.api("alice")
    dataset_id = api.create_dataset({"fields": [{"name": "a", "type": "string"}]})
    export_id = api.post(f"/api/datasets/{dataset_id}/exports").json()["id"]
    assert api.wait_for_export(export_id)["status"] == "completed"
    replayed = json.dumps({"id": export_id, "traceparent": None})
    _poison(azurite, "export-requests", replayed)
    _poison(azurite, "export-requests", '{"not": "a command"}')
    queues = {item["name"]: item for item in admin.get("/api/ops/queues").json()["items"]}
    assert set(queues) == {"profile-requests", "import-requests", "export-requests", "dataset-deletes"}
    assert queues["export-requests"]["poison"] >= 2
    listed = admin.get("/api/ops/poison", params={"queue": "export-requests"}).json()["items"]
    by_body = {item["body"]: item for item in listed}
    assert by_body[replayed]["queue"] == "export-requests"
    answer = admin.post(f"/api/ops/poison/export-requests/{by_body[replayed]['id']}/replay")
    assert answer.status_code == 202, answer.text
    junk = by_body['{"not": "a command"}']["id"]
    answer = admin.request("DELETE", f"/api/ops/poison/export-requests/{junk}")
    assert answer.status_code == 204, answer.text
    remaining = {
        item["id"]
        for item in admin.get("/api/ops/poison", params={"queue": "export-requests"}).json()["items"]
    }
    assert not remaining & {item["id"] for item in listed}
    deadline = time.monotonic() + 30
    while {item["name"]: item for item in admin.get("/api/ops/queues").json()["items"]}["export-requests"][
        "depth"
    ]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert api.get(f"/api/exports/{export_id}").json()["status"] == "completed"  # the replay changed nothing
    assert admin.post(f"/api/ops/poison/export-requests/{by_body[replayed]['id']}/replay").status_code == 404
    assert admin.post("/api/ops/poison/nosuch/x/replay").status_code == 404


def test_an_admin_lists_failed_jobs(devhost: Devhost) -> None:
    api = devhost.api("alice")
    upload = api.upload(b"", "empty.csv")
    assert api.wait_for_upload(upload)["status"] == "failed"
    admin = devhost.api("root", roles=("admin",))
    found, cursor = [], None
    while True:
        page = admin.get(
            "/api/ops/jobs", params={"status": "failed", **({"cursor": cursor} if cursor else {})}
        ).json()
        found += page["items"]
        cursor = page["next"]
        if cursor is None:
            break
    assert any(item["id"] == upload and item["kind"] == "upload" for item in found)
    assert admin.get("/api/ops/jobs", params={"status": "bogus"}).status_code == 400
