"""Audit events: one structured event per examined request, and the key-management events.

Events go through structlog on the logger ``oidc_middleware.audit``. This module never
configures structlog; an application that has no logging set up of its own can call
:func:`configure_json_logging` once to get one JSON object per line for its log pipeline. The
schema is in ``docs/audit-events.md``. No event ever holds a token, a signature or a client
secret: a token is named by ``token_fingerprint``, a short SHA-256 prefix.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import structlog

from .credentials import BEARER, Credential
from .jws import fingerprint
from .principal import Principal

LOGGER_NAME: Final = "oidc_middleware.audit"
log = structlog.get_logger(LOGGER_NAME)  # for the rare events (key management, internal errors)


class _RequestLogger:
    """The audit logger for per-request events, bound once per structlog configuration.

    structlog's lazy proxy builds a new logger on every call (a few microseconds on every
    request). This keeps the bound logger until the application's structlog configuration
    changes, and asks it whether a level is enabled before any field is computed, so that
    filtered-out events cost next to nothing. It never changes the configuration. Threads may
    rebuild it at the same time after a reconfiguration; each gets a logger for the new one.
    """

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._logger: Any = None
        self._enabled: dict[int, bool] = {}

    def get(self) -> tuple[Any, dict[int, bool]]:
        config = structlog.get_config()
        key = (
            config["wrapper_class"],
            id(config["processors"]),
            config["logger_factory"],
            config["context_class"],
        )
        if key != self._key:
            logger = structlog.get_logger(LOGGER_NAME).bind()
            check = getattr(logger, "is_enabled_for", None) or getattr(logger, "isEnabledFor", None)
            enabled = {
                level: bool(check(level)) if check else True for level in (logging.INFO, logging.WARNING)
            }
            self._logger, self._enabled, self._key = logger, enabled, key
        return self._logger, self._enabled


_request_logger = _RequestLogger()

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
    listed_issuer: str | None = None,
) -> None:
    """Emit one decision event. ``claims`` are a rejected token's unverified claims;
    ``listed_issuer`` the issuer of the robot's federation entry a robot exchange matched.

    Fields whose value is unknown (None) are left out.
    """
    logger, enabled = _request_logger.get()
    level = logging.WARNING if event == REJECTED else logging.INFO
    if not enabled[level]:
        return
    fields: dict[str, Any] = {name: value for name, value in request.items() if value is not None}
    if credential is not None:
        fields["credential"] = credential.kind
        # A password in Basic credentials that is not a JWT may be weak: no hash of it is logged.
        if principal is not None and principal._fingerprint is not None:
            fields["token_fingerprint"] = principal._fingerprint  # a cached token: hash it once
        elif credential.kind == BEARER or credential.looks_like_jwt:
            fields["token_fingerprint"] = fingerprint(credential.token)
        if credential.robot is not None:
            fields["robot"] = _short(credential.robot)
    if listed_issuer is not None:
        fields["robot_issuer"] = _short(listed_issuer)
    if principal is not None:
        fields["provider"] = principal.provider
        fields["iss"] = principal.issuer
        fields["sub"] = principal.subject
        fields["aud"] = principal.audience
        for name, value in (
            ("oid", principal.object_id),
            ("tid", principal.tenant_id),
            ("azp", principal.authorized_party),
            ("ver", principal.token_version),
            ("token_id", _short(principal.token_id)),
        ):
            if value is not None:
                fields[name] = value
        fields["on_behalf_of"] = principal.on_behalf_of
    elif claims is not None:
        # A rejected token's claims are unverified: recorded to explain the decision, marked so.
        unverified = (
            ("provider", provider),
            ("iss", _short(claims.get("iss"))),
            ("sub", _short(claims.get("sub"))),
            ("aud", _short(claims.get("aud"))),
            ("oid", _short(claims.get("oid"))),
            ("tid", _short(claims.get("tid"))),
            ("azp", _short(claims.get("azp", claims.get("appid")))),
            ("ver", _short(claims.get("ver"))),
            ("token_id", _token_id(claims)),
        )
        fields.update((name, value) for name, value in unverified if value is not None)
        fields["claims_verified"] = False
    if reason is not None:
        fields["reason"] = reason
    if description is not None:
        fields["description"] = description
    if level == logging.WARNING:
        logger.warning(event, **fields)
    else:
        logger.info(event, **fields)


def configure_json_logging(stream: TextIO | None = None) -> None:
    """Set structlog up to write one JSON object per line (for applications without a setup).

    Each line starts with an ISO 8601 UTC ``timestamp``, ``level`` and ``event``; the event's
    fields follow in the order they were given.
    """
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        processors=[_json_line],
        logger_factory=structlog.WriteLoggerFactory(stream or sys.stdout),
    )


# Built once: json.dumps with options builds a new encoder on every call (a quarter of the cost
# of an event). Keys are not sorted, which would cost as much again. Values JSON cannot hold are
# written as their repr.
_JSON: Final = json.JSONEncoder(default=repr)


_LEVELS: Final = {"warn": "warning", "exception": "error"}  # structlog's aliases


def _json_line(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> str:
    """The last processor: timestamp the event and render it as one line of JSON."""
    now = datetime.now(UTC).isoformat(timespec="microseconds")[:-6] + "Z"  # "+00:00" -> "Z"
    line = {
        "timestamp": now,
        "level": _LEVELS.get(method_name, method_name),
        "event": event_dict.pop("event", None),
    }
    # The time of writing and the method's level, whatever the caller passed (as structlog's
    # TimeStamper and add_log_level do).
    event_dict.pop("timestamp", None)
    event_dict.pop("level", None)
    line.update(event_dict)
    return _JSON.encode(line)


def _token_id(claims: Mapping[str, Any]) -> str | None:
    """``uti`` (Entra) or ``jti``, when a string (RFC 7519 4.1.7), cut like every token value."""
    value = claims.get("uti", claims.get("jti"))
    return value[:_MAX_FIELD] if isinstance(value, str) else None


def _short(value: Any) -> Any:
    """Untrusted values, bounded: strings cut, lists of strings kept short, other types dropped."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value[:_MAX_FIELD]
    if isinstance(value, list):
        return [item[:_MAX_FIELD] for item in value[:10] if isinstance(item, str)]
    return None
