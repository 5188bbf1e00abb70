"""TokenValidator: the whole decision for one token, in one function.

    parse -> issuer lookup -> signature -> required claims -> time -> audience
          -> authorized party -> identity claim types -> principal        (TokenValidator._verify)

A token accepted before is answered from the verified-token cache after re-checking its time and
that its signing key is still published (TokenValidator._still_valid).

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
from .cache import Entry, TokenCache
from .claims import (
    authorized_party,
    check_audience,
    check_authorized_party,
    check_identity_claims,
    check_time,
    require_claims,
)
from .config import ConfigSource, MiddlewareConfig, load_config, normalize_issuer
from .errors import ISSUER_NOT_CONFIGURED, MALFORMED_TOKEN, TokenRejected
from .fetch import Fetcher
from .jwk import Jwk
from .jws import check_signature, parse_compact, parse_json_object, token_digest
from .keys import Clock, FetchNeeded, ProviderKeys, wall_clock
from .principal import Principal
from .record import Recorder
from .stats import Stats


class TokenValidator:
    """Validates bearer tokens against the configured providers.

    ``session`` is the requests session used for discovery and keys (default: one that reaches
    the provider as Quay's own client does, see :func:`~oidc_middleware.fetch.route`); ``clock`` returns the
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
        self.recorder = Recorder(self._stats)
        entries = self.config.token_cache_entries
        self._cache = TokenCache(entries) if entries else None
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
        # Providers configured without an issuer take it from their discovery document. Both maps
        # are read without a lock and changed only under the discovery lock (atomic dict items).
        self._undiscovered = [keys for keys in self.providers.values() if not keys.provider.issuers]
        self._after_fork_in_child()
        forks.register(self)

    def _after_fork_in_child(self) -> None:
        self._discovery_lock: threading.Lock | None = None  # created at first use (see forks)

    def stats(self) -> dict[str, Any]:
        """Counters since start: decisions recorded by the middleware and the Quay integration
        (accepted, rejected by reason, passed through by reason), key fetches ok/failed,
        verified-token cache hits/misses. A plain dict, safe to serialize."""
        return self._stats.snapshot()

    def health(self) -> dict[str, Any]:
        """For readiness checks: per provider, whether keys are loaded and usable, their age,
        the last fetch error; ``ready`` when every provider has usable keys. No I/O."""
        providers = {name: keys.health() for name, keys in self.providers.items()}
        return {"ready": all(p["usable"] for p in providers.values()), "providers": providers}

    def prefetch(self) -> dict[str, Any]:
        """Fetch discovery and keys of every provider now (blocking); return :meth:`health`.

        Optional: keys are otherwise fetched at the first token. Call it in each worker once the
        worker is set up (gunicorn ``post_worker_init``), not in the master, and not in
        ``post_fork``: a gevent worker patches threading only after that hook, so a lock the fetch
        created there would block the worker's greenlets.
        """
        with forks.lazy_lock(self, "_discovery_lock"):
            self._discover_pending()
        for keys in self.providers.values():
            keys.prefetch()
        return self.health()

    def validate(self, token: str, *, may_fetch: bool = True) -> Principal:
        """Return the verified principal, or raise :class:`TokenRejected`. Decides only: the
        caller records the decision (``self.recorder``), once.

        ``may_fetch=False`` is for event loops: where discovery or keys would have to be fetched,
        :class:`~oidc_middleware.keys.FetchNeeded` is raised instead, and the caller retries in a
        worker thread.
        """
        cache = self._cache
        if cache is None:
            return self._verify(token, may_fetch)
        entry = cache.get(token)
        if entry is not None:
            principal = self._still_valid(entry)
            if principal is not None:
                self._stats.add("token_cache", "hits")
                return principal
            cache.drop(token)
        try:
            principal = self._verify(token, may_fetch, cache=cache)
        except FetchNeeded:
            raise  # retried in a worker thread, where the miss is counted
        except TokenRejected:
            self._stats.add("token_cache", "misses")
            raise
        self._stats.add("token_cache", "misses")
        return principal

    def _still_valid(self, entry: Entry) -> Principal | None:
        """A cached acceptance, if it still holds now: time, and the key still published."""
        if self._clock() > entry.valid_until:
            return None  # the full path then says why (usually token_expired)
        try:
            keys = entry.keys.usable(may_fetch=False)  # also starts a due background refresh
        except (FetchNeeded, TokenRejected):
            return None
        return entry.principal if entry.key_fingerprint in keys.fingerprints else None

    def _verify(self, token: str, may_fetch: bool, cache: TokenCache | None = None) -> Principal:
        """The whole pipeline, one step per line; caches the acceptance when asked."""
        jws = parse_compact(token, max_bytes=self.config.max_token_bytes)
        claims = parse_json_object(jws.payload, "payload")
        try:
            keys = self._provider_for_issuer(claims, may_fetch)
        except TokenRejected as rejection:
            rejection.claims = claims
            raise
        provider = keys.provider
        try:
            jwk = check_signature(jws, keys if may_fetch else _NonBlocking(keys))
            require_claims(claims)
            expires = check_time(claims, self._clock(), self.config.leeway_seconds)
            audience = check_audience(claims, provider)
            party = authorized_party(claims)
            check_authorized_party(party, audience, provider)
            check_identity_claims(claims)
        except TokenRejected as rejection:
            rejection.provider = provider.id
            rejection.claims = claims
            raise
        # Cached on its second verification (see cache.py); only then is the SHA-256 needed here.
        cached = cache is not None and cache.admit(token)
        digest = token_digest(token) if cached else None
        principal = Principal(
            claims,
            provider=provider.id,
            client_id=provider.client_id,
            audience=audience,
            authorized_party=party,
            token_fingerprint=digest[:8].hex() if digest else None,  # == jws.fingerprint(token)
        )
        if cache is not None and digest is not None:
            valid_until = min(
                expires + self.config.leeway_seconds, self._clock() + self.config.token_cache_seconds
            )
            cache.put(digest, Entry(principal, keys, jwk.fingerprint, valid_until), slot=hash(token))
        return principal

    @property
    def discovering(self) -> bool:
        """Whether a provider configured without issuers has not learnt them from its discovery
        document yet: until then, an issuer the validator does not know may still be one of its."""
        return bool(self._undiscovered)

    def provider_for(self, claims: Mapping[str, Any], *, may_fetch: bool = True) -> ProviderKeys:
        """The provider whose keys must verify a token with these (unverified) claims: the
        pipeline's issuer lookup, for tools such as ``explain``. TokenRejected when none."""
        return self._provider_for_issuer(claims, may_fetch)

    def _provider_for_issuer(self, claims: Mapping[str, Any], may_fetch: bool) -> ProviderKeys:
        """Choose the provider by the unverified ``iss``: exact match, one trailing ``/`` ignored."""
        issuer = claims.get("iss")
        if issuer is None:
            raise TokenRejected(ISSUER_NOT_CONFIGURED, "token has no 'iss' claim")
        if not isinstance(issuer, str):
            raise TokenRejected(MALFORMED_TOKEN, "claim 'iss' is not a string")
        keys = self._by_issuer.get(normalize_issuer(issuer))
        # Discovered issuers are http(s) URLs (the configuration allows no other): an issuer like
        # Quay's own "quay" can never be one, so it never waits for a provider's discovery.
        if keys is None and self._undiscovered and issuer.startswith(("https://", "http://")):
            if not may_fetch:
                raise FetchNeeded
            keys = self._discover_issuers(issuer)
        if keys is None:
            raise TokenRejected(ISSUER_NOT_CONFIGURED, f"issuer {issuer[:120]!r} is not configured")
        return keys

    def _discover_issuers(self, issuer: str) -> ProviderKeys | None:
        lock = forks.lazy_lock(self, "_discovery_lock")
        # One thread discovers; the others do not queue behind a slow provider: for them the
        # issuer is unknown until discovery has succeeded.
        if not lock.acquire(blocking=False):
            return self._by_issuer.get(normalize_issuer(issuer))
        try:
            self._discover_pending()
        finally:
            lock.release()
        return self._by_issuer.get(normalize_issuer(issuer))

    def _discover_pending(self) -> None:
        """Learn the issuer of each provider configured without one (discovery lock held)."""
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


class _NonBlocking:
    """A provider's keys as a KeySource that never fetches (raises FetchNeeded instead)."""

    __slots__ = ("_keys",)

    def __init__(self, keys: ProviderKeys) -> None:
        self._keys = keys

    def select(self, kid: str | None, alg: str) -> Jwk:
        return self._keys.select(kid, alg, may_fetch=False)
