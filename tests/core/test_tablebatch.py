"""Hand-built transactions against the session's real Azurite: they store what the SDK's would."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from azure.data.tables import EdmType, EntityProperty, TableClient, TableServiceClient
from azure.data.tables._serialize import _add_entity_properties

from core.ids import new_id
from core.tablebatch import (
    BatchRejected,
    BatchTooLarge,
    Encoded,
    entity_from_json,
    entity_json,
    submit_batch,
)


@pytest.fixture
def tables(storage_connection_string: str) -> Iterator[tuple[TableClient, TableClient]]:
    """Two fresh tables: one written by submit_batch, one by the SDK's submit_transaction."""
    service = TableServiceClient.from_connection_string(storage_connection_string)
    names = [f"batch{new_id()}", f"sdk{new_id()}"]
    clients = [service.create_table(name) for name in names]
    yield clients[0], clients[1]
    for name in names:
        service.delete_table(name)


def _entities(partition: str, count: int) -> list[dict[str, object]]:
    return [
        {
            "PartitionKey": partition,
            "RowKey": f"row '{number}' %20+&\u00e9",  # quotes, URL-special and non-ASCII characters
            "text": f'caf\u00e9 \u2603 \U0001f600 "quoted" back\\slash\nline\ttab {number}',
            "small": number,
            "big": EntityProperty(2**40 + number, EdmType.INT64),
            "ratio": number / 7,
            "nan": EntityProperty("NaN", EdmType.DOUBLE),
            "flag": number % 2 == 0,
            "moment": datetime(2024, 2, 29, 12, 30, number % 60, tzinfo=UTC),
            "empty": "",
        }
        for number in range(count)
    ]


def _stored(table: TableClient) -> list[dict[str, object]]:
    def plain(value: object) -> object:
        if isinstance(value, float) and math.isnan(value):
            return "NaN"
        return value

    found = [
        {name: plain(value) for name, value in entity.items()} | {"type": type(entity["big"]).__name__}
        for entity in table.list_entities()
    ]
    return sorted(found, key=lambda entity: str(entity["RowKey"]))


def test_a_transaction_stores_what_the_sdk_stores(tables: tuple[TableClient, TableClient]) -> None:
    ours, theirs = tables
    entities = _entities("p00", 100)
    submit_batch(ours, [("create", entity) for entity in entities])
    theirs.submit_transaction([("create", entity) for entity in entities])
    assert len(_stored(ours)) == 100
    assert _stored(ours) == _stored(theirs)


def _encoded(entity: dict[str, object]) -> Encoded:
    return Encoded(str(entity["PartitionKey"]), str(entity["RowKey"]), entity_json(entity))


def test_entities_encoded_ahead_store_what_the_sdk_stores(tables: tuple[TableClient, TableClient]) -> None:
    ours, theirs = tables
    entities = _entities("p00", 100)
    submit_batch(ours, [("create", _encoded(entity)) for entity in entities[:60]])
    submit_batch(ours, [("upsert", _encoded(entity)) for entity in entities[50:]])  # ten replaced
    theirs.submit_transaction([("create", entity) for entity in entities])
    assert len(_stored(ours)) == 100
    assert _stored(ours) == _stored(theirs)
    with pytest.raises(BatchRejected) as refused:
        submit_batch(ours, [("create", _encoded(entities[99]))])
    assert refused.value.status == 409


def test_entity_from_json_refuses_a_type_it_was_not_written_with() -> None:
    with pytest.raises(ValueError, match=r"Edm\.Guid"):
        entity_from_json('{"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "id@odata.type": "Edm.Guid"}')


def test_upsert_replaces_whole_entities_and_inserts_missing_ones(
    tables: tuple[TableClient, TableClient],
) -> None:
    table, _ = tables
    first = _entities("p01", 3)
    submit_batch(table, [("create", entity) for entity in first[:2]])
    replaced = [{"PartitionKey": "p01", "RowKey": entity["RowKey"], "text": "new"} for entity in first]
    submit_batch(table, [("upsert", entity) for entity in replaced])
    stored = {entity["RowKey"]: dict(entity) for entity in table.list_entities()}
    assert set(stored) == {entity["RowKey"] for entity in first}
    assert all(
        entity == {"PartitionKey": "p01", "RowKey": key, "text": "new"} for key, entity in stored.items()
    )


def test_an_existing_key_refuses_the_whole_transaction(tables: tuple[TableClient, TableClient]) -> None:
    table, _ = tables
    entities = _entities("p02", 10)
    submit_batch(table, [("create", entities[4])])
    with pytest.raises(BatchRejected) as refused:
        submit_batch(table, [("create", entity) for entity in entities])
    assert refused.value.status == 409
    assert refused.value.code == "EntityAlreadyExists"
    assert [entity["RowKey"] for entity in table.list_entities()] == [entities[4]["RowKey"]]


def test_an_entity_the_service_will_not_store_is_a_refusal(tables: tuple[TableClient, TableClient]) -> None:
    table, _ = tables
    too_long = {"PartitionKey": "p03", "RowKey": "a", "text": "x" * 40_000}  # > 32K UTF-16 units
    with pytest.raises(BatchRejected) as refused:
        submit_batch(table, [("create", too_long)])
    assert 400 <= refused.value.status < 500
    assert list(table.list_entities()) == []


def test_shapes_the_service_would_refuse_are_caught_before_sending(
    tables: tuple[TableClient, TableClient],
) -> None:
    table, _ = tables
    with pytest.raises(ValueError, match="1 to 100"):
        submit_batch(table, [])
    with pytest.raises(ValueError, match="1 to 100"):
        submit_batch(table, [("create", entity) for entity in _entities("p04", 101)])
    with pytest.raises(ValueError, match="share a PartitionKey"):
        submit_batch(table, [("create", _entities("a", 1)[0]), ("create", _entities("b", 1)[0])])
    with pytest.raises(ValueError, match="unsupported operation"):
        submit_batch(table, [("delete", _entities("p04", 1)[0])])


def test_a_body_over_4_mib_is_refused_before_sending(tables: tuple[TableClient, TableClient]) -> None:
    table, _ = tables
    wide = [
        {"PartitionKey": "p05", "RowKey": f"{n}", "a": "x" * 30_000, "b": "y" * 30_000} for n in range(100)
    ]
    with pytest.raises(BatchTooLarge, match="over 4 MiB"):
        submit_batch(table, [("create", entity) for entity in wide])
    assert list(table.list_entities()) == []
    submit_batch(table, [("create", entity) for entity in wide[:50]])  # half of it fits
    assert len(list(table.list_entities())) == 50


def test_entity_json_writes_what_the_sdk_writes_without_string_annotations() -> None:
    entity = _entities("p00", 3)[2] | {"none": None, "zero": 0.0, "tiny": 5e-324, "big_float": 1e300}
    expected = {
        name: value
        for name, value in _add_entity_properties(entity).items()
        if value != "Edm.String" and name != "none"
    }
    assert json.loads(entity_json(entity)) == expected
