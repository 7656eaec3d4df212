"""Read a dataset's rows: pages in key order with continuation cursors, and single rows by key."""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from core import rows
from core.datasets import Dataset
from core.errors import Conflict, NotFound
from core.paging import decode_cursor, encode_cursor, first_page
from core.storage import Storage


def browse_rows(*, storage: Storage, dataset: Dataset, cursor: str | None, limit: int) -> dict[str, Any]:
    """Return one page of rows ({key, values}) and the cursor of the next page."""
    table = storage.tables.get_table_client(dataset.rows_table)
    state = decode_cursor(cursor)
    if state is not None and state.get("g") != dataset.rows_table:  # pages of two generations would mix
        raise Conflict(
            "The dataset's rows were replaced since this cursor was handed out; "
            "start again from the first page, without a cursor."
        )
    try:
        entities, token = first_page(table.list_entities(results_per_page=limit), state and state.get("t"))
    except ResourceNotFoundError:
        return {"items": [], "next": None}  # nothing imported yet
    items = [rows.row_view(dataset.schema, entity) for entity in entities]
    return {"items": items, "next": encode_cursor({"g": dataset.rows_table, "t": token} if token else None)}


def get_row(*, storage: Storage, dataset: Dataset, key: str) -> dict[str, Any]:
    """Return the row with this key, or raise NotFound."""
    table = storage.tables.get_table_client(dataset.rows_table)
    row_key = rows.row_key_of(key)
    try:
        entity = table.get_entity(rows.partition_of(row_key), row_key)
    except ResourceNotFoundError as error:
        raise NotFound(f"Dataset {dataset.id} has no row with key {key!r}.") from error
    return rows.row_view(dataset.schema, entity)
