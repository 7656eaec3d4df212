"""Idempotency-Keys against the session's Azurite: how long they are kept."""

from __future__ import annotations

from datetime import timedelta

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
