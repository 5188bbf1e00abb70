"""OIDCMiddleware: the WSGI adapter. Wrap a Flask app's WSGI app::

app.wsgi_app = OIDCMiddleware(app.wsgi_app, load_config(app.config))

For Quay, ``oidc_middleware.quay.install(application)`` does this and also makes Quay's own
authentication ask the same validator.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .config import ConfigSource, MiddlewareConfig
from .decision import Decider, HttpRequest, request_id
from .validator import TokenValidator

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

PRINCIPAL_KEY = "oidc.principal"
# The accepted credential, beside the principal: so that the Quay integration, asked about the same
# token later in the request, does not record the decision a second time. Its repr hides the token.
CREDENTIAL_KEY = "oidc.credential"


class OIDCMiddleware:
    """Validates OIDC bearer tokens before the wrapped WSGI application sees the request.

    Accepted: the app is called with the :class:`~oidc_middleware.Principal` at
    ``environ["oidc.principal"]``, the request otherwise unchanged. Rejected: the app is not
    called; the client gets an RFC 6750 (API) or Docker registry (``/v2``) error. Requests without
    a credential for us pass through untouched. ``config`` is a :class:`MiddlewareConfig` or
    anything :func:`~oidc_middleware.load_config` accepts; ``validator`` shares one
    :class:`TokenValidator` (and its key caches) between several middlewares.
    ``recorded_by_app``: credential kinds whose acceptance the wrapped app records itself, with its
    final outcome (``oidc_middleware.quay.install`` for robot federation); leave it empty.
    """

    def __init__(
        self,
        app: WSGIApplication,
        config: MiddlewareConfig | ConfigSource | None,
        *,
        validator: TokenValidator | None = None,
        recorded_by_app: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.decider = Decider.build(config, validator, recorded_by_app)
        self.validator = self.decider.validator

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # Only this middleware may set the principal; never trust one that arrived with the request.
        environ.pop(PRINCIPAL_KEY, None)
        environ.pop(CREDENTIAL_KEY, None)
        authorization = environ.get("HTTP_AUTHORIZATION")
        if authorization is None:
            return self.app(environ, start_response)
        decision = self.decider.decide(http_request(environ, authorization))
        if decision.response is not None:
            response = decision.response
            start_response(response.status_line, list(response.headers))
            return [response.body]
        if decision.principal is not None:
            environ[PRINCIPAL_KEY] = decision.principal
            environ[CREDENTIAL_KEY] = decision.credential
        return self.app(environ, start_response)


def http_request(environ: dict[str, Any], authorization: str) -> HttpRequest:
    """What the decision needs of a WSGI request."""
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    return HttpRequest(
        method=environ.get("REQUEST_METHOD", "GET"),
        path=environ.get("PATH_INFO", "") or "/",
        query=environ.get("QUERY_STRING", ""),
        authorization=(authorization,),
        host=host,
        scheme=environ.get("wsgi.url_scheme", "http"),
        remote_addr=environ.get("REMOTE_ADDR"),
        request_id=request_id(environ.get("HTTP_X_REQUEST_ID")),
    )
