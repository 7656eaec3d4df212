"""Who is calling: the principal that SWA or App Service Authentication puts in `x-ms-client-principal`.

The header is trusted because the platform sets it (and strips any copy a client sends); the
Function App must therefore only be reachable through SWA's linked backend or with App Service
Authentication turned on. See README "Security".
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from core.errors import Unauthorized

PRINCIPAL_HEADER = "x-ms-client-principal"
ADMIN_ROLE = "admin"
_BUILT_IN_ROLES = frozenset({"anonymous", "authenticated"})
_MAX_HEADER_CHARS = 16_384
# Real ids are short (an Entra object id is 36 characters, an OpenID `sub` at most 255): a longer one, or
# one with control characters, did not come from an identity provider and would end up in logs and keys.
_MAX_USER_ID_CHARS = 512

# Claim types App Service Authentication uses for a user's stable id, in order of preference.
_ID_CLAIMS = (
    "http://schemas.microsoft.com/identity/claims/objectidentifier",
    "oid",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier",
    "sub",
)
_NAME_CLAIMS = ("preferred_username", "name", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn")
_ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    user_id: str
    user_details: str
    identity_provider: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    def to_json(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "userDetails": self.user_details,
            "identityProvider": self.identity_provider,
            "userRoles": sorted(self.roles | {"authenticated"}),
        }


def principal_from_header(value: str | None) -> Principal:
    """Decode the principal header; raise Unauthorized when it is absent, malformed or anonymous."""
    if not value:
        raise Unauthorized("Sign in to use this API.")
    payload = _decode(value)
    if "claims" in payload or "auth_typ" in payload:
        principal = _from_app_service(payload)
    else:
        principal = _from_swa(payload)
    if not principal.user_id:
        raise Unauthorized("Sign in to use this API.")
    if len(principal.user_id) > _MAX_USER_ID_CHARS or not principal.user_id.isprintable():
        raise Unauthorized("The client principal's user id is not a valid identifier.")
    return principal


def _decode(value: str) -> dict[str, Any]:
    if len(value) > _MAX_HEADER_CHARS:
        raise Unauthorized("The client principal header is too long.")
    try:
        padded = value.strip() + "=" * (-len(value.strip()) % 4)
        payload = json.loads(base64.b64decode(padded, validate=True))
    except (binascii.Error, ValueError, RecursionError) as error:
        raise Unauthorized("The client principal header is not base64-encoded JSON.") from error
    if not isinstance(payload, dict):
        raise Unauthorized("The client principal header is not a JSON object.")
    try:  # "\ud800" is valid JSON but no character: it could not be answered, hashed or stored
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:
        raise Unauthorized(
            "The client principal header has a lone UTF-16 surrogate; its text must be valid Unicode."
        ) from error
    return payload


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _from_swa(payload: dict[str, Any]) -> Principal:
    roles = payload.get("userRoles") or []
    if not isinstance(roles, list):
        raise Unauthorized("userRoles in the client principal must be a list.")
    names = {_text(role).lower() for role in roles}
    if "anonymous" in names and "authenticated" not in names:  # SWA's own word: this caller is not signed in
        raise Unauthorized("Sign in to use this API.")
    return Principal(
        user_id=_text(payload.get("userId")),
        user_details=_text(payload.get("userDetails")),
        identity_provider=_text(payload.get("identityProvider")),
        roles=frozenset(_text(role) for role in roles if _text(role)) - _BUILT_IN_ROLES,
    )


def _from_app_service(payload: dict[str, Any]) -> Principal:
    claims = payload.get("claims") or []
    if not isinstance(claims, list) or not all(isinstance(claim, dict) for claim in claims):
        raise Unauthorized("claims in the client principal must be a list of {typ, val} objects.")
    by_type: dict[str, list[str]] = {}
    for claim in claims:
        by_type.setdefault(_text(claim.get("typ")), []).append(_text(claim.get("val")))
    role_types = {_text(payload.get("role_typ")), *_ROLE_CLAIMS} - {""}
    name_types = (_text(payload.get("name_typ")), *_NAME_CLAIMS)

    def first(types: tuple[str, ...]) -> str:
        return next((by_type[kind][0] for kind in types if by_type.get(kind) and by_type[kind][0]), "")

    roles = {role for kind in role_types for role in by_type.get(kind, []) if role}
    return Principal(
        user_id=first(_ID_CLAIMS),
        user_details=first(name_types),
        identity_provider=_text(payload.get("auth_typ")),
        roles=frozenset(roles) - _BUILT_IN_ROLES,
    )
