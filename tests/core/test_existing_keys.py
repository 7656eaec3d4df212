"""An insert into a dataset that has rows finds the keys it already has before the review, against Azurite."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core import datasets, imports, jobs, rows
from core.auth import Principal
from core.settings import Settings
from core.storage import Storage
from tests.core.steps import import_to_review, run_to_review

OWNER = Principal(user_id="exists-test", user_details="e", identity_provider="aad", roles=frozenset())
SCHEMA = {
    "fields": [{"name": "id", "type": "string"}, {"name": "n", "type": "integer"}],
    "primaryKey": "id",
}
# Keys a range query must quote and compare right: quotes, slashes, percent signs, accents, long keys.
ODD = ["a'b", "x/y", "50%", "été", "q#?", "k" * 300, "k" * 299 + "l"]


def csv_of(keys: list[str], n: int = 0) -> bytes:
    return ("id,n\n" + "".join(f"{key},{n}\n" for key in keys)).encode()


def dataset_with(storage: Storage, keys: list[str]) -> datasets.Dataset:
    dataset = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "exists", "schema": SCHEMA})
    job, chunks = import_to_review(storage, OWNER, dataset.id, csv_of(keys))
    finish(storage, job.id, chunks)
    return dataset


def finish(storage: Storage, job_id: str, chunks: int) -> dict[str, Any]:
    for index in range(chunks):
        imports.apply_chunk(storage=storage, job_id=job_id, index=index)
    assert imports.finalize_import(storage=storage, job_id=job_id) == {"status": jobs.COMPLETED}
    job = jobs.load_job(storage, job_id)
    assert job is not None
    return json.loads(job.get("counts"))


def validated(
    storage: Storage, dataset_id: str, body: bytes, *, mode: str = "insert", chunk_rows: int = 40
) -> tuple[jobs.Job, dict[str, Any], dict[str, Any]]:
    """Run an import's steps (autoApply) up to its review; return (job, plan, review step)."""
    settings = Settings(storage=storage.config, chunk_rows=chunk_rows)
    return run_to_review(storage, OWNER, dataset_id, body, mode=mode, settings=settings)


def errors_of(storage: Storage, job_id: str) -> list[tuple[int, str, str]]:
    job = jobs.load_job(storage, job_id)
    assert job is not None
    page = imports.errors_page(storage=storage, job=job, cursor=None, limit=1_000)
    return [(item["row"], item["code"], item["value"]) for item in page["items"]]


def counts_of(storage: Storage, job_id: str) -> dict[str, int]:
    job = jobs.load_job(storage, job_id)
    assert job is not None
    return {key: int(value) for key, value in json.loads(job.get("counts")).items()}


@pytest.mark.parametrize("per_page", [0, 10**9], ids=["scanned", "read-one-by-one"])
def test_keys_the_dataset_has_are_row_errors_at_the_review_and_are_not_written(
    storage: Storage, monkeypatch: pytest.MonkeyPatch, per_page: int
) -> None:
    monkeypatch.setattr(imports, "POINT_READS_PER_PAGE", per_page)
    old = [f"id{number:04d}" for number in range(1, 301)] + ODD
    dataset = dataset_with(storage, old)
    new = [f"id{number:04d}" for number in range(251, 351)] + ODD[:4] + ["a'c", "x/z"]
    job, plan, step = validated(storage, dataset.id, csv_of(new, n=7))
    assert plan["groups"] == imports.EXISTS_GROUPS and plan["chunks"] == 3
    assert step["next"] == "review"  # autoApply, but rows are invalid: the review says which
    existing = [number for number, key in enumerate(new, start=1) if key in old]
    assert len(existing) == 54
    assert errors_of(storage, job.id) == [(number, "keyExists", new[number - 1]) for number in existing]
    assert counts_of(storage, job.id) == {
        "rows": 106,
        "valid": 52,
        "invalid": 54,
        "inserted": 0,
        "updated": 0,
        "unchanged": 0,
    }
    loaded = jobs.load_job(storage, job.id)
    assert loaded is not None
    assert json.loads(loaded.get("errorSummary")) == [{"code": "keyExists", "column": "id", "count": 54}]

    jobs.change_job(storage, job.id, lambda _: {"decision": "approved"})
    assert imports.decide_import(storage=storage, job_id=job.id, timed_out=False) == {"next": "apply"}
    counts = finish(storage, job.id, plan["chunks"])
    assert counts == {"rows": 106, "valid": 52, "invalid": 54, "inserted": 52, "updated": 0, "unchanged": 0}
    assert len(errors_of(storage, job.id)) == 54  # none more found while applying
    table = storage.tables.get_table_client(dataset.rows_table)
    values = {entity["id"]: entity["n"].value for entity in table.list_entities()}
    assert len(values) == 300 + len(ODD) + 52
    assert all(values[key] == 0 for key in old)  # the rows the dataset had are as they were
    assert all(values[key] == 7 for key in new if key not in old)
    reloaded = datasets.load_dataset(storage, dataset.id)
    assert reloaded is not None and reloaded.row_count == len(values)


