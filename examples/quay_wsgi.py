"""A small Flask app behind OIDCMiddleware, for the demo and for applications other than Quay.

It is not Quay, and proves nothing about Quay: for Quay itself, the two lines of
``oidc_middleware.quay.install`` go into Quay's web.py and registry.py (docs/quay-integration.md),
and tests/quay/ runs them against the real Quay. Any other WSGI app wraps itself the same way::

    from oidc_middleware import OIDCMiddleware, TokenValidator

    validator = TokenValidator(app.config)
    app.wsgi_app = OIDCMiddleware(app.wsgi_app, validator.config, validator=validator)

Run it against a real tenant: ``python examples/quay_wsgi.py examples/config.yaml`` (serves
127.0.0.1:8080). ``oidc-middleware demo`` runs it against a loopback provider.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from flask import Flask, Response, jsonify, request

from oidc_middleware import OIDCMiddleware, Principal, TokenValidator


def current_principal() -> Principal | None:
    """The verified principal, when the middleware accepted an OIDC token for this request.

    An application reads it where a request's credentials become an identity. (Quay does not
    need it: with ``install`` Quay's own authentication asks the same validator.)
    """
    return request.environ.get("oidc.principal")


def describe(principal: Principal) -> dict[str, Any]:
    return {
        "authenticated_by": "oidc",
        "provider": principal.provider,
        "tenant_id": principal.tenant_id,
        "object_id": principal.object_id,
        "client": principal.authorized_party,
        "on_behalf_of": principal.on_behalf_of,
        "scopes": list(principal.scopes),
        "roles": list(principal.roles),
        "token_version": principal.token_version,
    }


def create_app() -> Flask:
    app = Flask("quay-shaped")

    @app.get("/api/v1/user/")
    def api_user() -> Any:
        principal = current_principal()
        if principal is not None:
            return jsonify(describe(principal))
        if request.headers.get("Authorization", "").startswith("Bearer "):
            # Not an OIDC token the middleware verified (an opaque Quay OAuth token, or a JWT of
            # an issuer no provider claims): Quay checks it with its own code, as it always did.
            return jsonify(
                {"authenticated_by": None, "note": "not verified by the middleware; Quay checks it"}
            )
        return jsonify({"error": "Requires authentication"}), 401

    @app.get("/v2/")
    def registry_base() -> Any:
        if request.headers.get("Authorization", "").startswith("Bearer "):
            # A registry token Quay minted itself (iss: quay) reaches Quay untouched.
            return _registry({}, 200)
        body = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required", "detail": {}}]}
        return _registry(body, 401)

    @app.get("/v2/auth")
    def docker_login() -> Any:
        principal = current_principal()
        if principal is None:
            return _registry(
                {"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]}, 401
            )
        # Quay would now mint its own short-lived registry JWT for this identity.
        return jsonify({"token": "<registry token minted by Quay>", "identity": describe(principal)})

    @app.get("/oauth2/federation/robot/token")
    def robot_federation() -> Any:
        principal = current_principal()
        if principal is None:
            return jsonify({"error": "Robot federation requires an OIDC token"}), 401
        # Quay then checks the robot's federation config (issuer and subject) against the principal.
        robot = request.authorization.username if request.authorization else None
        return jsonify(
            {"robot": robot, "token": "<robot token minted by Quay>", "identity": describe(principal)}
        )

    return app


def _registry(body: dict[str, Any], status: int) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers["Docker-Distribution-API-Version"] = "registry/2.0"
    return response


def wrap(app: Flask, validator: TokenValidator) -> Flask:
    """Wrap the app exactly as Quay's web.py and registry.py would."""
    app.wsgi_app = OIDCMiddleware(app.wsgi_app, validator.config, validator=validator)  # type: ignore[method-assign]
    return app


def from_environment() -> Flask:
    """The wrapped app for ``gunicorn 'quay_wsgi:from_environment()'``, config from $QUAY_CONFIG.

    With ``--preload`` this runs once in the gunicorn master, before the workers are forked:
    building the validator fetches nothing and starts no thread, so forking it is safe.
    """
    return wrap(create_app(), TokenValidator(os.environ.get("QUAY_CONFIG", "examples/config.yaml")))


if __name__ == "__main__":
    from werkzeug.serving import run_simple

    quay = wrap(create_app(), TokenValidator(sys.argv[1] if len(sys.argv) > 1 else "examples/config.yaml"))
    run_simple("127.0.0.1", 8080, quay, threaded=True)
