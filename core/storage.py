"""Storage clients, created once per process and shared; names of every table, container and queue."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import requests
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableServiceClient, TableTransactionError
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, UserDelegationKey, generate_blob_sas
from azure.storage.queue import (
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from core.settings import StorageConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

UPLOADS_TABLE = "uploads"
DATASETS_TABLE = "datasets"  # datasets, their jobs, chunk records and outbox rows (see core.jobs)
JOBS_TABLE = "jobs"  # job id -> dataset id
ROW_ERRORS_TABLE = "rowerrors"
IDEMPOTENCY_TABLE = "idempotency"
UPLOADS_CONTAINER = "uploads"
PROFILES_CONTAINER = "profiles"
EXPORTS_CONTAINER = "exports"
WORK_CONTAINER = "importwork"  # an import's intermediate files (key runs, duplicate rows)
PROFILE_QUEUE = "profile-requests"
IMPORT_QUEUE = "import-requests"
EXPORT_QUEUE = "export-requests"
DELETE_QUEUE = "dataset-deletes"

# Downloads in 4 MiB pieces: the SDK's default first GET is 32 MiB, held in memory by every reader at once.
BLOB_OPTIONS: dict[str, Any] = {"max_single_get_size": 4 * 1024 * 1024, "max_chunk_get_size": 4 * 1024 * 1024}

# Connections kept open to each service. requests keeps 10 by default; an import writes from up to
# 4 activities x APPLY_THREADS threads while HTTP triggers and the sweepers also talk to Table Storage,
# and a full pool closes the extra connections instead of reusing them.
POOL_CONNECTIONS: Final = 32
CA_BUNDLE_VARIABLES: Final = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # as requests reads them, in order

TABLES = (UPLOADS_TABLE, DATASETS_TABLE, JOBS_TABLE, ROW_ERRORS_TABLE, IDEMPOTENCY_TABLE)
CONTAINERS = (UPLOADS_CONTAINER, PROFILES_CONTAINER, EXPORTS_CONTAINER, WORK_CONTAINER)
QUEUES = (PROFILE_QUEUE, IMPORT_QUEUE, EXPORT_QUEUE, DELETE_QUEUE)


@dataclass
class Storage:
    """The three service clients of one account, plus the queue clients Loadbay sends to."""

    config: StorageConfig
    tables: TableServiceClient
    blobs: BlobServiceClient
    queues: QueueServiceClient
    _queue_clients: dict[str, QueueClient] = field(default_factory=dict)
    _delegation_key: tuple[UserDelegationKey, datetime] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def connect(cls, config: StorageConfig, credential: TokenCredential | None = None) -> Storage:
        """Create the clients; with no connection string, authenticate with a managed identity."""
        if config.connection_string:
            return cls(
                config=config,
                tables=TableServiceClient.from_connection_string(
                    config.connection_string, transport=_pooled_transport()
                ),
                blobs=BlobServiceClient.from_connection_string(config.connection_string, **BLOB_OPTIONS),
                queues=QueueServiceClient.from_connection_string(config.connection_string),
            )
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential(managed_identity_client_id=config.client_id)
        assert config.table_url and config.blob_url and config.queue_url
        return cls(
            config=config,
            tables=TableServiceClient(
                endpoint=config.table_url, credential=credential, transport=_pooled_transport()
            ),
            blobs=BlobServiceClient(account_url=config.blob_url, credential=credential, **BLOB_OPTIONS),
            queues=QueueServiceClient(account_url=config.queue_url, credential=credential),
        )

    def queue(self, name: str) -> QueueClient:
        """Return a client for `name` that speaks base64, as queue triggers expect."""
        with self._lock:
            if name not in self._queue_clients:
                self._queue_clients[name] = self.queues.get_queue_client(
                    name,
                    message_encode_policy=TextBase64EncodePolicy(),
                    message_decode_policy=TextBase64DecodePolicy(),
                )
            return self._queue_clients[name]

    def send(self, queue_name: str, message: dict[str, Any]) -> None:
        """Send a JSON command (ids only, never file contents) to a queue."""
        self.queue(queue_name).send_message(json.dumps(message, separators=(",", ":")))

    def send_to_poison(self, queue_name: str, text: str) -> None:
        """Park a message that no retry can fix where admins look: `<queue>-poison`."""
        poison = self.queue(f"{queue_name}-poison")
        with contextlib.suppress(ResourceExistsError):
            poison.create_queue()
        poison.send_message(text)

    def ensure_resources(self) -> None:
        """Create every table, container and queue Loadbay uses, if missing (idempotent)."""
        for table in TABLES:
            self.tables.create_table_if_not_exists(table)
        for container in CONTAINERS:
            with contextlib.suppress(ResourceExistsError):
                self.blobs.create_container(container)
        for queue in QUEUES:
            with contextlib.suppress(ResourceExistsError):
                self.queues.create_queue(queue)

    def blob_sas_url(
        self,
        container: str,
        blob: str,
        permission: BlobSasPermissions,
        minutes: int,
        *,
        content_disposition: str | None = None,
    ) -> tuple[str, datetime]:
        """Sign a URL for one blob (account-key SAS locally, user-delegation SAS with an identity)."""
        now = datetime.now(UTC)
        # Start a little in the past: the client's and the service's clocks never agree exactly.
        start, expiry = now - timedelta(minutes=5), now + timedelta(minutes=minutes)
        client = self.blobs.get_blob_client(container, blob)
        credential = self.blobs.credential
        if self.config.connection_string:
            token = generate_blob_sas(
                account_name=client.account_name or "",
                container_name=container,
                blob_name=blob,
                account_key=credential.account_key,
                permission=permission,
                start=start,
                expiry=expiry,
                # Azurite speaks http; a real account's key-signed URL must not work over plain http.
                protocol="https" if client.url.startswith("https://") else None,
                content_disposition=content_disposition,
            )
        else:
            token = generate_blob_sas(
                account_name=client.account_name or "",
                container_name=container,
                blob_name=blob,
                user_delegation_key=self._user_delegation_key(now),
                permission=permission,
                start=start,
                expiry=expiry,
                protocol="https",
                content_disposition=content_disposition,
            )
        return f"{client.url}?{token}", expiry

    def _user_delegation_key(self, now: datetime) -> UserDelegationKey:
        # A delegation key is valid for up to 7 days; keep one for a day and renew well before it ends.
        with self._lock:
            if self._delegation_key is None or self._delegation_key[1] < now + timedelta(hours=1):
                expiry = now + timedelta(days=1)
                key = self.blobs.get_user_delegation_key(now - timedelta(minutes=5), expiry)
                self._delegation_key = (key, expiry)
            return self._delegation_key[0]


def _pooled_transport() -> RequestsTransport:
    """A transport like the SDK's default, with room for POOL_CONNECTIONS connections per host.

    requests reads proxies, a CA bundle and ~/.netrc from the environment again for every request when
    the session trusts it (about 1 ms of CPU each time, measured: most of a table transaction's client
    time besides its body). So the session trusts the environment only when a proxy is set (whose
    no_proxy rules requests applies per URL); a CA bundle is read once, here.
    """
    session = requests.Session()
    session.trust_env = bool(urllib.request.getproxies())
    no_retries = Retry(total=False, redirect=False, raise_on_status=False)  # the SDK's policy retries
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_CONNECTIONS, max_retries=no_retries)
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    # The SDK sends `verify` with every request (True: requests' own bundle), so the bundle goes there.
    bundle = next((os.environ[name] for name in CA_BUNDLE_VARIABLES if os.environ.get(name)), True)
    return RequestsTransport(session=session, session_owner=True, connection_verify=bundle)


def retrying(action: Callable[[], T], attempts: int = 4) -> T:
    """Run a storage call, again after a transient failure (a reset connection, a 5xx).

    Only for idempotent calls. An answer that would be the same next time (a 4xx, a conflict, a refused
    transaction) is raised at once; the SDK's own retry policy has already retried the connection.
    """
    for attempt in range(attempts):
        try:
            return action()
        except (ResourceExistsError, ResourceNotFoundError, ResourceModifiedError, TableTransactionError):
            raise
        except HttpResponseError as error:
            if (error.status_code or 0) < 500 or attempt == attempts - 1:
                raise
            failure: AzureError = error
        except AzureError as error:
            if attempt == attempts - 1:
                raise
            failure = error
        log.warning("Storage call failed (%s); trying again (%d)", type(failure).__name__, attempt + 1)
    raise AssertionError("unreachable")
