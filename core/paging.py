"""Opaque list cursors and page sizes, the same for every list the API answers."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any, Final

from azure.core.exceptions import HttpResponseError

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


def bind_cursor(scope: str, page: dict[str, Any]) -> dict[str, Any]:
    """Tie a page's `next` cursor to the list it continues (`scope`, e.g. ``rows:<dataset id>``).

    The cursor gets a check tag over the scope and the position, so `open_cursor` refuses a cursor
    from another list, or one that was altered, with a 400 instead of restarting or skipping silently.
    """
    cursor = page.get("next")
    if cursor:
        page["next"] = f"{cursor}.{_tag(scope, cursor)}"
    return page


def open_cursor(scope: str, cursor: str | None) -> str | None:
    """Return the position inside a cursor that `bind_cursor` handed out for `scope`, or raise BadRequest."""
    if not cursor:
        return None
    position, dot, tag = cursor.rpartition(".")
    if not dot or not position or not hmac.compare_digest(tag.encode(), _tag(scope, position).encode()):
        raise BadRequest("The cursor is not one this list handed out; start again without it.")
    return position


def _tag(scope: str, position: str) -> str:
    # Not a secret: it catches a cursor used on another list or edited, not a deliberate forgery
    # (a position only moves within a query the server already limits to what the caller may read).
    return hashlib.sha256(f"{scope}\n{position}".encode()).hexdigest()[:16]


def page_limit(value: str | None, *, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    """Read a `limit` query parameter: a whole number from 1 to maximum."""
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()) or int(value[:12]) < 1:
        raise BadRequest(f"limit must be a whole number from 1 to {maximum}; got {value[:20]!r}.")
    if len(value) > 12 or int(value) > maximum:
        raise LimitExceeded(f"limit is {value[:20]}; the most one page holds is {maximum}.")
    return int(value)


MAX_EMPTY_PAGES: Final = 20


def first_page(paged: Any, state: Any) -> tuple[list[Any], dict[str, Any] | None]:
    """Read one page of a Table Storage query from a continuation state; return it and the next state.

    Azure may answer a cross-partition query with an empty page and a continuation token: such pages
    are skipped (up to MAX_EMPTY_PAGES), so an empty answer means the end. A continuation state that
    this API did not hand out is refused with a 400.
    """
    if state is not None and (
        not isinstance(state, dict)
        or not all(isinstance(key, str) and isinstance(value, str) for key, value in state.items())
    ):
        raise BadRequest("The cursor is not one this API handed out; start again without it.")
    try:
        pages = paged.by_page(continuation_token=state)
        items: list[Any] = []
        for _ in range(MAX_EMPTY_PAGES):
            items = list(next(pages, []))
            if items or not pages.continuation_token:
                break
    except (ValueError, TypeError, KeyError) as error:
        raise BadRequest("The cursor is not one this API handed out; start again without it.") from error
    except HttpResponseError as error:
        if state is not None and error.status_code == 400:
            raise BadRequest("The cursor is not one this API handed out; start again without it.") from error
        raise
    return items, pages.continuation_token
