"""Audit events: one structured event per examined request, and the key-management events.

Events go through structlog on the logger ``oidc_middleware.audit``. This module never
configures structlog; an application that has no logging set up of its own can call
:func:`configure_json_logging` once to get one JSON object per line for its log pipeline. The
schema is in ``docs/audit-events.md``. No event ever holds a token, a signature or a client
secret: a token is named by ``token_fingerprint``, a short SHA-256 prefix.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Final, TextIO

import structlog

from .credentials import Credential
from .jws import fingerprint
from .principal import Principal

log = structlog.get_logger("oidc_middleware.audit")

ACCEPTED: Final = "oidc.token.accepted"
REJECTED: Final = "oidc.token.rejected"
PASSTHROUGH: Final = "oidc.token.passthrough"

_MAX_FIELD = 256


def token_event(
    event: str,
    request: Mapping[str, str | None],
    credential: Credential | None,
    *,
    principal: Principal | None = None,
    claims: Mapping[str, Any] | None = None,
    provider: str | None = None,
    reason: str | None = None,
    description: str | None = None,
) -> None:
    """Emit one decision event. ``claims`` are a rejected token's unverified claims.

    Fields whose value is unknown (None) are left out.
    """
    fields: dict[str, Any] = dict(request)
    if credential is not None:
        fields["credential"] = credential.kind
        fields["token_fingerprint"] = fingerprint(credential.token)
        if credential.robot is not None:
            fields["robot"] = _short(credential.robot)
    if principal is not None:
        fields.update(
            provider=principal.provider,
            iss=principal.issuer,
            sub=principal.subject,
            oid=principal.object_id,
            tid=principal.tenant_id,
            azp=principal.authorized_party,
            aud=principal.audience,
            ver=principal.token_version,
            on_behalf_of=principal.on_behalf_of,
            token_id=_token_id(principal.claims),
        )
    elif claims is not None:
        # A rejected token's claims are unverified: recorded to explain the decision, marked so.
        fields.update(
            provider=provider,
            iss=_short(claims.get("iss")),
            sub=_short(claims.get("sub")),
            oid=_short(claims.get("oid")),
            tid=_short(claims.get("tid")),
            azp=_short(claims.get("azp", claims.get("appid"))),
            aud=_short(claims.get("aud")),
            ver=_short(claims.get("ver")),
            token_id=_token_id(claims),
            claims_verified=False,
        )
    fields["reason"] = reason
    fields["description"] = description
    fields = {name: value for name, value in fields.items() if value is not None}
    if event == REJECTED:
        log.warning(event, **fields)
    else:
        log.info(event, **fields)


def configure_json_logging(stream: TextIO | None = None) -> None:
    """Set structlog up to write one JSON object per line (for applications without a setup)."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
    )


def _token_id(claims: Mapping[str, Any]) -> Any:
    return _short(claims.get("uti", claims.get("jti")))


def _short(value: Any) -> Any:
    """Untrusted values, bounded: strings cut, lists of strings kept short, other types dropped."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value[:_MAX_FIELD]
    if isinstance(value, list):
        return [item[:_MAX_FIELD] for item in value[:10] if isinstance(item, str)]
    return None
