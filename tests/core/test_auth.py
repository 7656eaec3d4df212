"""Principals from both header shapes; malformed headers are 401s, never crashes."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.auth import principal_from_header
from core.errors import Unauthorized


def encode(payload: Any) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


def test_static_web_apps_shape() -> None:
    principal = principal_from_header(
        encode(
            {
                "identityProvider": "aad",
                "userId": "u-1",
                "userDetails": "ada@example.com",
                "userRoles": ["anonymous", "authenticated", "admin"],
            }
        )
    )
    assert principal.user_id == "u-1"
    assert principal.user_details == "ada@example.com"
    assert principal.identity_provider == "aad"
    assert principal.roles == frozenset({"admin"})
    assert principal.is_admin
    assert principal.to_json()["userRoles"] == ["admin", "authenticated"]


def test_app_service_shape_with_roles_claims() -> None:
    principal = principal_from_header(
        encode(
            {
                "auth_typ": "aad",
                "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
                "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
                "claims": [
                    {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "oid-7"},
                    {"typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", "val": "Grace"},
                    {"typ": "roles", "val": "admin"},
                    {"typ": "roles", "val": "importer"},
                ],
            }
        )
    )
    assert principal.user_id == "oid-7"
    assert principal.user_details == "Grace"
    assert principal.identity_provider == "aad"
    assert principal.roles == frozenset({"admin", "importer"})


def test_app_service_shape_falls_back_to_sub() -> None:
    principal = principal_from_header(encode({"auth_typ": "aad", "claims": [{"typ": "sub", "val": "s-9"}]}))
    assert principal.user_id == "s-9"
    assert not principal.is_admin


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "not base64!!",
        base64.b64encode(b"not json").decode(),
        encode([1, 2]),
        encode({"userRoles": "admin", "userId": "x"}),
        encode({"claims": "nope"}),
        encode({"claims": [1]}),
        encode({"identityProvider": "aad", "userRoles": ["anonymous"]}),
        "A" * 20_000,
    ],
)
def test_missing_malformed_or_anonymous_is_unauthorized(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        principal_from_header(header)


@pytest.mark.parametrize(
    "header",
    [
        encode({"userId": "\ud800x", "userDetails": "a"}),
        encode({"userId": "u-1", "userDetails": "a", "userRoles": ["\udfff"]}),
        encode(
            {"auth_typ": "aad", "claims": [{"typ": "sub", "val": "s-9"}, {"typ": "name", "val": "\ud83d"}]}
        ),
        # json.loads decodes bytes with "surrogatepass": a surrogate written as raw bytes gets through too
        base64.b64encode(b'{"userId": "\xed\xa0\x80x"}').decode(),
    ],
    ids=["userId", "role", "claim", "raw bytes"],
)
def test_a_principal_with_lone_surrogates_is_unauthorized(header: str) -> None:
    """Such text cannot be encoded, so it would fail later: in a response, a hash or a stored owner."""
    with pytest.raises(Unauthorized) as refused:
        principal_from_header(header)
    assert refused.value.status == 401
    assert "Unicode" in refused.value.detail


@given(st.text(max_size=200))
def test_any_header_text_gives_a_principal_or_unauthorized(header: str) -> None:
    try:
        principal = principal_from_header(header)
    except Unauthorized:
        return
    assert principal.user_id
