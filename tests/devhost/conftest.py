"""devhost test fixtures: sample apps, unique queue names and queue helpers on the session's Azurite."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devhost import Host
from devhost.azurite import Azurite
from tests.devhost.support import APPS, Queues


@pytest.fixture
def queues(azurite: Azurite) -> Iterator[Queues]:
    """Queue helpers bound to the session Azurite."""
    helper = Queues(azurite.connection_string)
    yield helper
    helper.close()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Make a queue-safe name unique to this test, so tests never see each other's messages."""
    suffix = uuid.uuid4().hex[:10]
    return lambda prefix: f"{prefix}-{suffix}"


@pytest.fixture
def load_host(azurite: Azurite) -> Iterator[Callable[..., Host]]:
    """Load a sample app in-process against the session Azurite; the environment is restored afterwards."""
    hosts: list[Host] = []

    def load(app: str | Path, **settings: str) -> Host:
        app_dir = app if isinstance(app, Path) else APPS / app
        overrides = {"AzureWebJobsStorage": azurite.connection_string, **settings}
        host = Host.load(app_dir, environ_overrides=overrides)
        hosts.append(host)
        return host

    yield load
    for host in reversed(hosts):
        host.close()
