"""TokenValidator: the whole decision for one token, in one function.

    parse -> issuer lookup -> signature -> required claims -> time -> audience
          -> authorized party -> principal

Each step is a small function that returns or raises one specific :class:`TokenRejected`. The
issuer lookup reads the *unverified* ``iss`` only to choose the provider whose keys must then
verify the signature; nothing else from the token is trusted before that.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import requests

from . import forks
from .audit import log
from .claims import (
    authorized_party,
    check_audience,
    check_authorized_party,
    check_time,
    require_claims,
)
from .config import ConfigSource, MiddlewareConfig, load_config, normalize_issuer
from .errors import ISSUER_NOT_CONFIGURED, MALFORMED_TOKEN, TokenRejected
from .fetch import Fetcher
from .jwk import Jwk
from .jws import check_signature, parse_compact, parse_json_object
from .keys import Clock, FetchNeeded, ProviderKeys, wall_clock
from .principal import Principal, build_principal
from .stats import Stats


class TokenValidator:
    """Validates bearer tokens against the configured providers.

    ``session`` is the requests session used for discovery and keys (default: one that uses only
    the proxy and CA bundle of the configuration, never the environment's); ``clock`` returns the
    current Unix time (default: ``time.time``). Thread-safe and fork-safe; create one per
    application and share it.
    """

    def __init__(
        self,
        config: MiddlewareConfig | ConfigSource,
        *,
        session: requests.Session | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = load_config(config)
        self._clock = clock or wall_clock
        self._stats = Stats()
        fetcher = Fetcher(self.config, session)
        self.providers = {
            provider.id: ProviderKeys(provider, self.config, fetcher, self._stats, self._clock)
            for provider in self.config.providers
        }
        self._by_issuer = {
            normalize_issuer(issuer): keys
            for keys in self.providers.values()
            for issuer in keys.provider.issuers
        }
        # Providers configured without an issuer take it from their discovery document.
        self._undiscovered = [keys for keys in self.providers.values() if not keys.provider.issuers]
        self._after_fork_in_child()
        forks.register(self)

    def _after_fork_in_child(self) -> None:
        self._discovery_lock_: threading.Lock | None = None  # created at first use (see forks)

    def stats(self) -> dict[str, Any]:
        """Counters since start: accepted, rejected by reason, passed through by reason, key
        fetches ok/failed, verified-token cache hits/misses. A plain dict, safe to serialize."""
        return self._stats.snapshot()

    def count(self, outcome: str, reason: str | None = None) -> None:
        """Record a decision made on top of :meth:`validate` (the middleware's pass-through)."""
        if outcome == "accepted":
            self._stats.add("decision", "accepted")
        else:
            self._stats.add(outcome, reason or "unknown")

    def health(self) -> dict[str, Any]:
        """For readiness checks: per provider, whether keys are loaded and usable, their age,
        the last fetch error; ``ready`` when every provider has usable keys. No I/O."""
        providers = {name: keys.health() for name, keys in self.providers.items()}
        return {"ready": all(p["usable"] for p in providers.values()), "providers": providers}

    def prefetch(self) -> dict[str, Any]:
        """Fetch discovery and keys of every provider now (blocking); return :meth:`health`.

        Optional: keys are otherwise fetched at the first token. Call it in each worker after the
        fork (gunicorn ``post_fork``), not in the master.
        """
        for keys in self.providers.values():
            if not keys.provider.issuers:
                keys.discovered_issuer()
            keys.prefetch()
        return self.health()

    def validate(self, token: str, *, may_fetch: bool = True, count: bool = True) -> Principal:
        """Return the verified principal, or raise :class:`TokenRejected`.

        ``may_fetch=False`` is for event loops: where discovery or keys would have to be fetched,
        :class:`~oidc_middleware.keys.FetchNeeded` is raised instead, and the caller retries in a
        worker thread. ``count=False`` leaves the decision counters to the caller.
        """
        try:
            principal = self._validate(token, may_fetch)
        except TokenRejected as rejection:
            if count:
                self._stats.add("rejected", rejection.reason)
            raise
        if count:
            self._stats.add("decision", "accepted")
        return principal

    def _validate(self, token: str, may_fetch: bool) -> Principal:
        jws = parse_compact(token, max_bytes=self.config.max_token_bytes)
        claims = parse_json_object(jws.payload, "payload")
        try:
            keys = self._provider_for_issuer(claims, may_fetch)
        except TokenRejected as rejection:
            rejection.claims = claims
            raise
        provider = keys.provider
        try:
            check_signature(jws, _Fetching(keys, may_fetch))
            require_claims(claims)
            expires = check_time(claims, self._clock(), self.config.leeway_seconds)
            audience = check_audience(claims, provider)
            party = authorized_party(claims)
            check_authorized_party(party, audience, provider)
            return build_principal(
                claims,
                provider=provider.id,
                client_id=provider.client_id,
                audience=audience,
                authorized_party=party,
                expires_at=expires,
            )
        except TokenRejected as rejection:
            rejection.provider = provider.id
            rejection.claims = claims
            raise

    def _provider_for_issuer(self, claims: Mapping[str, Any], may_fetch: bool) -> ProviderKeys:
        """Choose the provider by the unverified ``iss``: exact match, one trailing ``/`` ignored."""
        issuer = claims.get("iss")
        if issuer is None:
            raise TokenRejected(ISSUER_NOT_CONFIGURED, "token has no 'iss' claim")
        if not isinstance(issuer, str):
            raise TokenRejected(MALFORMED_TOKEN, "claim 'iss' is not a string")
        keys = self._by_issuer.get(normalize_issuer(issuer))
        if keys is None and self._undiscovered:
            if not may_fetch:
                raise FetchNeeded
            keys = self._discover_issuers(issuer)
        if keys is None:
            raise TokenRejected(ISSUER_NOT_CONFIGURED, f"issuer {issuer[:120]!r} is not configured")
        return keys

    def _discover_issuers(self, issuer: str) -> ProviderKeys | None:
        with forks.lazy_lock(self, "_discovery_lock_"):
            for keys in list(self._undiscovered):
                discovered = keys.discovered_issuer()
                if discovered is None:
                    continue
                self._undiscovered.remove(keys)
                normal = normalize_issuer(discovered)
                owner = self._by_issuer.setdefault(normal, keys)
                if owner is not keys:
                    log.warning(
                        "oidc.discovery.issuer_conflict",
                        provider=keys.provider.id,
                        issuer=discovered,
                        claimed_by=owner.provider.id,
                    )
        return self._by_issuer.get(normalize_issuer(issuer))


class _Fetching:
    """A provider's keys as a KeySource, fetching or not as the caller allows."""

    __slots__ = ("_keys", "_may_fetch")

    def __init__(self, keys: ProviderKeys, may_fetch: bool) -> None:
        self._keys = keys
        self._may_fetch = may_fetch

    def select(self, kid: str | None, alg: str) -> Jwk:
        return self._keys.select(kid, alg, may_fetch=self._may_fetch)
