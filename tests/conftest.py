"""Test session fixtures: one real Azurite for the whole session, on free ports, in memory."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from devhost.azurite import Azurite  # noqa: E402


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """A real Azurite process for the test session (in memory, free ports)."""
    existing = os.environ.get("LOADBAY_TEST_AZURITE")
    if existing:
        # Lets `make test` or a developer share one Azurite across runs: "blob,queue,table" ports.
        blob, queue, table = (int(port) for port in existing.split(","))
        yield Azurite(blob_port=blob, queue_port=queue, table_port=table)
        return
    with Azurite() as instance:
        yield instance


@pytest.fixture(scope="session")
def storage_connection_string(azurite: Azurite) -> str:
    """Connection string of the session's Azurite."""
    return azurite.connection_string


def span_exporter() -> InMemorySpanExporter:
    """Return a new in-memory exporter of every span the process records from now on.

    One SDK tracer provider serves the whole test session (OpenTelemetry refuses to replace it): the
    first caller installs it, later ones add their exporter to it.
    """
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter
