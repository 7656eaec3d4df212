"""Ids sort by creation time and are recognised by shape."""

from __future__ import annotations

from core.ids import is_id, new_id


def test_ids_sort_by_time_and_have_a_fixed_shape() -> None:
    earlier, later = new_id(now_ms=1_700_000_000_000), new_id(now_ms=1_700_000_000_001)
    assert earlier < later
    assert len(earlier) == 26 and is_id(earlier)
    assert len({new_id() for _ in range(1000)}) == 1000


def test_foreign_shapes_are_not_ids() -> None:
    assert not is_id("")
    assert not is_id("../../etc/passwd")
    assert not is_id("01HZZZZZZZZZZZZZZZZZZZZZZZ")  # upper case is not what new_id makes
    assert not is_id("u" * 26)  # 'u' is not in the Crockford alphabet
    assert not is_id(new_id() + "\n")  # "$" would also match before a final newline
