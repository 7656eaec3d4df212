"""Sortable unique ids (ULIDs): 48-bit millisecond time + 80 random bits, Crockford base32."""

from __future__ import annotations

import os
import re
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_ULID = re.compile(r"[0-9a-hjkmnp-tv-z]{26}")


def new_id(now_ms: int | None = None) -> str:
    """Return a new lowercase ULID; ids made later sort after ids made earlier (to the millisecond)."""
    timestamp = int(time.time() * 1000) if now_ms is None else now_ms
    value = (timestamp << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def is_id(text: str) -> bool:
    """Tell whether `text` has the shape of an id made by `new_id`."""
    return _ULID.fullmatch(text) is not None  # "$" would also let "<id>\n" through
