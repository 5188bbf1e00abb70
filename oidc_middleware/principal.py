"""The verified principal handed to the application."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final


class Principal:
    """Who called, established from a verified token. Never holds the token itself.

    Authorize on ``tenant_id`` + ``object_id`` (stable across applications) or ``subject``;
    never on ``email``, ``upn`` or ``preferred_username``, which users can edit in some tenants.
    ``on_behalf_of`` is true for a delegated token (it has scopes) obtained by another application
    than Quay, for example Red Hat Developer Hub exchanging a user's token (OAuth On-Behalf-Of).

    Read-only: every field is a property without a setter. The fields are read from the verified claims when asked for, not copied out of
    them on every token: most requests read two or three of them, and building them all was a
    tenth of the cost of validating a token. The validator builds it only from claims whose
    types its steps have checked (:func:`~oidc_middleware.claims.check_identity_claims`), so
    reading a field cannot fail. Pickling and copying rebuild it from those claims.
    """

    __slots__ = (
        "_audience",
        "_authorized_party",
        "_claims",
        "_client_id",
        "_fingerprint",
        "_frozen",
        "_provider",
    )

    def __init__(
        self,
        claims: dict[str, Any],
        *,
        provider: str,
        client_id: str,
        audience: str,
        authorized_party: str | None,
        token_fingerprint: str | None = None,
    ) -> None:
        # ``claims`` is the validator's own freshly parsed dict: nobody else holds it.
        self._claims = claims
        # The token's fingerprint (jws.fingerprint), when the validator had its SHA-256 anyway:
        # for a token it caches. The audit events of a cached principal then hash nothing.
        self._fingerprint = token_fingerprint
        self._provider = provider
        self._client_id = client_id
        self._audience = audience
        self._authorized_party = authorized_party
        self._frozen: Mapping[str, Any] | None = None

    @property
    def provider(self) -> str:
        """The id of the configured provider that accepted the token (``azure``)."""
        return self._provider

    @property
    def issuer(self) -> str:
        return str(self._claims["iss"])

    @property
    def subject(self) -> str:
        return str(self._claims["sub"])

    @property
    def object_id(self) -> str | None:
        return self._claims.get("oid")

    @property
    def tenant_id(self) -> str | None:
        return self._claims.get("tid")

    @property
    def audience(self) -> str:
        """The audience that was accepted (one of the provider's)."""
        return self._audience

    @property
    def authorized_party(self) -> str | None:
        """The calling application: ``azp``, else ``appid``."""
        return self._authorized_party

    @property
    def token_version(self) -> str | None:
        return self._claims.get("ver")

    @property
    def token_id(self) -> str | None:
        """``uti`` (Entra) or ``jti``, when it is a string: for correlating audit events."""
        value = self._claims.get("uti", self._claims.get("jti"))
        return value if isinstance(value, str) else None

    @property
    def scopes(self) -> tuple[str, ...]:
        return _words(self._claims.get("scp"))

    @property
    def roles(self) -> tuple[str, ...]:
        return _words(self._claims.get("roles"))

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(float(self._claims["exp"]), tz=UTC)

    @property
    def app_only(self) -> bool:
        """True for a token of an application acting as itself (client credentials: a service
        principal or managed identity), which names no person: Entra's ``idtyp: app`` or, when
        that optional claim is not configured, an Entra access token (``tid``) without ``scp``
        whose ``sub`` is its ``oid``."""
        claims = self._claims
        if claims.get("idtyp") == "app":
            return True
        oid = claims.get("oid")
        return "scp" not in claims and "tid" in claims and oid is not None and claims.get("sub") == oid

    @property
    def on_behalf_of(self) -> bool:
        party = self._authorized_party
        return party is not None and party != self._client_id and bool(self.scopes)

    @property
    def claims(self) -> Mapping[str, Any]:
        """Every verified claim, read-only all the way down (the principal is cached and shared)."""
        frozen = self._frozen
        if frozen is None:
            # Two threads may both build it; they build equal views and either one may be kept.
            frozen = self._frozen = _frozen_mapping(self._claims)
        return frozen

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # The claims view, a mappingproxy, cannot be pickled: the copy builds its own.
        state = {name: getattr(self, name) for name in self.__slots__}
        state["_frozen"] = None
        return None, state

    def _fields(self) -> tuple[tuple[str, Any], ...]:
        return tuple((name, getattr(self, name)) for name in _SHOWN)

    def __repr__(self) -> str:
        return "Principal(" + ", ".join(f"{name}={value!r}" for name, value in self._fields()) + ")"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Principal):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())


# What repr, == and hash look at: every field but the claims.
_SHOWN: Final = (
    "provider",
    "issuer",
    "subject",
    "object_id",
    "tenant_id",
    "audience",
    "authorized_party",
    "token_version",
    "scopes",
    "roles",
    "expires_at",
    "on_behalf_of",
)


def _words(value: str | list[str] | None) -> tuple[str, ...]:
    """A space-separated string (Entra ``scp``) or a list of strings (``roles``) as a tuple."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    return tuple(value)


def _frozen_mapping(claims: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType({name: _frozen(value) for name, value in claims.items()})


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return _frozen_mapping(value)
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    return value
