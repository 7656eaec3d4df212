"""Datasets in Table Storage (real Azurite): what is created reads back; one that does not spares the list."""

from __future__ import annotations

import pytest

from core import datasets, jobs
from core.auth import Principal
from core.ids import new_id
from core.storage import Storage

OWNER = Principal(user_id="datasets-test", user_details="d", identity_provider="aad", roles=frozenset())


def test_an_integer_with_a_dot_as_thousands_separator_is_created_and_listed(storage: Storage) -> None:
    # Its decimalChar is not stored (an integer has none): the stored schema once failed to read back.
    schema = {"fields": [{"name": "n", "type": "integer", "decimalChar": ",", "groupChar": "."}]}
    created = datasets.create_dataset(storage=storage, owner=OWNER, body={"name": "euro", "schema": schema})
    loaded = datasets.load_dataset(storage, created.id)
    assert loaded is not None and loaded.schema == created.schema
    listed = datasets.list_datasets(storage=storage, principal=OWNER, cursor=None, limit=100)
    assert created.id in [item["id"] for item in listed["items"]]


def test_a_dataset_whose_schema_does_not_read_is_left_out_of_lists(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    owner = Principal(user_id="unreadable-test", user_details="u", identity_provider="aad", roles=frozenset())
    body = {"name": "fine", "schema": {"fields": [{"name": "a"}]}}
    fine = datasets.create_dataset(storage=storage, owner=owner, body=body)
    broken = datasets.create_dataset(storage=storage, owner=owner, body={**body, "name": "broken"})
    jobs.datasets_table(storage).update_entity(
        {"PartitionKey": broken.id, "RowKey": jobs.DATASET_ROW, "schema": '{"fields": 5}'}
    )
    listed = datasets.list_datasets(storage=storage, principal=owner, cursor=None, limit=100)
    assert [item["id"] for item in listed["items"]] == [fine.id]
    assert f"Dataset {broken.id} cannot be read; it is left out" in caplog.text


def test_a_dataset_row_missing_its_owner_is_left_out_of_an_admins_list(storage: Storage) -> None:
    """A row no Loadbay version wrote (restored by hand, say) costs the list one item, not a 500."""
    odd = new_id()
    datasets_table = jobs.datasets_table(storage)
    datasets_table.create_entity({"PartitionKey": odd, "RowKey": jobs.DATASET_ROW, "name": "odd"})
    try:
        admin = Principal(
            user_id="admin-list", user_details="a", identity_provider="aad", roles=frozenset({"admin"})
        )
        listed = datasets.list_datasets(storage=storage, principal=admin, cursor=None, limit=1000)
        assert odd not in [item["id"] for item in listed["items"]]
    finally:
        datasets_table.delete_entity(odd, jobs.DATASET_ROW)
