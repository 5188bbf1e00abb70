"""Where a token travels in a request to Quay, and which requests carry one we examine.

* ``Authorization: Bearer <token>`` on a path under ``PROTECTED_PATHS`` (``/api/``, ``/v2/``);
* ``docker login`` with user ``$oauthtoken``: Basic credentials on ``/v2/auth`` (any method)
  whose password is the token;
* robot federation: Basic ``<robot name>:<token>`` on ``/oauth2/federation/robot/token``.

Everything else is not ours and reaches the application untouched.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final, NamedTuple
from urllib.parse import parse_qsl

DOCKER_LOGIN_PATH: Final = "/v2/auth"
DOCKER_LOGIN_USER: Final = "$oauthtoken"
ROBOT_FEDERATION_PATH: Final = "/oauth2/federation/robot/token"

BEARER: Final = "bearer"
DOCKER_LOGIN: Final = "docker_login"
ROBOT_FEDERATION: Final = "robot_federation"
# Not found in a request: the ID token Quay itself got from the provider at its login callback
# (recorded by the Quay integration).
ID_TOKEN: Final = "id_token"


class Credential(NamedTuple):
    """A token found in a request. Its repr never shows the token."""

    kind: str  # BEARER, DOCKER_LOGIN, ROBOT_FEDERATION or ID_TOKEN
    token: str
    robot: str | None = None  # the robot account named in robot federation

    @property
    def looks_like_jwt(self) -> bool:
        """Compact JWS has exactly three segments; opaque tokens and passwords are not ours."""
        return self.token.count(".") == 2

    def __repr__(self) -> str:
        return f"Credential(kind={self.kind!r}, robot={self.robot!r})"


class InvalidRequest(Exception):
    """RFC 6750 section 3.1 ``invalid_request``: the request itself is malformed (400)."""


def find_credential(
    path: str, query: str, authorization: tuple[str, ...], protected_paths: tuple[str, ...]
) -> Credential | None:
    """The credential this middleware must examine, None when there is none.

    Raises :class:`InvalidRequest` when a request carries more than one credential: RFC 6750
    section 2 says clients MUST NOT use more than one method to transmit the token.
    """
    if not authorization:
        return None
    if len(authorization) > 1:
        raise InvalidRequest("more than one Authorization header")
    scheme, _, value = authorization[0].strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer":
        if not path.startswith(protected_paths):
            return None
        if not value or " " in value or "," in value:
            # A b64token has neither; a comma is what servers put between repeated headers.
            raise InvalidRequest("the Authorization header holds no single bearer token")
        if query and any(name == "access_token" for name, _ in parse_qsl(query, keep_blank_values=True)):
            raise InvalidRequest("token sent both in the Authorization header and in the query")
        return Credential(BEARER, value)
    if scheme == "basic" and path in (DOCKER_LOGIN_PATH, ROBOT_FEDERATION_PATH):
        user, password = decode_basic(value)
        if password is None:
            return None
        # Any method: Flask answers HEAD with the GET view, and what Quay runs must not escape us.
        if path == DOCKER_LOGIN_PATH and user == DOCKER_LOGIN_USER:
            return Credential(DOCKER_LOGIN, password)
        if path == ROBOT_FEDERATION_PATH:
            return Credential(ROBOT_FEDERATION, password, robot=user)
    return None


def decode_basic(value: str) -> tuple[str, str | None]:
    """Decode Basic credentials (RFC 7617) as leniently as Quay does; (user, None) if impossible.

    Quay decodes with a plain ``b64decode``, which skips characters outside the alphabet. A
    strict decoder here would let ``Basic <credentials with a stray !>`` pass unexamined while
    Quay still reads the token in it: whatever Quay can read, this must read too.
    """
    try:
        decoded = base64.b64decode(value).decode("utf-8")
    except (binascii.Error, ValueError):
        return "", None
    user, separator, password = decoded.partition(":")
    return user, (password if separator else None)
