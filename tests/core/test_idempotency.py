"""Idempotency-Keys against the session's Azurite: how long they are kept."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from azure.data.tables import UpdateMode

from core import idempotency, jobs
from core.ids import new_id
from core.storage import Storage


def _answered(storage: Storage, user: str, request: str) -> None:
    assert idempotency.claim(storage, user_id=user, key="k", request=request) is None
    answer = idempotency.answer_of(201, b'{"id": "1"}', "/api/x/1")
    idempotency.remember(storage, user_id=user, key="k", answer=answer)


def test_a_key_is_forgotten_a_day_after_its_claim(storage: Storage) -> None:
    user = f"idem-{new_id()}"
    _answered(storage, user, "POST /x")
    a_day_on = jobs.now() + idempotency.KEEP_KEYS + timedelta(minutes=1)
    assert idempotency.forget_old_keys(storage, now=a_day_on) >= 1
    # Sent again now, the same key is new work: the claim is this request's.
    assert idempotency.claim(storage, user_id=user, key="k", request="POST /x") is None


def test_a_key_claimed_within_the_day_is_kept(storage: Storage) -> None:
    user = f"idem-{new_id()}"
    _answered(storage, user, "POST /y")
    idempotency.forget_old_keys(storage)
    replayed = idempotency.claim(storage, user_id=user, key="k", request="POST /y")
    assert replayed is not None and replayed.status == 201


def test_a_key_claimed_again_while_the_sweep_ran_stays(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = f"idem-{new_id()}"
    _answered(storage, user, "POST /z")
    table = idempotency._table(storage)
    query = table.query_entities

    def touched_meanwhile(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for entity in query(*args, **kwargs):
            # Between the sweep's read and its delete, the row changes (a stale claim taken over, say).
            table.update_entity(
                {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"], "claimedAt": jobs.now()},
                mode=UpdateMode.MERGE,
            )
            yield entity

    monkeypatch.setattr(table, "query_entities", touched_meanwhile)
    monkeypatch.setattr(idempotency, "_table", lambda _storage: table)
    a_day_on = jobs.now() + idempotency.KEEP_KEYS + timedelta(minutes=1)
    idempotency.forget_old_keys(storage, now=a_day_on)
    monkeypatch.undo()
    replayed = idempotency.claim(storage, user_id=user, key="k", request="POST /z")
    assert replayed is not None and replayed.status == 201  # kept: the row it read had changed
