"""Typed settings, read once from the environment and validated at start-up."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
STORAGE_SETTING = "AzureWebJobsStorage"
APP_ROOT = Path(__file__).resolve().parent.parent
# What UseDevelopmentStorage=true means: Azurite on its default ports, with its published key.
DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


class SettingsError(ValueError):
    """One or more settings are missing or bad; the message lists every problem."""


@dataclass(frozen=True)
class StorageConfig:
    """How to reach the storage account: a connection string locally, an identity in Azure."""

    connection_string: str | None = None
    blob_url: str | None = None
    queue_url: str | None = None
    table_url: str | None = None
    client_id: str | None = None  # user-assigned managed identity, if any

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None


@dataclass(frozen=True)
class Settings:
    """Everything Loadbay reads from its environment (see local.settings.sample.json)."""

    storage: StorageConfig
    inline_upload_max_bytes: int = 4 * MIB
    upload_max_bytes: int = 1024 * MIB
    upload_url_minutes: int = 15
    max_columns: int = 250
    max_dequeue_count: int = 5
    review_seconds: int = 7 * 24 * 3600
    chunk_rows: int = 10_000
    download_url_minutes: int = 15
    requests_per_minute: int = 600
    export_slice_seconds: int = 300

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, host_json: Path | None = None) -> Settings:
        """Read and validate settings; raise SettingsError naming every missing or bad key."""
        problems: list[str] = []
        storage = _storage_config(environ, problems)
        numbers = {
            "inline_upload_max_bytes": _int(
                environ, "LOADBAY_INLINE_UPLOAD_MAX_BYTES", 4 * MIB, 1, 4 * MIB, problems
            ),
            "upload_max_bytes": _int(
                environ, "LOADBAY_UPLOAD_MAX_BYTES", 1024 * MIB, 1, 4096 * MIB, problems
            ),
            "upload_url_minutes": _int(environ, "LOADBAY_UPLOAD_URL_MINUTES", 15, 1, 15, problems),
            "max_columns": _int(environ, "LOADBAY_MAX_COLUMNS", 250, 1, 250, problems),
            "review_seconds": _int(
                environ, "LOADBAY_REVIEW_SECONDS", 7 * 24 * 3600, 1, 90 * 24 * 3600, problems
            ),
            "chunk_rows": _int(environ, "LOADBAY_CHUNK_ROWS", 10_000, 10, 100_000, problems),
            "download_url_minutes": _int(environ, "LOADBAY_DOWNLOAD_URL_MINUTES", 15, 1, 60, problems),
            "requests_per_minute": _int(environ, "LOADBAY_REQUESTS_PER_MINUTE", 600, 1, 1_000_000, problems),
            # A slice must end well within functionTimeout (10 minutes): its last page and commit follow.
            "export_slice_seconds": _int(environ, "LOADBAY_EXPORT_SLICE_SECONDS", 300, 0, 480, problems),
        }
        max_dequeue = _max_dequeue_count(host_json or APP_ROOT / "host.json", problems)
        if problems:
            raise SettingsError("Loadbay cannot start; fix these settings:\n- " + "\n- ".join(problems))
        assert storage is not None
        return cls(
            storage=storage,
            max_dequeue_count=max_dequeue,
            **numbers,
        )


def _storage_config(environ: Mapping[str, str], problems: list[str]) -> StorageConfig | None:
    connection_string = environ.get(STORAGE_SETTING, "").strip()
    if connection_string:
        parts = dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)
        if parts.get("UseDevelopmentStorage") == "true":
            return StorageConfig(connection_string=DEVELOPMENT_STORAGE)
        missing = [key for key in ("AccountName", "AccountKey") if not parts.get(key)]
        if missing:
            problems.append(
                f"{STORAGE_SETTING} is not a storage connection string (no {' or '.join(missing)})."
            )
            return None
        if not _is_account_key(parts["AccountKey"]):
            # Never echo the value: it is the account's secret.
            problems.append(
                f"{STORAGE_SETTING} has an AccountKey that is not a storage account key (a key is the "
                "base64 text the portal shows under Access keys); is it still a placeholder?"
            )
            return None
        return StorageConfig(connection_string=connection_string)
    # Identity-based connection, as the Functions host reads it: <prefix>__accountName or __*ServiceUri.
    prefix = f"{STORAGE_SETTING}__"
    account = environ.get(prefix + "accountName", "").strip()
    urls = {
        kind: environ.get(f"{prefix}{kind}ServiceUri", "").strip()
        or (f"https://{account}.{kind}.core.windows.net" if account else "")
        for kind in ("blob", "queue", "table")
    }
    if not any(urls.values()):
        problems.append(
            f"{STORAGE_SETTING} is not set: set a connection string, or {prefix}accountName "
            f"(or {prefix}blobServiceUri, {prefix}queueServiceUri, {prefix}tableServiceUri) "
            "and a managed identity."
        )
        return None
    for kind, url in urls.items():
        if not url.startswith("https://"):
            problems.append(f"{prefix}{kind}ServiceUri must be an https:// URL (got {url or 'nothing'}).")
    return StorageConfig(
        blob_url=urls["blob"],
        queue_url=urls["queue"],
        table_url=urls["table"],
        client_id=environ.get(prefix + "clientId") or None,
    )


def _is_account_key(text: str) -> bool:
    """A storage account key is base64 of (at least) 32 bytes; placeholders such as `<key>` are not."""
    try:
        return len(base64.b64decode(text.strip(), validate=True)) >= 32
    except (binascii.Error, ValueError):
        return False


def _int(environ: Mapping[str, str], key: str, default: int, low: int, high: int, problems: list[str]) -> int:
    raw = environ.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        problems.append(f"{key} must be a whole number (got {raw!r}).")
        return default
    if not low <= value <= high:
        problems.append(f"{key} must be between {low} and {high} (got {value}).")
    return value


def _max_dequeue_count(host_json: Path, problems: list[str]) -> int:
    """Read extensions.queues.maxDequeueCount from host.json so workers know their last attempt."""
    try:
        config = json.loads(host_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return 5
    except (OSError, ValueError) as error:
        problems.append(f"{host_json} is not valid JSON: {error}")
        return 5
    value = config.get("extensions", {}).get("queues", {}).get("maxDequeueCount", 5)
    if not isinstance(value, int) or value < 1:
        problems.append(
            f"host.json extensions.queues.maxDequeueCount must be a positive integer (got {value!r})."
        )
        return 5
    return value
