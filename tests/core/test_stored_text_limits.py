"""Text that Table Storage could not hold is refused with a 413 before anything is stored (real Azurite)."""

from __future__ import annotations

import pytest

from core import datasets, imports, jobs, uploads
from core.auth import Principal
from core.errors import LimitExceeded
from core.settings import Settings
from core.storage import Storage
from tests.core.steps import import_to_review

OWNER = Principal(user_id="limits-test", user_details="l", identity_provider="aad", roles=frozenset())


def test_a_schema_is_measured_as_table_storage_counts(storage: Storage) -> None:
    # 20,000 emoji are 20,000 Python characters but 40,000 UTF-16 units: more than a property holds.
    schema = {"fields": [{"name": "id", "type": "integer", "description": "😀" * 20_000}]}
    with pytest.raises(LimitExceeded) as refused:
        datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "wide", "schema": schema})
    assert refused.value.status == 413
    assert "40,0" in refused.value.detail and "count twice" in refused.value.detail
    schema["fields"][0]["description"] = "😀" * 10_000  # 20,000 units: fits
    assert datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "ok", "schema": schema}).id


def test_an_import_of_a_file_with_huge_column_names_is_refused_before_it_starts(storage: Storage) -> None:
    settings = Settings(storage=storage.config)
    schema = {"fields": [{"name": "id", "type": "integer"}]}
    dataset = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "names", "schema": schema})
    header = ",".join(["id", "a" * 17_000, "b" * 17_000])
    upload = uploads.store_upload(
        storage=storage,
        settings=settings,
        owner=OWNER,
        file_name="wide.csv",
        body=(header + "\n1,x,y\n").encode(),
    )
    profiled = uploads.profile_upload(storage=storage, settings=settings, upload_id=upload["id"])
    assert profiled == uploads.PROFILED
    with pytest.raises(LimitExceeded) as refused:
        imports.start_import(
            storage=storage,
            settings=settings,
            principal=OWNER,
            dataset_id=dataset.id,
            body={"uploadId": upload["id"]},
        )
    assert refused.value.status == 413 and "Shorten the header row" in refused.value.detail
    unchanged = datasets.load_dataset(storage, dataset.id)
    assert unchanged is not None and unchanged.active_job == ""  # nothing was claimed


def test_a_row_too_large_to_store_says_which_value_is_too_long(storage: Storage) -> None:
    schema = {"fields": [{"name": "id", "type": "integer"}, {"name": "note", "type": "string"}]}
    dataset = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "long", "schema": schema})
    body = f"id,note\n1,short\n2,{'x' * 32_768}\n3,{'😀' * 16_384}\n4,{'😀' * 16_383}\n".encode()
    job, chunks = import_to_review(storage, OWNER, dataset.id, body)
    for index in range(chunks):
        imports.apply_chunk(storage=storage, job_id=job.id, index=index)
    assert imports.finalize_import(storage=storage, job_id=job.id) == {"status": jobs.COMPLETED}
    loaded = jobs.load_job(storage, job.id)
    assert loaded is not None
    errors = imports.errors_page(storage=storage, job=loaded, cursor=None, limit=10)["items"]
    assert [(error["row"], error["column"], error["code"]) for error in errors] == [
        (2, "note", "rowTooLarge"),
        (3, "note", "rowTooLarge"),
    ]
    assert errors[0]["message"] == (
        'Row 2: the value of "note" is 32,768 UTF-16 characters long (an emoji counts twice); '
        "Table Storage keeps at most 32,767 in one text value."
    )
    assert errors[1]["message"].startswith('Row 3: the value of "note" is 32,768 UTF-16 characters')
    assert errors[0]["value"] == "x" * 200
