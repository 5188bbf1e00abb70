"""Rejection responses, built in one place: RFC 6750 for the API, the Docker registry format for /v2.

The API answers like a bearer-token resource server (RFC 6750 section 3)::

    401  WWW-Authenticate: Bearer realm="quay.example.com", error="invalid_token",
                           error_description="token expired 75 s ago"
         {"error": "invalid_token", "error_description": "...", "reason": "token_expired"}

The registry answers as Docker clients expect, pointing them at Quay's token endpoint::

    401  WWW-Authenticate: Bearer realm="https://quay.example.com/v2/auth",service="quay.example.com"
         Docker-Distribution-API-Version: registry/2.0
         {"errors": [{"code": "UNAUTHORIZED", "message": "...", "detail": {"reason": "token_expired"}}]}

``keys_unavailable`` is a 503 with ``Retry-After``: the token may be fine, the provider is not.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

REGISTRY_PREFIX: Final = "/v2/"
RETRY_AFTER_SECONDS: Final = 5

# RFC 6750 3: error_description is limited to %x20-21 / %x23-5B / %x5D-7E (no '"', no '\').
_NOT_IN_DESCRIPTION = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_NOT_IN_HOST = re.compile(r"[^A-Za-z0-9.:\[\]-]")


@dataclass(frozen=True)
class Response:
    """A complete HTTP response, framework-free."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def status_line(self) -> str:
        return f"{self.status} {HTTPStatus(self.status).phrase}"


def rejection(
    *,
    path: str,
    reason: str,
    error: str,
    status: int,
    description: str,
    host: str,
    scheme: str,
    hide_description: bool,
) -> Response:
    """The response refusing a request; ``host`` and ``scheme`` name the public Quay server."""
    host = _NOT_IN_HOST.sub("", host)[:255] or "quay"
    # The scheme can come from X-Forwarded-Proto (ProxyFix): only the two real values pass.
    scheme = scheme if scheme in ("http", "https") else "https"
    description = _NOT_IN_DESCRIPTION.sub("?", description)[:400]
    if path.startswith(REGISTRY_PREFIX):
        return _registry(reason, status, description, host, scheme, hide_description)
    return _api(reason, error, status, description, host, hide_description)


def _api(reason: str, error: str, status: int, description: str, host: str, hide: bool) -> Response:
    headers = [("Content-Type", "application/json")]
    body: dict[str, str] = {}
    if status == 503:
        # Not a challenge: the credentials may be right, the keys to check them are missing.
        headers.append(("Retry-After", str(RETRY_AFTER_SECONDS)))
        body["error"] = error
    else:
        challenge = f'Bearer realm="{host}", error="{error}"'
        if not hide:
            challenge += f', error_description="{description}"'
        headers.append(("WWW-Authenticate", challenge))
        body["error"] = error
    if not hide:
        body["error_description"] = description
    body["reason"] = reason
    return Response(status, tuple(headers), _json(body))


def _registry(reason: str, status: int, description: str, host: str, scheme: str, hide: bool) -> Response:
    headers = [
        ("Content-Type", "application/json"),
        ("Docker-Distribution-API-Version", "registry/2.0"),
        ("WWW-Authenticate", f'Bearer realm="{scheme}://{host}/v2/auth",service="{host}"'),
    ]
    if status == 503:
        headers.append(("Retry-After", str(RETRY_AFTER_SECONDS)))
        code = "UNAVAILABLE"
    else:
        code = "UNAUTHORIZED"
    hidden = "service unavailable, try again later" if status == 503 else "authentication required"
    message = hidden if hide else description
    body = {"errors": [{"code": code, "message": message, "detail": {"reason": reason}}]}
    return Response(status, tuple(headers), _json(body))


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
