"""Opaque list cursors and page sizes, the same for every list the API answers."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Final

from core.errors import BadRequest, LimitExceeded

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1_000


def encode_cursor(state: dict[str, Any] | None) -> str | None:
    """Wrap a position as an opaque URL-safe cursor (None when there is nothing more)."""
    if state is None:
        return None
    text = json.dumps(state, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    """Unwrap a cursor from encode_cursor; refuse anything else with a 400."""
    if not cursor:
        return None
    try:
        state = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, RecursionError) as error:
        raise BadRequest("The cursor is not one this API handed out; start again without it.") from error
    if not isinstance(state, dict):
        raise BadRequest("The cursor is not one this API handed out; start again without it.")
    return state


def page_limit(value: str | None, *, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    """Read a `limit` query parameter: a whole number from 1 to maximum."""
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()) or int(value[:12]) < 1:
        raise BadRequest(f"limit must be a whole number from 1 to {maximum}; got {value[:20]!r}.")
    if len(value) > 12 or int(value) > maximum:
        raise LimitExceeded(f"limit is {value[:20]}; the most one page holds is {maximum}.")
    return int(value)


def first_page(paged: Any, state: dict[str, Any] | None) -> tuple[list[Any], dict[str, Any] | None]:
    """Read one page of a Table Storage query from a continuation state; return it and the next state."""
    pages = paged.by_page(continuation_token=state)
    items = list(next(pages, []))
    token = pages.continuation_token if items else None
    return items, token
