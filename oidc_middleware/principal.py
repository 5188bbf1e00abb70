"""The verified principal handed to the application."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from .errors import MALFORMED_TOKEN, TokenRejected


@dataclass(frozen=True, slots=True)
class Principal:
    """Who called, established from a verified token. Never holds the token itself.

    Authorize on ``tenant_id`` + ``object_id`` (stable across applications) or ``subject``;
    never on ``email``, ``upn`` or ``preferred_username``, which users can edit in some tenants.
    ``on_behalf_of`` is true for a delegated token (it has scopes) obtained by another application
    than Quay, for example Red Hat Developer Hub exchanging a user's token (OAuth On-Behalf-Of).
    """

    provider: str
    issuer: str
    subject: str
    object_id: str | None
    tenant_id: str | None
    audience: str
    authorized_party: str | None
    token_version: str | None
    scopes: tuple[str, ...]
    roles: tuple[str, ...]
    expires_at: datetime
    on_behalf_of: bool
    claims: Mapping[str, Any] = field(repr=False, compare=False)


def build_principal(
    claims: dict[str, Any],
    *,
    provider: str,
    client_id: str,
    audience: str,
    authorized_party: str | None,
    expires_at: float,
) -> Principal:
    """Build the principal from verified claims."""
    scopes = _words(claims, "scp")
    return Principal(
        provider=provider,
        issuer=claims["iss"],
        subject=claims["sub"],
        object_id=_optional_string(claims, "oid"),
        tenant_id=_optional_string(claims, "tid"),
        audience=audience,
        authorized_party=authorized_party,
        token_version=_optional_string(claims, "ver"),
        scopes=scopes,
        roles=_words(claims, "roles"),
        expires_at=datetime.fromtimestamp(expires_at, tz=UTC),
        on_behalf_of=bool(scopes) and authorized_party is not None and authorized_party != client_id,
        claims=_frozen_claims(claims),
    )


def _frozen_claims(claims: dict[str, Any]) -> Mapping[str, Any]:
    """Claims made read-only all the way down: the principal is cached and shared by requests.

    ``claims`` is the validator's own freshly parsed dict, so its containers are replaced in place.
    """
    for name, value in claims.items():
        if value.__class__ is list or value.__class__ is dict:
            claims[name] = _frozen(value)
    return MappingProxyType(claims)


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({name: _frozen(item) for name, item in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    return value


def _optional_string(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is not None and not isinstance(value, str):
        raise TokenRejected(MALFORMED_TOKEN, f"claim '{name}' is not a string")
    return value


def _words(claims: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """A space-separated string (Entra ``scp``) or a list of strings (``roles``) as a tuple."""
    value = claims.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise TokenRejected(MALFORMED_TOKEN, f"claim '{name}' is not a string or a list of strings")
