"""The table transport reads the environment per request only for a proxy; a CA bundle is read once."""

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
    transport = _pooled_transport()
    assert transport.session.trust_env is False
    assert transport.connection_config.verify is True  # requests' own CA bundle


def test_a_proxy_is_honoured_per_request(bare_environment: pytest.MonkeyPatch) -> None:
    bare_environment.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert _pooled_transport().session.trust_env is True


@pytest.mark.parametrize("name", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_a_ca_bundle_is_read_once(bare_environment: pytest.MonkeyPatch, name: str) -> None:
    bare_environment.setenv(name, "/etc/ssl/certs/corporate.pem")
    transport = _pooled_transport()
    assert transport.session.trust_env is False
    assert transport.connection_config.verify == "/etc/ssl/certs/corporate.pem"
