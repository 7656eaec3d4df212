"""Browsing a dataset's rows while a replace switches it to new ones, against the session's real Azurite."""

from __future__ import annotations

import pytest

from core import browse, datasets, imports, jobs
from core.auth import Principal
from core.errors import Conflict
from core.storage import Storage
from tests.core.steps import import_to_review

OWNER = Principal(user_id="browse-test", user_details="b", identity_provider="aad", roles=frozenset())
SCHEMA = {"fields": [{"name": "id", "type": "integer"}], "primaryKey": "id"}


def imported(storage: Storage, dataset_id: str, first: int, count: int, *, mode: str) -> datasets.Dataset:
    body = ("id\n" + "".join(f"{n}\n" for n in range(first, first + count))).encode()
    job, chunks = import_to_review(storage, OWNER, dataset_id, body, mode=mode)
    for index in range(chunks):
        imports.apply_chunk(storage=storage, job_id=job.id, index=index)
    assert imports.finalize_import(storage=storage, job_id=job.id) == {"status": jobs.COMPLETED}
    dataset = datasets.load_dataset(storage, dataset_id)
    assert dataset is not None
    return dataset


def keys(page: dict[str, object]) -> list[int]:
    items = page["items"]
    assert isinstance(items, list)
    return [int(item["key"]) for item in items]


def test_a_cursor_handed_out_before_a_replace_is_refused_rather_than_mixing_old_and_new_rows(
    storage: Storage,
) -> None:
    dataset = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "browse", "schema": SCHEMA})
    old = imported(storage, dataset.id, 1, 30, mode="insert")
    first = browse.browse_rows(storage=storage, dataset=old, cursor=None, limit=10)
    assert len(keys(first)) == 10 and first["next"]
    second = browse.browse_rows(storage=storage, dataset=old, cursor=str(first["next"]), limit=10)
    assert len(set(keys(first) + keys(second))) == 20  # the cursor goes on while the rows stay

    new = imported(storage, dataset.id, 100, 30, mode="replace")
    with pytest.raises(Conflict, match="replaced since this cursor was handed out") as refused:
        browse.browse_rows(storage=storage, dataset=new, cursor=str(second["next"]), limit=10)
    assert refused.value.status == 409
    pages, cursor = [], None
    while True:  # started again: every row of the new generation, and only those
        page = browse.browse_rows(storage=storage, dataset=new, cursor=cursor, limit=10)
        pages += keys(page)
        if not page["next"]:
            break
        cursor = str(page["next"])
    assert sorted(pages) == list(range(100, 130))
