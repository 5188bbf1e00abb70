"""A plain ASGI app behind OIDCASGIMiddleware.

uvicorn examples.asgi_app:app            # reads examples/config.yaml, or $QUAY_CONFIG
"""

from __future__ import annotations

import json
import os
from typing import Any

from oidc_middleware import OIDCASGIMiddleware


async def whoami(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the verified principal, or with null when there is none."""
    if scope["type"] != "http":
        return
    principal = scope.get("oidc.principal")
    body = {"principal": None}
    if principal is not None:
        body["principal"] = {
            "provider": principal.provider,
            "tenant_id": principal.tenant_id,
            "object_id": principal.object_id,
            "client": principal.authorized_party,
            "on_behalf_of": principal.on_behalf_of,
        }
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def create_app(config: Any) -> OIDCASGIMiddleware:
    return OIDCASGIMiddleware(whoami, config)


# Building the middleware fetches nothing: the app starts even while the identity provider is down.
app = create_app(os.environ.get("QUAY_CONFIG", os.path.join(os.path.dirname(__file__), "config.yaml")))
