"""Datasets and imports end to end: HTTP → outbox → queue → orchestration → tables, via a real devhost."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from tests.e2e.conftest import Api, Devhost

PEOPLE = {
    "fields": [
        {"name": "id", "type": "integer"},
        {"name": "name", "type": "string", "constraints": {"required": True, "maxLength": 20}},
        {"name": "email", "type": "string", "format": "email"},
        {"name": "age", "type": "integer", "constraints": {"minimum": 0, "maximum": 150}},
        {"name": "joined", "type": "date"},
        {"name": "active", "type": "boolean"},
    ],
    "primaryKey": "id",
}


def people_csv(count: int, *, start: int = 1, bad: dict[int, tuple[str, str]] | None = None) -> bytes:
    """Rows id=start..start+count-1; `bad` maps a row number (1-based) to (column, text) to put there."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "name", "email", "age", "joined", "active"])
    for offset in range(count):
        number = start + offset
        row = {
            "id": str(number),
            "name": f"Person {number}",
            "email": f"p{number}@example.com",
            "age": str(20 + number % 50),
            "joined": f"2024-{1 + number % 12:02d}-{1 + number % 28:02d}",
            "active": "true" if number % 2 else "false",
        }
        for column, text in [(bad or {}).get(offset + 1, ("", ""))]:
            if column:
                row[column] = text
        writer.writerow(row.values())
    return out.getvalue().encode()


@pytest.fixture
def api(devhost: Devhost) -> Api:
    return devhost.api("alice")


def test_clean_auto_apply_import(api: Api) -> None:
    dataset_id = api.create_dataset(PEOPLE)
    upload_id = api.profiled(people_csv(120))
    job_id = api.start_import(dataset_id, upload_id, autoApply=True)
    job = api.wait_for_import(job_id)
    assert job["status"] == "completed", job
    assert job["counts"] == {"rows": 120, "valid": 120, "invalid": 0, "inserted": 120, "updated": 0, "unchanged": 0}
    assert job["progress"] == {"done": 120, "total": 120, "percent": 100.0}
    dataset = api.get(f"/api/datasets/{dataset_id}").json()
    assert dataset["rowCount"] == 120 and dataset["activeJob"] is None
    rows = api.all_rows(dataset_id, limit=37)
    assert sorted(int(row["key"]) for row in rows) == list(range(1, 121))
    row = api.get(f"/api/datasets/{dataset_id}/rows/7").json()
    assert row == {
        "key": "7",
        "values": {"id": 7, "name": "Person 7", "email": "p7@example.com", "age": 27, "joined": "2024-08-08",
                   "active": True},
    }
