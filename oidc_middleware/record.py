"""The one place where a decision is recorded: its counter and its audit event, together.

The WSGI and ASGI adapters (through the decider) and the Quay integration report every decision
here, and nothing else counts or logs one, so that one token in one request is one count and one
event whichever caller decided it. :meth:`TokenValidator.validate` itself records nothing: it only
decides (it counts only its own mechanics, the verified-token cache and key fetches).
"""

from __future__ import annotations

from typing import Protocol

from . import audit
from .credentials import Credential
from .errors import TokenRejected
from .principal import Principal
from .stats import Stats


class RequestContext(Protocol):
    """What an audit event says about the request (the decider's ``HttpRequest`` has it)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def remote_addr(self) -> str | None: ...
    @property
    def request_id(self) -> str | None: ...


def _fields(request: RequestContext) -> dict[str, str | None]:
    return {
        "method": request.method,
        "path": request.path,
        "remote_addr": request.remote_addr,
        "request_id": request.request_id,
    }


class Recorder:
    """Counts each decision in the validator's :class:`Stats` and writes its audit event."""

    __slots__ = ("_stats",)

    def __init__(self, stats: Stats) -> None:
        self._stats = stats

    def accepted(
        self,
        request: RequestContext,
        credential: Credential,
        principal: Principal,
        *,
        listed_issuer: str | None = None,
    ) -> None:
        """An accepted token (robot federation: ``listed_issuer`` as in :meth:`rejected`)."""
        self._stats.add("decision", "accepted")
        audit.token_event(
            audit.ACCEPTED, _fields(request), credential, principal=principal, listed_issuer=listed_issuer
        )

    def rejected(
        self,
        request: RequestContext,
        credential: Credential | None,
        refused: TokenRejected,
        *,
        passthrough: bool = False,
        principal: Principal | None = None,
        listed_issuer: str | None = None,
    ) -> None:
        """A refused token; ``passthrough`` when it is not ours and the application decides.
        ``principal``: the token was verified, and refused for where it was used (robot
        federation: ``listed_issuer``, the robot's entry that the token's issuer was matched to)."""
        event = audit.PASSTHROUGH if passthrough else audit.REJECTED
        self._stats.add("passthrough" if passthrough else "rejected", refused.reason)
        audit.token_event(
            event,
            _fields(request),
            credential,
            principal=principal,
            claims=refused.claims,
            provider=refused.provider,
            reason=refused.reason,
            description=refused.description,
            listed_issuer=listed_issuer,
        )

    def invalid_request(self, request: RequestContext, reason: str, description: str) -> None:
        """A request refused before any token was examined (RFC 6750 ``invalid_request``)."""
        self._stats.add("rejected", reason)
        audit.token_event(audit.REJECTED, _fields(request), None, reason=reason, description=description)

    def not_examined(self, request: RequestContext, credential: Credential, reason: str) -> None:
        """A credential that is not a token of ours (an opaque OAuth token): passed on."""
        self._stats.add("passthrough", reason)
        audit.token_event(audit.PASSTHROUGH, _fields(request), credential, reason=reason)
