"""Upload limits and profiling of stored uploads, against the session's Azurite."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core import uploads
from core.auth import Principal
from core.errors import LimitExceeded
from core.settings import Settings
from core.storage import Storage

OWNER = Principal(user_id="upload-review", user_details="u", identity_provider="aad", roles=frozenset())


def test_an_inline_body_over_the_upload_limit_is_refused_naming_that_limit(storage: Storage) -> None:
    settings = replace(Settings(storage=storage.config), upload_max_bytes=10)
    with pytest.raises(LimitExceeded, match=r"The file is 12 bytes; the limit is 10 bytes\."):
        uploads.store_upload(
            storage=storage, settings=settings, owner=OWNER, file_name="a.csv", body=b"a,b\n1,2\n3,4\n"
        )
    stored = uploads.store_upload(
        storage=storage, settings=settings, owner=OWNER, file_name="a.csv", body=b"a,b\n1,2\n"
    )
    assert stored["maxBytes"] == 10
