"""Datasets and imports end to end: HTTP → outbox → queue → orchestration → tables, via a real devhost."""

from __future__ import annotations

import csv
import io
import time
from urllib.parse import quote

import pytest

from core.jobs import FINISHED
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
    assert job["counts"] == {
        "rows": 120,
        "valid": 120,
        "invalid": 0,
        "inserted": 120,
        "updated": 0,
        "unchanged": 0,
    }
    assert job["progress"] == {"done": 120, "total": 120, "percent": 100.0}
    dataset = api.get(f"/api/datasets/{dataset_id}").json()
    assert dataset["rowCount"] == 120 and dataset["activeJob"] is None
    rows = api.all_rows(dataset_id, limit=37)
    assert sorted(int(row["key"]) for row in rows) == list(range(1, 121))
    row = api.get(f"/api/datasets/{dataset_id}/rows/7").json()
    assert row == {
        "key": "7",
        "values": {
            "id": 7,
            "name": "Person 7",
            "email": "p7@example.com",
            "age": 27,
            "joined": "2024-08-08",
            "active": True,
        },
    }


def test_create_from_upload_uses_the_inferred_schema(api: Api) -> None:
    upload_id = api.profiled(people_csv(10))
    answer = api.post("/api/datasets", json={"name": "inferred", "fromUpload": upload_id, "primaryKey": "id"})
    assert answer.status_code == 201, answer.text
    dataset = answer.json()
    types = {field["name"]: field["type"] for field in dataset["schema"]["fields"]}
    assert types == {
        "id": "integer",
        "name": "string",
        "email": "string",
        "age": "integer",
        "joined": "date",
        "active": "boolean",
    }
    assert dataset["schema"]["primaryKey"] == ["id"]
    assert answer.headers["Location"] == f"/api/datasets/{dataset['id']}"
    job = api.wait_for_import(api.start_import(dataset["id"], upload_id, autoApply=True))
    assert job["status"] == "completed" and job["counts"]["inserted"] == 10


def test_a_bad_schema_is_refused_listing_every_problem(api: Api) -> None:
    schema = {
        "fields": [
            {"name": "a", "type": "integr"},
            {"name": "a", "type": "string"},
            {"name": "b", "type": "integer", "constraints": {"minimum": "x"}},
        ],
        "primaryKey": "nope",
    }
    answer = api.post("/api/datasets", json={"name": "bad", "schema": schema})
    assert answer.status_code == 422
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    codes = {problem["code"] for problem in answer.json()["problems"]}
    assert len(answer.json()["problems"]) >= 4, answer.json()
    assert "unknownPrimaryKeyField" in codes


def test_odd_field_names_are_mapped_and_shown_as_written(api: Api) -> None:
    schema = {"fields": [{"name": "Unit price (€)", "type": "number"}, {"name": "1st", "type": "string"}]}
    dataset = api.post("/api/datasets", json={"name": "odd", "schema": schema}).json()
    assert [field["name"] for field in dataset["schema"]["fields"]] == ["Unit price (€)", "1st"]
    assert dataset["properties"] == {"Unit price (€)": "Unit_price____", "1st": "f_1st"}
    upload_id = api.profiled("Unit price (€),1st\n2.5,x\n".encode())
    job = api.wait_for_import(api.start_import(dataset["id"], upload_id, autoApply=True))
    assert job["status"] == "completed", job
    assert [row["values"] for row in api.all_rows(dataset["id"])] == [{"Unit price (€)": 2.5, "1st": "x"}]


BAD_CELLS = {
    3: ("age", "old"),
    17: ("email", "not-an-email"),
    60: ("age", "200"),
    75: ("name", ""),
    99: ("joined", "2024-02-30"),
}


