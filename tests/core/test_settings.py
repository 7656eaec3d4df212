"""Settings: every missing or bad key is named at start-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.settings import DEVELOPMENT_STORAGE, Settings, SettingsError

AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;"
)


def test_connection_string_and_defaults() -> None:
    settings = Settings.from_env({"AzureWebJobsStorage": AZURITE})
    assert settings.storage.connection_string == AZURITE
    assert not settings.storage.uses_identity
    assert settings.inline_upload_max_bytes == 4 * 1024 * 1024
    assert settings.upload_url_minutes == 15
    assert settings.max_dequeue_count == 5  # from the repository's host.json


def test_development_storage_means_azurite_defaults() -> None:
    settings = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert settings.storage.connection_string == DEVELOPMENT_STORAGE


def test_identity_based_connection_from_account_name() -> None:
    settings = Settings.from_env(
        {"AzureWebJobsStorage__accountName": "acct", "AzureWebJobsStorage__clientId": "11111111-2222"}
    )
    assert settings.storage.uses_identity
    assert settings.storage.table_url == "https://acct.table.core.windows.net"
    assert settings.storage.queue_url == "https://acct.queue.core.windows.net"
    assert settings.storage.client_id == "11111111-2222"


def test_identity_based_connection_from_service_uris() -> None:
    env = {
        f"AzureWebJobsStorage__{kind}ServiceUri": f"https://x.{kind}.example"
        for kind in ("blob", "queue", "table")
    }
    assert Settings.from_env(env).storage.blob_url == "https://x.blob.example"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"LOADBAY_UPLOAD_URL_MINUTES": "60", "LOADBAY_MAX_COLUMNS": "many"})
    message = str(caught.value)
    assert "AzureWebJobsStorage is not set" in message
    assert "LOADBAY_UPLOAD_URL_MINUTES must be between 1 and 15 (got 60)" in message
    assert "LOADBAY_MAX_COLUMNS must be a whole number (got 'many')" in message


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"AzureWebJobsStorage": "AccountName=x"}, "no AccountKey"),
        ({"AzureWebJobsStorage__blobServiceUri": "http://plain"}, "must be an https:// URL"),
        (
            {"AzureWebJobsStorage": AZURITE, "LOADBAY_INLINE_UPLOAD_MAX_BYTES": "99999999"},
            "between 1 and 4194304",
        ),
    ],
)
def test_bad_values_are_named(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError, match=expected):
        Settings.from_env(environ)


def test_max_dequeue_count_comes_from_host_json(tmp_path: Path) -> None:
    host = tmp_path / "host.json"
    host.write_text(json.dumps({"extensions": {"queues": {"maxDequeueCount": 3}}}))
    assert Settings.from_env({"AzureWebJobsStorage": AZURITE}, host_json=host).max_dequeue_count == 3
    host.write_text("{nope")
    with pytest.raises(SettingsError, match="not valid JSON"):
        Settings.from_env({"AzureWebJobsStorage": AZURITE}, host_json=host)
