"""Fixtures of the core tests that use storage: Loadbay's own resources on the session's Azurite."""

from __future__ import annotations

import pytest

from core.settings import StorageConfig
from core.storage import Storage


@pytest.fixture(scope="module")
def storage(storage_connection_string: str) -> Storage:
    connected = Storage.connect(StorageConfig(connection_string=storage_connection_string))
    connected.ensure_resources()
    return connected
