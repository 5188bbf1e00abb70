"""OIDCASGIMiddleware: the ASGI 3 adapter, over the same decision as the WSGI one.

``http`` requests are examined; ``lifespan`` and ``websocket`` pass through untouched. The
decision runs on the event loop when the keys it needs are in memory, and in a worker thread
when discovery or keys must be fetched, so a blocking fetch never stalls the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .config import ConfigSource, MiddlewareConfig
from .decision import Decider, Decision, HttpRequest, request_id
from .keys import FetchNeeded
from .validator import TokenValidator
from .wsgi import CREDENTIAL_KEY, PRINCIPAL_KEY

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class OIDCASGIMiddleware:
    """Validates OIDC bearer tokens before the wrapped ASGI application sees the request.

    Accepted: the app is called with the principal at ``scope["oidc.principal"]``. Rejected: the
    app is not called. Same options and behaviour as :class:`~oidc_middleware.OIDCMiddleware`.
    """

    def __init__(
        self,
        app: ASGIApp,
        config: MiddlewareConfig | ConfigSource | None,
        *,
        validator: TokenValidator | None = None,
    ) -> None:
        self.app = app
        self.decider = Decider.build(config, validator)
        self.validator = self.decider.validator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = {key: value for key, value in scope.items() if key not in (PRINCIPAL_KEY, CREDENTIAL_KEY)}
        authorization = tuple(
            value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name.lower() == b"authorization"
        )
        if not authorization:
            await self.app(scope, receive, send)
            return
        request = _request(scope, authorization)
        decision = await self._decide(request)
        if decision.response is not None:
            response = decision.response
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [(name.lower().encode(), value.encode()) for name, value in response.headers],
                }
            )
            await send({"type": "http.response.body", "body": response.body})
            return
        if decision.principal is not None:
            scope[PRINCIPAL_KEY] = decision.principal
            scope[CREDENTIAL_KEY] = decision.credential
        await self.app(scope, receive, send)

    async def _decide(self, request: HttpRequest) -> Decision:
        try:
            return self.decider.decide(request, may_fetch=False)
        except FetchNeeded:
            return await asyncio.to_thread(self.decider.decide, request)


def _request(scope: Scope, authorization: tuple[str, ...]) -> HttpRequest:
    headers = {name.lower(): value for name, value in scope.get("headers", ())}
    host = headers.get(b"host", b"").decode("latin-1")
    if not host and scope.get("server"):
        server_host, port = scope["server"]
        host = f"{server_host}:{port}"
    client = scope.get("client")
    raw_request_id = headers.get(b"x-request-id")
    return HttpRequest(
        method=scope.get("method", "GET"),
        path=scope.get("path", "") or "/",
        query=scope.get("query_string", b"").decode("latin-1"),
        authorization=authorization,
        host=host,
        scheme=scope.get("scheme", "http"),
        remote_addr=client[0] if client else None,
        request_id=request_id(raw_request_id.decode("latin-1") if raw_request_id is not None else None),
    )
