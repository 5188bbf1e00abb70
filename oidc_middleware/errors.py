"""Every error this package raises: one root, a configuration branch and a token branch.

A :class:`TokenRejected` carries a stable ``reason`` code (for audit pipelines and clients), the
RFC 6750 ``error`` code, the HTTP status to answer with and a human description. None of them
ever contains the token itself, a signature or a client secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

# Reason codes: stable strings, part of the public contract (logs, response bodies, dashboards).
MALFORMED_TOKEN: Final = "malformed_token"
ISSUER_NOT_CONFIGURED: Final = "issuer_not_configured"
UNSUPPORTED_ALGORITHM: Final = "unsupported_algorithm"
UNKNOWN_KEY: Final = "unknown_key"
INVALID_SIGNATURE: Final = "invalid_signature"
TOKEN_EXPIRED: Final = "token_expired"
TOKEN_NOT_YET_VALID: Final = "token_not_yet_valid"
MISSING_CLAIM: Final = "missing_claim"
INVALID_AUDIENCE: Final = "invalid_audience"
CLIENT_NOT_ALLOWED: Final = "client_not_allowed"
KEYS_UNAVAILABLE: Final = "keys_unavailable"
# A valid token of a service principal (no person) where Quay wants a person: the API and docker
# login. Such a token's place is robot federation.
APP_ONLY_TOKEN: Final = "app_only_token"

# Robot federation (Quay's /oauth2/federation/robot/token), decided after the token was accepted:
# the robot named in the request does not take this token.
ROBOT_NOT_FOUND: Final = "robot_not_found"
ROBOT_NOT_FEDERATED: Final = "robot_not_federated"
ROBOT_ISSUER_NOT_LISTED: Final = "robot_issuer_not_listed"
ROBOT_SUBJECT_MISMATCH: Final = "robot_subject_mismatch"
ROBOT_AUDIENCE_MISMATCH: Final = "robot_audience_mismatch"
# Quay refused the exchange for a reason of its own that none of the above names.
ROBOT_EXCHANGE_REFUSED: Final = "robot_exchange_refused"

# Reasons that are not a token's rejection: the request itself is malformed (RFC 6750 3.1, 400),
# and a credential that is not a JWT (Quay's opaque OAuth tokens, passwords) passed on unexamined.
INVALID_REQUEST: Final = "invalid_request"
OPAQUE_TOKEN: Final = "opaque_token"

ROBOT_REASONS: Final = frozenset(
    {
        ROBOT_NOT_FOUND,
        ROBOT_NOT_FEDERATED,
        ROBOT_ISSUER_NOT_LISTED,
        ROBOT_SUBJECT_MISMATCH,
        ROBOT_AUDIENCE_MISMATCH,
        ROBOT_EXCHANGE_REFUSED,
    }
)
REASONS: Final = (
    frozenset(
        {
            MALFORMED_TOKEN,
            ISSUER_NOT_CONFIGURED,
            UNSUPPORTED_ALGORITHM,
            UNKNOWN_KEY,
            INVALID_SIGNATURE,
            TOKEN_EXPIRED,
            TOKEN_NOT_YET_VALID,
            MISSING_CLAIM,
            INVALID_AUDIENCE,
            CLIENT_NOT_ALLOWED,
            KEYS_UNAVAILABLE,
            APP_ONLY_TOKEN,
        }
    )
    | ROBOT_REASONS
)


class OIDCMiddlewareError(Exception):
    """Root of every exception raised by oidc_middleware."""


class ConfigError(OIDCMiddlewareError):
    """The configuration cannot be used. ``problems`` lists every problem, each with its key path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{len(self.problems)} configuration problem(s):\n{lines}")


class TokenRejected(OIDCMiddlewareError):
    """A token was refused.

    ``reason`` is one of the reason codes above; ``error`` the RFC 6750 error code;
    ``status_code`` the HTTP status (401, or 503 when the provider's keys cannot be had);
    ``description`` human text for the operator and client, never containing the token.
    ``provider`` names the provider the token's issuer mapped to, once known; ``claims`` holds
    the token's *unverified* claims once parsed, for audit records only, never for decisions.
    """

    def __init__(self, reason: str, description: str, *, provider: str | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reason code {reason!r}")
        self.reason = reason
        self.description = description
        self.provider = provider
        self.claims: Mapping[str, Any] | None = None
        # RFC 6750 3.1 for a token that cannot be accepted; OAuth's temporarily_unavailable
        # (RFC 6749 4.1.2.1) when the keys to check it are missing: the token may well be fine.
        unavailable = reason == KEYS_UNAVAILABLE
        self.error = "temporarily_unavailable" if unavailable else "invalid_token"
        self.status_code = 503 if unavailable else 401
        super().__init__(f"{reason}: {description}")

    def __repr__(self) -> str:
        return f"TokenRejected(reason={self.reason!r}, description={self.description!r})"
