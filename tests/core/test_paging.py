"""List cursors are opaque and round-trip; anything else is a 400. Page sizes are checked."""

from __future__ import annotations

import base64
import json
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import BadRequest, LimitExceeded
from core.paging import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor, page_limit

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)
STATES = st.dictionaries(st.text(), JSON_VALUES, max_size=6)


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"PartitionKey": "p03", "RowKey": "a%2Fb"},
        {"nextPartitionKey": "1!8!cDA1", "nextRowKey": None},
        {"offset": 2000, "nested": {"list": [1, "two", True]}},
        {"text": "é中😀/+=?&"},
    ],
)
def test_cursors_round_trip(state: dict[str, Any]) -> None:
    cursor = encode_cursor(state)
    assert cursor is not None
    assert decode_cursor(cursor) == state


@given(STATES)
def test_any_state_round_trips_through_a_url_safe_cursor(state: dict[str, Any]) -> None:
    cursor = encode_cursor(state)
    assert cursor is not None
    assert set(cursor) <= set(string.ascii_letters + string.digits + "-_")
    assert decode_cursor(cursor) == state


def test_no_state_means_no_cursor_and_back() -> None:
    assert encode_cursor(None) is None
    assert decode_cursor(None) is None
    assert decode_cursor("") is None


def test_a_cursor_with_its_padding_put_back_still_decodes() -> None:
    cursor = encode_cursor({"a": 1})
    assert cursor is not None
    assert decode_cursor(cursor + "=" * (-len(cursor) % 4)) == {"a": 1}


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!!",
        "a",
        "é",
        "%7B%7D",
        b64("not json"),
        b64("[1, 2]"),
        b64('"text"'),
        b64("42"),
        b64("null"),
        b64("{"),
        b64("[" * 100_000 + "]" * 100_000),  # deep enough to exhaust the JSON decoder's recursion
        base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),
    ],
)
def test_garbage_cursors_are_bad_requests(cursor: str) -> None:
    with pytest.raises(BadRequest) as caught:
        decode_cursor(cursor)
    assert caught.value.status == 400


@given(st.text(min_size=1))
def test_any_text_is_a_state_or_a_bad_request(cursor: str) -> None:
    try:
        state = decode_cursor(cursor)
    except BadRequest:
        return
    assert isinstance(state, dict)


def test_a_hand_made_object_cursor_is_accepted_as_a_position() -> None:
    # Opaque, not signed: a cursor is only a position, so a crafted object is just another position.
    assert decode_cursor(b64(json.dumps({"RowKey": "x"}))) == {"RowKey": "x"}


@pytest.mark.parametrize(("value", "expected"), [(None, DEFAULT_LIMIT), ("", DEFAULT_LIMIT)])
def test_no_limit_means_the_default(value: str | None, expected: int) -> None:
    assert page_limit(value) == expected


def test_the_default_can_be_chosen_by_the_list() -> None:
    assert page_limit(None, default=25) == 25
    assert page_limit("30", default=25) == 30


@pytest.mark.parametrize(
    ("value", "expected"), [("1", 1), ("50", 50), ("007", 7), (str(MAX_LIMIT), MAX_LIMIT)]
)
def test_whole_numbers_in_range_are_the_limit(value: str, expected: int) -> None:
    assert page_limit(value) == expected


@pytest.mark.parametrize("value", ["0", "000", "-1", "abc", "1.5", "1e3", " 5", "5 ", "+5", "0x10", "NaN"])
def test_other_limits_are_bad_requests(value: str) -> None:
    with pytest.raises(BadRequest) as caught:
        page_limit(value)
    assert caught.value.status == 400
    assert repr(value) in caught.value.detail


@pytest.mark.parametrize("value", [str(MAX_LIMIT + 1), "99999999999999999999"])
def test_limits_above_the_maximum_are_refused_as_too_large(value: str) -> None:
    with pytest.raises(LimitExceeded) as caught:
        page_limit(value)
    assert caught.value.status == 413
    assert str(MAX_LIMIT) in caught.value.detail


def test_the_maximum_can_be_chosen_by_the_list() -> None:
    assert page_limit("20", maximum=20) == 20
    with pytest.raises(LimitExceeded):
        page_limit("21", maximum=20)


@given(st.text(alphabet=string.printable, max_size=12))
def test_any_ascii_limit_is_in_range_or_refused(value: str) -> None:
    try:
        limit = page_limit(value)
    except (BadRequest, LimitExceeded):
        return
    assert 1 <= limit <= MAX_LIMIT


@pytest.mark.parametrize("value", ["\u00b2", "\u0661\u0660", "1" * 5000])
def test_odd_digits_and_huge_numbers_are_4xx_not_crashes(value: str) -> None:
    with pytest.raises((BadRequest, LimitExceeded)):
        page_limit(value)