def test_invalid_rows_are_counted_and_listed_exactly_then_approved(api: Api) -> None:
    dataset_id = api.create_dataset(PEOPLE)
    content = people_csv(130, bad=BAD_CELLS)
    job_id = api.start_import(dataset_id, api.profiled(content))
    job = api.wait_for_import(job_id, ("awaiting_review", "failed"))
    assert job["status"] == "awaiting_review", job
    assert job["counts"]["rows"] == 130 and job["counts"]["invalid"] == 5 and job["counts"]["valid"] == 125
    assert job["expiresAt"] > job["createdAt"]
    summary = {(item["code"], item["column"]): item["count"] for item in job["errorSummary"]}
    assert summary == {
        ("type", "age"): 1,
        ("type", "email"): 1,
        ("maximum", "age"): 1,
        ("required", "name"): 1,
        ("type", "joined"): 1,
    }
    errors = api.get(f"/api/imports/{job_id}/errors", params={"limit": "2"}).json()
    assert [error["row"] for error in errors["items"]] == [3, 17]
    assert errors["items"][0] == {
        "row": 3,
        "column": "age",
        "code": "type",
        "value": "old",
        "message": errors["items"][0]["message"],
    }
    assert "Row 3" in errors["items"][0]["message"] and '"age"' in errors["items"][0]["message"]
    rest = api.get(f"/api/imports/{job_id}/errors", params={"cursor": errors["next"]}).json()
    assert [error["row"] for error in rest["items"]] == [60, 75, 99] and rest["next"] is None
    download = api.get(f"/api/imports/{job_id}/errors.csv")
    assert download.status_code == 200 and download.headers["Content-Type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(download.text)))
    assert table[0] == ["row", "column", "code", "message", "value"]
    assert [(int(r[0]), r[1], r[2], r[4]) for r in table[1:]] == [
        (3, "age", "type", "old"),
        (17, "email", "type", "not-an-email"),
        (60, "age", "maximum", "200"),
        (75, "name", "required", ""),
        (99, "joined", "type", "2024-02-30"),
    ]
    assert api.get(f"/api/datasets/{dataset_id}").json()["rowCount"] == 0  # nothing applied before approval
    approved = api.post(f"/api/imports/{job_id}/approve")
    assert approved.status_code == 202, approved.text
    job = api.wait_for_import(job_id)
    assert job["status"] == "completed", job
    assert job["counts"] == {
        "rows": 130,
        "valid": 125,
        "invalid": 5,
        "inserted": 125,
        "updated": 0,
        "unchanged": 0,
    }
    keys = {int(row["key"]) for row in api.all_rows(dataset_id)}
    assert keys == set(range(1, 131)) - set(BAD_CELLS)
    assert api.post(f"/api/imports/{job_id}/approve").status_code == 409
    assert api.post(f"/api/imports/{job_id}/cancel").status_code == 409


def test_reject_applies_nothing_and_frees_the_dataset(api: Api) -> None:
    dataset_id = api.create_dataset(PEOPLE)
    job_id = api.start_import(dataset_id, api.profiled(people_csv(20)))
    assert api.wait_for_import(job_id, ("awaiting_review",))["counts"]["invalid"] == 0
    assert api.post(f"/api/imports/{job_id}/reject").status_code == 202
    job = api.wait_for_import(job_id)
    assert job["status"] == "rejected" and job["counts"]["inserted"] == 0
    dataset = api.get(f"/api/datasets/{dataset_id}").json()
    assert dataset["rowCount"] == 0 and dataset["activeJob"] is None
    assert api.all_rows(dataset_id) == []
    again = api.start_import(dataset_id, api.profiled(people_csv(5)), autoApply=True)
    assert api.wait_for_import(again)["status"] == "completed"


def test_cancel_during_review(api: Api) -> None:
    dataset_id = api.create_dataset(PEOPLE)
    job_id = api.start_import(dataset_id, api.profiled(people_csv(20, bad={2: ("age", "x")})), autoApply=True)
    assert api.wait_for_import(job_id, ("awaiting_review",))["counts"]["invalid"] == 1
    assert api.post(f"/api/imports/{job_id}/cancel").status_code == 202
    job = api.wait_for_import(job_id)
    assert job["status"] == "cancelled" and job["counts"]["inserted"] == 0
    assert api.get(f"/api/datasets/{dataset_id}").json()["activeJob"] is None


def test_a_runaway_pattern_fails_the_import_saying_why_while_the_host_keeps_answering(api: Api) -> None:
    # (a+)+ on "aaa…a!" backtracks for hours; matched in-process it would hold the GIL all that time.
    dataset_id = api.create_dataset(
        {"fields": [{"name": "code", "type": "string", "constraints": {"pattern": "(a+)+"}}]}, name="codes"
    )
    upload_id = api.profiled(b"code\naaa\n" + b"a" * 60 + b"!\nb\n")
    job_id = api.start_import(dataset_id, upload_id, autoApply=True)
    answers = 0
    while (job := api.get(f"/api/imports/{job_id}").json())["status"] not in FINISHED:
        assert api.get("/api/health").status_code == 200  # within the client's 30-second timeout
        answers += 1
        time.sleep(0.2)
    assert answers > 0
    assert job["status"] == "failed", job
    assert 'The pattern of field "code" ("(a+)+") took longer than 5 seconds' in job["error"]
    dataset = api.get(f"/api/datasets/{dataset_id}").json()
    assert dataset["rowCount"] == 0 and dataset["activeJob"] is None


def test_only_one_import_at_a_time_per_dataset(api: Api) -> None:
    dataset_id = api.create_dataset(PEOPLE)
    upload_id = api.profiled(people_csv(10))
    first = api.start_import(dataset_id, upload_id)
    second = api.post(f"/api/datasets/{dataset_id}/imports", json={"uploadId": upload_id})
    assert second.status_code == 409 and first in second.json()["detail"]
    api.post(f"/api/imports/{first}/cancel")
    assert api.wait_for_import(first)["status"] == "cancelled"


def test_duplicate_keys_across_chunks_are_row_errors(api: Api) -> None:
    dataset_id = api.create_dataset(PEOPLE)
    text = people_csv(120).decode()
    # Rows 101 and 102 repeat ids 5 and 60: different chunks (50 rows each) from their first use.
    lines = text.splitlines()
    lines[101] = lines[5].replace("Person 5", "Again 5")
    lines[102] = lines[60].replace("Person 60", "Again 60")
    job_id = api.start_import(dataset_id, api.profiled(("\n".join(lines) + "\n").encode()), autoApply=True)
    job = api.wait_for_import(job_id, ("awaiting_review",))
    assert job["counts"]["invalid"] == 2
    errors = api.get(f"/api/imports/{job_id}/errors").json()["items"]
    assert [(e["row"], e["column"], e["code"], e["value"]) for e in errors] == [
        (101, "id", "primaryKey", "5"),
        (102, "id", "primaryKey", "60"),
    ]
    assert "row 5" in errors[0]["message"]
    api.post(f"/api/imports/{job_id}/approve")
    job = api.wait_for_import(job_id)
    assert job["counts"]["inserted"] == 118
    assert api.get(f"/api/datasets/{dataset_id}/rows/5").json()["values"]["name"] == "Person 5"


def _repeated_keys_file() -> bytes:
    """150 rows (three chunks) with repeated keys of every kind; see the test below."""
    lines = people_csv(150, bad={3: ("age", "old")}).decode().splitlines()
    lines[101] = lines[5].replace("Person 5", "Again 5")  # repeats id 5, whose first row is valid
    lines[120] = lines[3].replace("Person 3,", "Again 3,").replace(",old,", ",33,")  # first row invalid
    lines[130] = lines[130].replace("p130@", "p10@")  # its own id, but row 10's email (a unique field)
    lines[140] = lines[60].replace("Person 60", "Again 60")  # id 60 three times
    lines[145] = lines[60].replace("Person 60", "Third 60")
    return ("\n".join(lines) + "\n").encode()


def test_repeated_keys_keep_each_first_valid_row(api: Api) -> None:
    """A repeated key keeps its first row if that row is valid, and no row if not; a repeated unique
    value makes its later rows invalid."""
    schema = {**PEOPLE, "fields": [dict(item) for item in PEOPLE["fields"]]}
    schema["fields"][2]["constraints"] = {"unique": True}
    dataset_id = api.create_dataset(schema)
    job_id = api.start_import(dataset_id, api.profiled(_repeated_keys_file()), autoApply=True)
    api.wait_for_import(job_id, ("awaiting_review",))
    errors = api.get(f"/api/imports/{job_id}/errors").json()["items"]
    codes: dict[int, set[str]] = {}
    for error in errors:
        codes.setdefault(error["row"], set()).add(error["code"])
    both = {"primaryKey", "unique"}  # a copied row repeats the id and the email
    assert codes == {3: {"type"}, 101: both, 120: both, 130: {"unique"}, 140: both, 145: both}
    api.post(f"/api/imports/{job_id}/approve")
    job = api.wait_for_import(job_id)
    assert job["status"] == "completed", job
    assert job["counts"] == {
        "rows": 150,
        "valid": 144,
        "invalid": 6,
        "inserted": 144,
        "updated": 0,
        "unchanged": 0,
    }
    found = {int(row["key"]): row["values"]["name"] for row in api.all_rows(dataset_id)}
    expected = {n: f"Person {n}" for n in range(1, 151) if n not in (3, 101, 120, 130, 140, 145)}
    assert found == expected
    assert api.get(f"/api/datasets/{dataset_id}").json()["rowCount"] == len(expected)


def test_insert_upsert_and_replace(api: Api) -> None:
    dataset_id = api.create_dataset(PEOPLE)
    assert (
        api.wait_for_import(api.start_import(dataset_id, api.profiled(people_csv(60)), autoApply=True))[
            "status"
        ]
        == "completed"
    )
    # insert: ids 51..70 — 51..60 exist already and are row errors, found before the review (so even
    # autoApply waits for one); 61..70 are new.
    job_id = api.start_import(dataset_id, api.profiled(people_csv(20, start=51)), autoApply=True)
    review = api.wait_for_import(job_id, ("awaiting_review", *FINISHED))
    assert review["status"] == "awaiting_review", review
    assert (review["counts"]["valid"], review["counts"]["invalid"]) == (10, 10)
    assert review["errorSummary"] == [{"code": "keyExists", "column": "id", "count": 10}]
    api.post(f"/api/imports/{job_id}/approve")
    job = api.wait_for_import(job_id)
    assert job["status"] == "completed", job
    assert job["counts"] == {
        "rows": 20,
        "valid": 10,
        "invalid": 10,
        "inserted": 10,
        "updated": 0,
        "unchanged": 0,
    }
    codes = {e["code"] for e in api.get(f"/api/imports/{job['id']}/errors").json()["items"]}
    assert codes == {"keyExists"}
    assert job["errorsStored"] == 10
    assert api.get(f"/api/datasets/{dataset_id}").json()["rowCount"] == 70
    # upsert: ids 61..80 with 61..65 changed — 5 updated, 5 unchanged (66..70), 10 inserted.
    text = people_csv(20, start=61).decode()
    for number in range(61, 66):
        text = text.replace(f"Person {number},", f"Renamed {number},")
    job = api.wait_for_import(
        api.start_import(dataset_id, api.profiled(text.encode()), mode="upsert", autoApply=True)
    )
    assert job["counts"] == {
        "rows": 20,
        "valid": 20,
        "invalid": 0,
        "inserted": 10,
        "updated": 5,
        "unchanged": 5,
    }
    assert api.get(f"/api/datasets/{dataset_id}/rows/62").json()["values"]["name"] == "Renamed 62"
    assert api.get(f"/api/datasets/{dataset_id}").json()["rowCount"] == 80
    # replace: the dataset becomes exactly the file.
    job = api.wait_for_import(
        api.start_import(dataset_id, api.profiled(people_csv(7, start=500)), mode="replace", autoApply=True)
    )
    assert job["counts"]["inserted"] == 7
    assert sorted(int(row["key"]) for row in api.all_rows(dataset_id)) == list(range(500, 507))
    assert api.get(f"/api/datasets/{dataset_id}").json()["rowCount"] == 7


def test_upsert_needs_a_primary_key_and_mapping_problems_are_refused_before_work(api: Api) -> None:
    keyless = api.create_dataset({"fields": [{"name": "a", "type": "string"}]})
    upload_id = api.profiled(b"a,b\n1,2\n")
    answer = api.post(f"/api/datasets/{keyless}/imports", json={"uploadId": upload_id, "mode": "upsert"})
    assert answer.status_code == 422 and answer.json()["problems"][0]["code"] == "needsPrimaryKey"
    dataset_id = api.create_dataset(PEOPLE)
    answer = api.post(
        f"/api/datasets/{dataset_id}/imports", json={"uploadId": upload_id, "mapping": {"nosuch": "a"}}
    )
    assert answer.status_code == 422
    assert api.get(f"/api/datasets/{dataset_id}/imports").json()["items"] == []


def test_explicit_mapping_renames_columns(api: Api) -> None:
    dataset_id = api.create_dataset(
        {
            "fields": [{"name": "code", "type": "string"}, {"name": "n", "type": "integer"}],
            "primaryKey": "code",
        }
    )
    upload_id = api.profiled(b"Product Code,Quantity,ignored\n00501,3,x\n007,4,y\nA/1?#%,5,z\nend/,6,w\n")
    job = api.wait_for_import(
        api.start_import(
            dataset_id, upload_id, autoApply=True, mapping={"code": "Product Code", "n": "Quantity"}
        )
    )
    assert job["status"] == "completed" and job["mapping"]["ignored"] == ["ignored"]
    assert api.get(f"/api/datasets/{dataset_id}/rows/00501").json()["values"] == {"code": "00501", "n": 3}
    odd = api.get(f"/api/datasets/{dataset_id}/rows/{quote('A/1?#%', safe='')}").json()  # "/" in a key
    assert odd == {"key": "A/1?#%", "values": {"code": "A/1?#%", "n": 5}}
    ending = api.get(f"/api/datasets/{dataset_id}/rows/{quote('end/', safe='')}").json()
    assert ending == {"key": "end/", "values": {"code": "end/", "n": 6}}


def test_export_then_reimport_gives_the_same_dataset(api: Api) -> None:
    import requests

    schema = {
        "fields": [
            {"name": "id", "type": "integer"},
            {"name": "note", "type": "string"},
            {"name": "when", "type": "date", "format": "%d/%m/%Y"},
            {"name": "price", "type": "number", "decimalChar": ","},
            {"name": "ok", "type": "boolean", "trueValues": ["yes"], "falseValues": ["no"]},
            # Names a spreadsheet would run: the export's header neutralises them, the import knows them.
            {"name": "+/- change", "type": "number"},
            {"name": "@handle", "type": "string"},
        ],
        "primaryKey": "id",
    }
    source = (
        "id;note;when;price;ok;+/- change;@handle\n1;plain;02/03/2024;1,5;yes;-3;ada\n"
        '2;"semi; colon";31/12/1999;-2,25;no;4;bo\n3;;01/01/2000;;;;\n'
    )
    dataset_id = api.create_dataset(schema, name="round trip")
    assert (
        api.wait_for_import(api.start_import(dataset_id, api.profiled(source.encode()), autoApply=True))[
            "status"
        ]
        == "completed"
    )
    answer = api.post(f"/api/datasets/{dataset_id}/exports", json={})
    assert answer.status_code == 202, answer.text
    export = api.wait_for_export(answer.json()["id"])
    assert export["status"] == "completed" and export["rows"] == 3
    content = requests.get(export["downloadUrl"], timeout=30).content
    header = next(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert header == ["id", "note", "when", "price", "ok", "'+/- change", "'@handle"]
    copy_id = api.create_dataset(schema, name="copy")
    assert (
        api.wait_for_import(api.start_import(copy_id, api.profiled(content), autoApply=True))["status"]
        == "completed"
    )
    original = sorted(api.all_rows(dataset_id), key=lambda row: row["key"])
    assert original == sorted(api.all_rows(copy_id), key=lambda row: row["key"])
    assert original[0]["values"] == {
        "id": 1,
        "note": "plain",
        "when": "2024-03-02",
        "price": 1.5,
        "ok": True,
        "+/- change": -3.0,
        "@handle": "ada",
    }
    assert original[2]["values"] == {
        "id": 3,
        "note": None,
        "when": "2000-01-01",
        "price": None,
        "ok": None,
        "+/- change": None,
        "@handle": None,
    }


def test_an_export_of_several_pages_is_written_in_slices_each_sending_the_next(devhost: Devhost) -> None:
    import requests

    api = devhost.api("slicer")  # the e2e devhost ends an export's slice after each page of 1,000 rows
    schema = {
        "fields": [{"name": "id", "type": "integer"}, {"name": "v", "type": "string"}],
        "primaryKey": "id",
    }
    dataset_id = api.create_dataset(schema, name="pages")
    body = ("id,v\n" + "".join(f"{n},=v{n}\n" for n in range(1, 2_501))).encode()
    assert api.wait_for_import(api.start_import(dataset_id, api.profiled(body), autoApply=True))[
        "status"
    ] == ("completed")
    answer = api.post(f"/api/datasets/{dataset_id}/exports", json={})
    assert answer.status_code == 202, answer.text
    export = api.wait_for_export(answer.json()["id"])
    assert export["status"] == "completed" and export["rows"] == 2_500
    records = list(
        csv.reader(io.StringIO(requests.get(export["downloadUrl"], timeout=30).content.decode("utf-8-sig")))
    )
    assert records[0] == ["id", "v"]
    assert sorted((int(n), v) for n, v in records[1:]) == [(n, f"'=v{n}") for n in range(1, 2_501)]
    slices = devhost.log().count(f"export-requests: job {export['id']} → ")
    assert slices == 3  # two ended early and sent the command again; the third completed


def test_export_neutralises_formulas(api: Api) -> None:
    import requests

    dataset_id = api.create_dataset(
        {"fields": [{"name": "n", "type": "integer"}, {"name": "t", "type": "string"}]}
    )
    source = b"n,t\n-5,=SUM(A1:A2)\n6,@cmd\n7,+1\n8,plain\n"
    assert (
        api.wait_for_import(api.start_import(dataset_id, api.profiled(source), autoApply=True))["status"]
        == "completed"
    )
    export = api.wait_for_export(api.post(f"/api/datasets/{dataset_id}/exports").json()["id"])
    text = requests.get(export["downloadUrl"], timeout=30).content.decode("utf-8-sig")
    rows = sorted(list(csv.reader(io.StringIO(text)))[1:], key=lambda row: int(row[0]))
    assert rows == [["-5", "'=SUM(A1:A2)"], ["6", "'@cmd"], ["7", "'+1"], ["8", "plain"]]


def test_delete_removes_the_dataset_and_everything_in_it(api: Api) -> None:
    dataset_id = api.create_dataset(PEOPLE)
    job_id = api.start_import(dataset_id, api.profiled(people_csv(30, bad={4: ("age", "x")})), autoApply=True)
    api.wait_for_import(job_id, ("awaiting_review",))
    assert api.delete(f"/api/datasets/{dataset_id}").status_code == 409  # the import holds it
    api.post(f"/api/imports/{job_id}/approve")
    api.wait_for_import(job_id)
    answer = api.delete(f"/api/datasets/{dataset_id}")
    assert answer.status_code == 202 and answer.headers["Location"] == f"/api/datasets/{dataset_id}"
    deadline = time.monotonic() + 60
    while api.get(f"/api/datasets/{dataset_id}").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert api.get(f"/api/imports/{job_id}").status_code == 404
    assert api.get(f"/api/datasets/{dataset_id}/rows").status_code == 404
    assert dataset_id not in {item["id"] for item in api.get("/api/datasets").json()["items"]}


def test_another_user_gets_404_on_every_id(devhost: Devhost, api: Api) -> None:
    dataset_id = api.create_dataset(PEOPLE)
    job_id = api.start_import(dataset_id, api.profiled(people_csv(5, bad={1: ("age", "x")})), autoApply=True)
    api.wait_for_import(job_id, ("awaiting_review",))
    export_id = api.post(f"/api/datasets/{dataset_id}/exports").json()["id"]
    mallory = devhost.api("mallory")
    for method, path in [
        ("GET", f"/api/datasets/{dataset_id}"),
        ("DELETE", f"/api/datasets/{dataset_id}"),
        ("GET", f"/api/datasets/{dataset_id}/rows"),
        ("GET", f"/api/datasets/{dataset_id}/rows/1"),
        ("GET", f"/api/datasets/{dataset_id}/imports"),
        ("POST", f"/api/datasets/{dataset_id}/imports"),
        ("POST", f"/api/datasets/{dataset_id}/exports"),
        ("GET", f"/api/imports/{job_id}"),
        ("GET", f"/api/imports/{job_id}/errors"),
        ("GET", f"/api/imports/{job_id}/errors.csv"),
        ("POST", f"/api/imports/{job_id}/approve"),
        ("POST", f"/api/imports/{job_id}/reject"),
        ("POST", f"/api/imports/{job_id}/cancel"),
        ("GET", f"/api/exports/{export_id}"),
    ]:
        answer = mallory.request(method, path, json={"uploadId": "x"} if method == "POST" else None)
        assert answer.status_code == 404, (method, path, answer.status_code, answer.text)
        assert (
            dataset_id in answer.json()["detail"]
            or job_id in answer.json()["detail"]
            or export_id in answer.json()["detail"]
        )
    assert dataset_id not in {item["id"] for item in mallory.get("/api/datasets").json()["items"]}
    admin = devhost.api("root", roles=("admin",))
    assert admin.get(f"/api/imports/{job_id}").status_code == 200
    assert dataset_id in {
        item["id"] for item in admin.get("/api/datasets", params={"limit": "1000"}).json()["items"]
    }
    api.post(f"/api/imports/{job_id}/reject")
    api.wait_for_import(job_id)


def test_idempotency_key_returns_the_first_answer(api: Api) -> None:
    dataset_id = api.create_dataset(PEOPLE)
    upload_id = api.profiled(people_csv(3))
    headers = {"Idempotency-Key": f"import-{dataset_id}"}
    body = {"uploadId": upload_id, "autoApply": True}
    first = api.post(f"/api/datasets/{dataset_id}/imports", json=body, headers=headers)
    second = api.post(f"/api/datasets/{dataset_id}/imports", json=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"] and second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["Location"] == first.headers["Location"]
    other = api.post(f"/api/datasets/{dataset_id}/imports", json={**body, "mode": "upsert"}, headers=headers)
    assert other.status_code == 422
    api.wait_for_import(first.json()["id"])
    assert len(api.get(f"/api/datasets/{dataset_id}/imports").json()["items"]) == 1


def test_cancel_right_after_the_start(api: Api) -> None:
    dataset_id = api.create_dataset(PEOPLE)
    job_id = api.start_import(dataset_id, api.profiled(people_csv(40)), autoApply=True)
    assert api.post(f"/api/imports/{job_id}/cancel").status_code == 202
    job = api.wait_for_import(job_id)
    assert job["status"] == "cancelled", job
    assert api.get(f"/api/datasets/{dataset_id}").json()["rowCount"] == job["counts"]["inserted"]
    assert api.get(f"/api/datasets/{dataset_id}").json()["activeJob"] is None
