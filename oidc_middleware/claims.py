"""Claim checks: small pure functions, each returning or raising one specific rejection.

``now`` is passed in (RFC 7519 leaves the clock to the caller; tests freeze it). Every claim is
type-checked before use: python-jose would accept ``exp: "123"`` and crash on ``exp: null``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from .config import ProviderConfig
from .errors import (
    CLIENT_NOT_ALLOWED,
    INVALID_AUDIENCE,
    MALFORMED_TOKEN,
    MISSING_CLAIM,
    TOKEN_EXPIRED,
    TOKEN_NOT_YET_VALID,
    TokenRejected,
)

# 9999-12-31T23:59:59Z: a NumericDate beyond this is garbage, not a time.
MAX_NUMERIC_DATE: Final = 253_402_300_799


def require_claims(claims: Mapping[str, Any]) -> None:
    """``exp`` and ``sub`` must be present; ``sub`` a non-empty string."""
    for name in ("exp", "sub"):
        if name not in claims:
            raise TokenRejected(MISSING_CLAIM, f"token has no '{name}' claim")
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise TokenRejected(MALFORMED_TOKEN, "claim 'sub' is not a non-empty string")


def check_time(claims: Mapping[str, Any], now: float, leeway: int) -> float:
    """Refuse expired and not-yet-valid tokens; return ``exp``.

    RFC 7519 4.1.4: the token must not be accepted on or after ``exp``; 4.1.5: not before ``nbf``.
    ``iat`` in the future is refused too: a token cannot have been issued later than now.
    """
    expires = numeric_date(claims, "exp")
    if now > expires + leeway:
        raise TokenRejected(TOKEN_EXPIRED, f"token expired {int(now - expires)} s ago")
    for name in ("nbf", "iat"):
        if name in claims and numeric_date(claims, name) > now + leeway:
            raise TokenRejected(TOKEN_NOT_YET_VALID, f"claim '{name}' is in the future")
    return expires


def numeric_date(claims: Mapping[str, Any], name: str) -> float:
    """A NumericDate claim as a float; malformed for booleans, strings, null, NaN, huge values."""
    value = claims[name]
    if value.__class__ is int and 0 <= value <= MAX_NUMERIC_DATE:
        return float(value)  # what every issuer sends: an integer (the checks below cannot fail)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TokenRejected(MALFORMED_TOKEN, f"claim '{name}' is not a number")
    if not (math.isfinite(value) and 0 <= value <= MAX_NUMERIC_DATE):
        raise TokenRejected(MALFORMED_TOKEN, f"claim '{name}' is not a plausible time")
    return float(value)


def check_audience(claims: Mapping[str, Any], provider: ProviderConfig) -> str:
    """``aud`` (a string or a list of strings) must hold one of the provider's audiences.

    Returns the accepted audience. Comparison is exact (RFC 7519 4.1.3): no prefix, no case
    folding, no trailing-slash games.
    """
    audience = claims.get("aud")
    if audience is None:
        raise TokenRejected(INVALID_AUDIENCE, "token has no 'aud' claim")
    if isinstance(audience, str):
        values: list[str] = [audience]
    elif isinstance(audience, list) and all(isinstance(value, str) for value in audience):
        values = audience
    else:
        raise TokenRejected(MALFORMED_TOKEN, "claim 'aud' is not a string or a list of strings")
    for accepted in provider.audiences:
        if accepted in values:
            return accepted
    shown = ", ".join(repr(value[:80]) for value in values[:3]) or "an empty list"
    raise TokenRejected(INVALID_AUDIENCE, f"audience {shown} is not accepted by provider {provider.id!r}")


def authorized_party(claims: Mapping[str, Any]) -> str | None:
    """The calling application: ``azp`` (Entra v2.0, OIDC) or else ``appid`` (Entra v1.0)."""
    for name in ("azp", "appid"):
        if name in claims:
            value = claims[name]
            if not isinstance(value, str) or not value:
                raise TokenRejected(MALFORMED_TOKEN, f"claim '{name}' is not a non-empty string")
            return value
    return None


def check_authorized_party(party: str | None, audience: str, provider: ProviderConfig) -> None:
    """With ``OIDC_ALLOWED_CLIENTS``, the calling app must be listed or be Quay itself.

    A token naming no calling app passes only when it is addressed to ``CLIENT_ID``: that is an ID
    token issued to Quay itself. Checking ``appid`` as well as ``azp`` closes the gap through
    which v1.0 tokens bypass the list in Quay 3.18.
    """
    allowed = provider.allowed_clients
    if allowed is None:
        return
    if party is None:
        if audience == provider.client_id:
            return
        raise TokenRejected(CLIENT_NOT_ALLOWED, "token names no authorized party (azp or appid)")
    if party != provider.client_id and party not in allowed:
        raise TokenRejected(CLIENT_NOT_ALLOWED, f"client {party[:80]!r} is not in OIDC_ALLOWED_CLIENTS")


def check_identity_claims(claims: Mapping[str, Any]) -> None:
    """The claims the principal exposes have their types: ``oid``, ``tid`` and ``ver`` strings,
    ``scp`` and ``roles`` a string or a list of strings (``iss``, ``sub`` and ``exp`` are checked
    by the steps before)."""
    for name in ("oid", "tid", "ver"):
        value = claims.get(name)
        if value is not None and not isinstance(value, str):
            raise TokenRejected(MALFORMED_TOKEN, f"claim '{name}' is not a string")
    for name in ("scp", "roles"):
        value = claims.get(name)
        if value is None or isinstance(value, str):
            continue
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise TokenRejected(MALFORMED_TOKEN, f"claim '{name}' is not a string or a list of strings")
