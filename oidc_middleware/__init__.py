"""oidc_middleware: multi-issuer, multi-audience OIDC bearer-token validation for Red Hat Quay."""

from __future__ import annotations

from .asgi import OIDCASGIMiddleware
from .audit import configure_json_logging
from .config import MiddlewareConfig, ProviderConfig, load_config
from .errors import (
    CLIENT_NOT_ALLOWED,
    INVALID_AUDIENCE,
    INVALID_SIGNATURE,
    ISSUER_NOT_CONFIGURED,
    KEYS_UNAVAILABLE,
    MALFORMED_TOKEN,
    MISSING_CLAIM,
    REASONS,
    TOKEN_EXPIRED,
    TOKEN_NOT_YET_VALID,
    UNKNOWN_KEY,
    UNSUPPORTED_ALGORITHM,
    ConfigError,
    OIDCMiddlewareError,
    TokenRejected,
)
from .jws import verify_jws
from .principal import Principal
from .validator import TokenValidator
from .wsgi import OIDCMiddleware

__all__ = [
    "CLIENT_NOT_ALLOWED",
    "INVALID_AUDIENCE",
    "INVALID_SIGNATURE",
    "ISSUER_NOT_CONFIGURED",
    "KEYS_UNAVAILABLE",
    "MALFORMED_TOKEN",
    "MISSING_CLAIM",
    "REASONS",
    "TOKEN_EXPIRED",
    "TOKEN_NOT_YET_VALID",
    "UNKNOWN_KEY",
    "UNSUPPORTED_ALGORITHM",
    "ConfigError",
    "MiddlewareConfig",
    "OIDCASGIMiddleware",
    "OIDCMiddleware",
    "OIDCMiddlewareError",
    "Principal",
    "ProviderConfig",
    "TokenRejected",
    "TokenValidator",
    "configure_json_logging",
    "load_config",
    "verify_jws",
]
