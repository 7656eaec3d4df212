"""Durable test fixtures: the conformance app in-process, on its own task hub per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from devhost import Host
from devhost.azurite import Azurite, free_port
from tests.devhost.durable.support import CONFORMANCE, DevhostProcess


@pytest.fixture
def hub() -> str:
    """A task hub name of this test's own (its tables and container are fresh)."""
    return f"T{uuid.uuid4().hex[:16]}"


@pytest.fixture
def conformance(load_host: Callable[..., Host], hub: str) -> Host:
    """The conformance app loaded against the session Azurite, on this test's task hub."""
    return load_host(CONFORMANCE, TEST_HUB=hub, DEVHOST_DURABLE_POLL_SECONDS="0.2")


@pytest.fixture
def start_devhost(azurite: Azurite, hub: str) -> Iterator[Callable[..., DevhostProcess]]:
    """Start `python -m devhost` children serving the conformance app on this test's hub; stopped by PID."""
    started: list[DevhostProcess] = []

    def start(**settings: str) -> DevhostProcess:
        env = {
            **os.environ,
            "AzureWebJobsStorage": azurite.connection_string,
            "TEST_HUB": hub,
            "DEVHOST_DURABLE_LEASE_SECONDS": "2",
            "DEVHOST_DURABLE_POLL_SECONDS": "0.2",
            **settings,
        }
        child = DevhostProcess(CONFORMANCE, free_port(), env)
        started.append(child)
        child.wait_for("Host started")
        return child

    yield start
    for child in started:
        child.close()
