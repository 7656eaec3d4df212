"""The table transport reads proxies and CA bundles from the environment only when some are set."""

from __future__ import annotations

import pytest

from core.storage import _pooled_transport

SETTINGS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_nothing_set_skips_the_per_request_lookup(bare_environment: pytest.MonkeyPatch) -> None:
    assert _pooled_transport().session.trust_env is False


@pytest.mark.parametrize(
    ("name", "value"),
    [("HTTPS_PROXY", "http://127.0.0.1:3128"), ("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/corporate.pem")],
)
def test_a_proxy_or_ca_bundle_is_honoured(
    bare_environment: pytest.MonkeyPatch, name: str, value: str
) -> None:
    bare_environment.setenv(name, value)
    assert _pooled_transport().session.trust_env is True
