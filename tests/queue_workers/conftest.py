"""Queue workers called in-process (no host) against an Azurite of their own, through the app's runtime."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core import runtime as runtime_module
from core.runtime import Runtime, runtime
from devhost.azurite import Azurite


@pytest.fixture(scope="module")
def own_azurite() -> Iterator[Azurite]:
    # Its own emulator: the end-to-end devhost polls the shared one and would take these messages.
    with Azurite() as azurite:
        yield azurite


@pytest.fixture
def rt(own_azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """The runtime (storage, settings) the workers use, pointed at this module's Azurite."""
    monkeypatch.setenv("AzureWebJobsStorage", own_azurite.connection_string)
    runtime_module.runtime.cache_clear()
    yield runtime()
    runtime_module.runtime.cache_clear()
