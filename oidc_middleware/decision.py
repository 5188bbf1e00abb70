"""The request decision shared by the WSGI and ASGI adapters: pass, accept, or reject.

    credential in request? -- no --> pass (no event)
    JWT-shaped?            -- no --> pass (event: passthrough, opaque_token)
    TokenValidator.validate
        accepted, but an app-only
        token where Quay wants a
        person (APP_ONLY_TOKENS)   --> refuse: app_only_token (event: rejected)
        accepted                   --> call the app with the principal (event: accepted, unless
                                       the app records the final outcome: robot federation
                                       under oidc_middleware.quay.install)
        issuer_not_configured and
        UNKNOWN_ISSUER: pass       --> pass (event: passthrough)
        any other rejection        --> refuse; the app is not called (event: rejected)
    more than one credential       --> 400 invalid_request (event: rejected)

Every outcome that examined a credential is recorded once (counter and audit event, record.py).
Nothing here knows a server protocol; the adapters translate requests in and responses out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from . import audit
from .config import ConfigSource, MiddlewareConfig, load_config
from .credentials import ID_TOKEN, ROBOT_FEDERATION, Credential, InvalidRequest, find_credential
from .errors import (
    APP_ONLY_TOKEN,
    INVALID_REQUEST,
    ISSUER_NOT_CONFIGURED,
    MALFORMED_TOKEN,
    OPAQUE_TOKEN,
    TokenRejected,
)
from .jws import fingerprint
from .keys import FetchNeeded
from .principal import Principal
from .record import RequestContext as RecordedRequest
from .responses import Response, rejection
from .validator import TokenValidator


class HttpRequest(NamedTuple):
    """What the decision needs of a request. ``authorization`` holds every Authorization header.

    A named tuple: built on every request that carries credentials, so it must be cheap.
    """

    method: str
    path: str
    query: str
    authorization: tuple[str, ...]
    host: str
    scheme: str
    remote_addr: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Decision:
    """``response`` set: answer it, do not call the app. Otherwise call the app, with
    ``principal`` when the token was accepted."""

    principal: Principal | None = None
    response: Response | None = None
    credential: Credential | None = None  # the accepted credential, with ``principal``


PASS = Decision()


class Decider:
    """Decides for one request; shared by all threads (and the event loop) of a process.

    ``recorded_by_app``: credential kinds whose acceptance the application records itself, with
    the final outcome it decides after the token (the Quay integration, for robot federation).
    """

    def __init__(self, validator: TokenValidator, recorded_by_app: frozenset[str] = frozenset()) -> None:
        self.validator = validator
        self.config = validator.config
        self.recorder = validator.recorder
        self.recorded_by_app = recorded_by_app

    @classmethod
    def build(
        cls,
        config: MiddlewareConfig | ConfigSource | None,
        validator: TokenValidator | None = None,
        recorded_by_app: frozenset[str] = frozenset(),
    ) -> Decider:
        """The decider of an adapter: over ``validator`` when given (shared caches), else a new one.

        With both, ``config`` (may be None) must be the validator's: two configurations for one
        middleware would be a silent misconfiguration.
        """
        if validator is None:
            if config is None:
                raise ValueError("a configuration or a validator is needed")
            return cls(TokenValidator(config), recorded_by_app)
        if config is not None and load_config(config) != validator.config:
            raise ValueError("config differs from validator.config; pass one or the other")
        return cls(validator, recorded_by_app)

    def decide(self, request: HttpRequest, *, may_fetch: bool = True) -> Decision:
        """The decision for ``request``, recorded once. With ``may_fetch=False``, FetchNeeded may
        be raised (before anything is recorded)."""
        config = self.config
        record = self.recorder
        try:
            credential = find_credential(
                request.path, request.query, request.authorization, config.protected_paths
            )
        except InvalidRequest as problem:
            record.invalid_request(request, INVALID_REQUEST, str(problem))
            return Decision(
                response=self._refuse(request, INVALID_REQUEST, INVALID_REQUEST, 400, str(problem))
            )
        if credential is None:
            return PASS
        if not credential.looks_like_jwt:
            record.not_examined(request, credential, OPAQUE_TOKEN)
            return PASS
        try:
            principal = self.validator.validate(credential.token, may_fetch=may_fetch)
        except TokenRejected as refused:
            return self._rejected(request, credential, refused)
        except FetchNeeded:
            raise
        except Exception as exc:
            return self._rejected(request, credential, internal_error(request, credential.token, exc))
        misused = check_token_use(credential.kind, principal, config)
        if misused is not None:
            record.rejected(request, credential, misused, principal=principal)
            return Decision(response=self._refuse_with(request, misused))
        if credential.kind not in self.recorded_by_app:
            record.accepted(request, credential, principal)
        return Decision(principal=principal, credential=credential)

    def _rejected(self, request: HttpRequest, credential: Credential, refused: TokenRejected) -> Decision:
        # Not ours: Quay's own registry tokens, another service's JWTs.
        passthrough = refused.reason == ISSUER_NOT_CONFIGURED and self.config.unknown_issuer == "pass"
        self.recorder.rejected(request, credential, refused, passthrough=passthrough)
        if passthrough:
            return PASS
        return Decision(response=self._refuse_with(request, refused))

    def _refuse_with(self, request: HttpRequest, refused: TokenRejected) -> Response:
        return self._refuse(request, refused.reason, refused.error, refused.status_code, refused.description)

    def _refuse(
        self, request: HttpRequest, reason: str, error: str, status: int, description: str
    ) -> Response:
        config = self.config
        return rejection(
            path=request.path,
            reason=reason,
            error=error,
            status=status,
            description=description,
            host=config.server_hostname or request.host,
            scheme=config.preferred_url_scheme if config.server_hostname else request.scheme,
            hide_description=config.hide_error_descriptions,
        )


# Robot federation takes a workload's token; an ID token (Quay's web login) is a person's by nature.
_ANY_APPLICATION = frozenset({ROBOT_FEDERATION, ID_TOKEN})


def check_token_use(kind: str, principal: Principal, config: MiddlewareConfig) -> TokenRejected | None:
    """The refusal of a verified token where it must not be used, else None.

    An app-only token (a service principal: no person) is refused everywhere but robot
    federation unless ``APP_ONLY_TOKENS: anywhere``. Quay makes every token it accepts on the API
    or at docker login a Quay user with a person's full powers (without an e-mail claim, it
    refuses with a misleading message); a workload's place is a robot account, which robot
    federation lets it use without a password.
    """
    if kind in _ANY_APPLICATION or config.app_only_tokens == "anywhere" or not principal.app_only:
        return None
    return TokenRejected(
        APP_ONLY_TOKEN,
        f"the token of application {principal.authorized_party or '?'} acting as itself (service "
        f"principal {principal.object_id or principal.subject}) names no person; use it for robot "
        "federation (GET /oauth2/federation/robot/token with Basic <org>+<robot>:<token>) and log "
        "in with the robot token it returns",
        provider=principal.provider,
    )


def request_id(value: str | None) -> str | None:
    """The X-Request-ID header as logged: printable, at most 128 characters."""
    if value is None:
        return None
    return "".join(ch for ch in value[:128] if ch.isprintable())


def internal_error(request: RecordedRequest, token: str, exc: Exception) -> TokenRejected:
    """The rejection for an exception from validation, logged loudly: it is a bug in this package.

    Fails closed: the token is refused as malformed."""
    audit.log.error(
        "oidc.token.internal_error",
        error_type=type(exc).__name__,
        token_fingerprint=fingerprint(token),
        method=request.method,
        path=request.path,
        remote_addr=request.remote_addr,
        request_id=request.request_id,
    )
    return TokenRejected(MALFORMED_TOKEN, "the token could not be examined (internal error)")
