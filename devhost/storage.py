"""Shared async Azure Storage clients, keyed by the app setting that holds the connection string."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables.aio import TableServiceClient
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from devhost.config import ConfigError

DEFAULT_CONNECTION = "AzureWebJobsStorage"
# The storage SDKs back off 15 s, then 18 s, ... by default: a missing Azurite would stall start-up for
# over a minute. Listeners retry on their own schedule, so short SDK retries are enough.
_STORAGE_RETRY: dict[str, Any] = {
    "retry_total": 3,
    "initial_backoff": 1,
    "increment_base": 2,
    "random_jitter_range": 1,
}
_TABLE_RETRY: dict[str, Any] = {"retry_total": 3, "retry_backoff_factor": 0.5}
# What `UseDevelopmentStorage=true` means to the .NET SDKs: Azurite on its default ports.
_DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


class StorageAccounts:
    """Resolve `connection` settings and hand out one client per account and service."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._queue_services: dict[str, QueueServiceClient] = {}
        self._blob_services: dict[str, BlobServiceClient] = {}
        self._table_services: dict[str, TableServiceClient] = {}
        self._queues: dict[tuple[str, str], QueueClient] = {}
        self._created: set[tuple[str, str]] = set()
        self._create_lock = asyncio.Lock()

    def connection_string(self, setting: str | None) -> str:
        """Find the connection string a binding names (the host also tries AzureWebJobs<connection>)."""
        name = setting or DEFAULT_CONNECTION
        value = self._environ.get(name) or self._environ.get(f"AzureWebJobs{name}")
        if not value:
            raise ConfigError(f"app setting {name!r} (a storage connection string) is not set")
        if value.replace(" ", "").lower().startswith("usedevelopmentstorage=true"):
            return _DEVELOPMENT_STORAGE
        return value

    def has_connection(self, setting: str | None) -> bool:
        """Say whether the connection setting is present."""
        name = setting or DEFAULT_CONNECTION
        return bool(self._environ.get(name) or self._environ.get(f"AzureWebJobs{name}"))

    def queue_service(self, setting: str | None) -> QueueServiceClient:
        """Return the queue service client for a connection setting."""
        key = self.connection_string(setting)
        if key not in self._queue_services:
            self._queue_services[key] = QueueServiceClient.from_connection_string(key, **_STORAGE_RETRY)
        return self._queue_services[key]

    def blob_service(self, setting: str | None) -> BlobServiceClient:
        """Return the blob service client for a connection setting."""
        key = self.connection_string(setting)
        if key not in self._blob_services:
            self._blob_services[key] = BlobServiceClient.from_connection_string(key, **_STORAGE_RETRY)
        return self._blob_services[key]

    def table_service(self, setting: str | None) -> TableServiceClient:
        """Return the table service client for a connection setting."""
        key = self.connection_string(setting)
        if key not in self._table_services:
            self._table_services[key] = TableServiceClient.from_connection_string(key, **_TABLE_RETRY)
        return self._table_services[key]

    def queue(self, setting: str | None, name: str) -> QueueClient:
        """Return a client for one queue (messages are sent and read as raw text)."""
        key = (self.connection_string(setting), name)
        if key not in self._queues:
            self._queues[key] = self.queue_service(setting).get_queue_client(name)
        return self._queues[key]

    async def ensure_queue(self, setting: str | None, name: str) -> QueueClient:
        """Return a queue client, creating the queue once if it does not exist (the host does)."""
        client = self.queue(setting, name)
        key = (self.connection_string(setting), name)
        if key in self._created:
            return client
        async with self._create_lock:
            if key not in self._created:
                with contextlib.suppress(ResourceExistsError):
                    await client.create_queue()
                self._created.add(key)
        return client

    async def close(self) -> None:
        """Close every client and its connection pool."""
        clients: list[QueueClient | QueueServiceClient | BlobServiceClient | TableServiceClient] = [
            *self._queues.values(),
            *self._queue_services.values(),
            *self._blob_services.values(),
            *self._table_services.values(),
        ]
        for client in clients:
            await client.close()
        self._queues.clear()
        self._queue_services.clear()
        self._blob_services.clear()
        self._table_services.clear()