def test_a_key_repeated_in_the_file_and_in_the_dataset_is_both_errors_on_its_rows(storage: Storage) -> None:
    dataset = dataset_with(storage, ["a", "b"])
    job, _plan, step = validated(storage, dataset.id, csv_of(["b", "c", "b", "d", "d"]))
    assert step["next"] == "review"
    assert sorted(errors_of(storage, job.id)) == [
        (1, "keyExists", "b"),
        (3, "keyExists", "b"),
        (3, "primaryKey", "b"),
        (5, "primaryKey", "d"),
    ]
    assert counts_of(storage, job.id)["invalid"] == 3  # rows 1, 3 and 5: counted once each


@pytest.mark.parametrize("per_page", [0, 10**9], ids=["scanned", "read-one-by-one"])
def test_checking_a_group_again_changes_nothing_even_once_its_rows_are_written(
    storage: Storage, monkeypatch: pytest.MonkeyPatch, per_page: int
) -> None:
    monkeypatch.setattr(imports, "POINT_READS_PER_PAGE", per_page)
    dataset = dataset_with(storage, [f"k{number}" for number in range(50)])
    job, plan, _ = validated(storage, dataset.id, csv_of([f"k{number}" for number in range(40, 60)]))
    before = (errors_of(storage, job.id), counts_of(storage, job.id))
    for group in range(plan["groups"]):  # a repeat delivery of every check
        imports.check_existing_keys(storage=storage, job_id=job.id, group=group)
    assert imports.review_import(storage=storage, job_id=job.id)["next"] == "review"
    assert (errors_of(storage, job.id), counts_of(storage, job.id)) == before
    assert counts_of(storage, job.id)["invalid"] == 10

    jobs.change_job(storage, job.id, lambda _: {"decision": "approved"})
    assert imports.decide_import(storage=storage, job_id=job.id, timed_out=False) == {"next": "apply"}
    for index in range(plan["chunks"]):
        imports.apply_chunk(storage=storage, job_id=job.id, index=index)
    for group in range(plan["groups"]):  # a late repeat, while the rows it looked up are being written
        assert imports.check_existing_keys(storage=storage, job_id=job.id, group=group) == {"existing": None}
    # and one that began before the apply: the rows this import wrote are not "the dataset's already"
    table = storage.tables.get_table_client(dataset.rows_table)
    written = {
        entity["PartitionKey"]: {entity["RowKey"]: []}
        for entity in table.list_entities()
        if entity["id"] == "k55"
    }
    [(partition_key, keyed)] = written.items()
    assert imports._existing(table, partition_key, keyed, pages=1, job_id=job.id) == set()
    assert imports._existing(table, partition_key, keyed, pages=1, job_id="another") == {"k55"}
    assert imports.finalize_import(storage=storage, job_id=job.id) == {"status": jobs.COMPLETED}
    assert errors_of(storage, job.id) == before[0]
    loaded = jobs.load_job(storage, job.id)
    assert loaded is not None
    assert json.loads(loaded.get("errorSummary")) == [{"code": "keyExists", "column": "id", "count": 10}]


def test_a_key_range_is_taken_in_the_order_the_service_keeps_keys(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports, "POINT_READS_PER_PAGE", 0)  # the range scan
    emoji = "\U0001f600"
    partition = rows.partition_of(rows.row_key_of(emoji))
    wide = next(
        f"\uff46{n}" for n in range(10_000) if rows.partition_of(rows.row_key_of(f"\uff46{n}")) == partition
    )
    dataset = dataset_with(storage, [wide, "zzz"])
    # By code point the emoji comes last; in UTF-16 (D83D ...) before U+FF46: the range must hold both.
    job, _, step = validated(storage, dataset.id, csv_of([emoji, wide]))
    assert step["next"] == "review"
    assert errors_of(storage, job.id) == [(2, "keyExists", wide)]


@pytest.mark.parametrize("mode", ["upsert", "replace"])
def test_only_an_insert_into_rows_looks_keys_up(storage: Storage, mode: str) -> None:
    dataset = dataset_with(storage, ["a", "b"])
    _, plan, step = validated(storage, dataset.id, csv_of(["b", "c"]), mode=mode)
    assert plan["groups"] == 0 and step["next"] == "apply"
    empty = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "empty", "schema": SCHEMA})
    _, plan, step = validated(storage, empty.id, csv_of(["b", "c"]))
    assert plan["groups"] == 0 and step["next"] == "apply"  # nothing to find in an empty dataset
