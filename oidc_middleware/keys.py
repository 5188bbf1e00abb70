"""Discovery documents and signing keys, per provider: fetched lazily, cached, refreshed.

Nothing is fetched at start-up, so the application starts while the identity provider is down.
The first token of a provider fetches its discovery document (unless ``OIDC_JWKS_URI`` is set) and
its JWKS. A key set lives ``JWKS_CACHE_SECONDS``; a token naming an unknown ``kid`` causes one
refetch, at most once per ``JWKS_MIN_REFRESH_SECONDS`` per provider, so a stream of forged kids
cannot hammer the provider. A failed refresh keeps the keys that were working. Each provider's keys
are used only for the tokens whose issuer maps to that provider.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import requests

from .audit import log
from .config import MiddlewareConfig, ProviderConfig, normalize_issuer, url_problem
from .errors import KEYS_UNAVAILABLE, UNKNOWN_KEY, TokenRejected
from .jwk import Jwk, KeySet

MAX_DOCUMENT_BYTES: Final = 1024 * 1024
# After a failed fetch, the next attempt waits this long (a later issue adds back-off).
RETRY_AFTER_FAILURE_SECONDS: Final = 5.0

Clock = Callable[[], float]


class FetchError(Exception):
    """A discovery or JWKS fetch failed; the message is safe to log."""


class FetchNeeded(Exception):
    """Raised instead of fetching when the caller said it must not block (an event loop)."""


def wall_clock() -> float:
    """The default clock; looked up on each call so that tests can freeze time."""
    return time.time()


class ProviderKeys:
    """The discovery document and key set of one provider, shared by all threads."""

    def __init__(
        self,
        provider: ProviderConfig,
        config: MiddlewareConfig,
        session: requests.Session,
        clock: Clock = wall_clock,
    ) -> None:
        self.provider = provider
        self._config = config
        self._session = session
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._keys_expire_at = 0.0
        self._last_key_fetch = float("-inf")
        self._discovery: dict[str, Any] | None = None
        self._discovery_expire_at = 0.0
        self._next_attempt_at = float("-inf")
        self.last_error: str | None = None

    def select(self, kid: str | None, alg: str, *, may_fetch: bool = True) -> Jwk:
        """The key to verify a token with this ``kid`` and ``alg``, or TokenRejected.

        With ``may_fetch=False`` nothing blocks: :class:`FetchNeeded` is raised where a fetch (or
        waiting for another thread's fetch) would be needed.
        """
        keys = self._current_keys(may_fetch)
        try:
            return keys.select(kid, alg)
        except TokenRejected as rejection:
            if rejection.reason != UNKNOWN_KEY or kid is None:
                raise
        # An unknown kid may be a key the provider rotated in since the last fetch.
        return self._refresh_for_kid(kid, may_fetch).select(kid, alg)

    def discovered_issuer(self) -> str | None:
        """The issuer the discovery document names, fetching it if needed; None if unavailable."""
        with self._lock:
            if self._discovery is None and self._clock() < self._next_attempt_at:
                return None
            try:
                return str(self._discover()["issuer"])
            except FetchError as exc:
                self._failed(str(exc), event="oidc.discovery.fetch_failed")
                return None

    def _current_keys(self, may_fetch: bool) -> KeySet:
        now = self._clock()
        keys = self._keys
        if keys is not None and now < self._keys_expire_at:
            return keys
        if not may_fetch:
            raise FetchNeeded
        with self._lock:
            if self._keys is None or self._clock() >= self._keys_expire_at:
                self._try_fetch_keys()
            if self._keys is None:
                raise TokenRejected(
                    KEYS_UNAVAILABLE,
                    f"signing keys of provider {self.provider.id!r} are unavailable: "
                    f"{self.last_error or 'not fetched yet'}",
                    provider=self.provider.id,
                )
            return self._keys

    def _refresh_for_kid(self, kid: str, may_fetch: bool) -> KeySet:
        if not may_fetch:
            if self._clock() - self._last_key_fetch < self._config.jwks_min_refresh_seconds:
                return self._keys or KeySet()
            raise FetchNeeded
        with self._lock:
            keys = self._keys or KeySet()
            # Another thread may have fetched the key while this one waited for the lock.
            if kid not in keys:
                if self._clock() - self._last_key_fetch >= self._config.jwks_min_refresh_seconds:
                    self._try_fetch_keys()
                keys = self._keys or keys
            return keys

    def _try_fetch_keys(self) -> None:
        """Fetch the key set; on failure keep the keys that were working. Lock held."""
        now = self._clock()
        if now < self._next_attempt_at:
            return
        self._last_key_fetch = now
        try:
            url = self.provider.jwks_uri or self._jwks_uri()
            keys, skipped = KeySet.from_jwks(self._get_json(url))
            if not keys:
                raise FetchError(f"no usable signing key at {url} ({'; '.join(skipped) or 'empty'})")
        except (FetchError, ValueError) as exc:
            self._failed(str(exc), event="oidc.keys.fetch_failed")
            return
        self._keys = keys
        self._keys_expire_at = now + self._config.jwks_cache_seconds
        self.last_error = None
        log.info(
            "oidc.keys.fetched",
            provider=self.provider.id,
            url=url,
            kids=[key.kid for key in keys.keys],
            skipped=skipped,
        )

    def _jwks_uri(self) -> str:
        uri = self._discover().get("jwks_uri")
        problem = url_problem(uri)
        if problem is not None:
            raise FetchError(f"jwks_uri of provider {self.provider.id!r}: {problem}")
        return str(uri)

    def _discover(self) -> dict[str, Any]:
        """The discovery document, fetched when missing or stale. Lock held."""
        now = self._clock()
        if self._discovery is not None and now < self._discovery_expire_at:
            return self._discovery
        url = self.provider.discovery_url
        try:
            document = self._get_json(url)
        except FetchError as exc:
            if self._discovery is None:
                raise
            # The provider is down; the document that was working stays in use (its keys too).
            self._failed(str(exc), event="oidc.discovery.fetch_failed")
            return self._discovery
        issuer = document.get("issuer") if isinstance(document, dict) else None
        if not isinstance(issuer, str):
            raise FetchError(f"discovery document at {url} has no issuer")
        # OpenID Connect Discovery 1.0 section 4.3: the issuer returned MUST be identical to the
        # one expected; otherwise the document (and its keys) must not be used.
        expected = {normalize_issuer(i) for i in self.provider.issuers}
        if expected and normalize_issuer(issuer) not in expected:
            raise FetchError(
                f"discovery at {url} names issuer {issuer!r}, which is not configured for "
                f"provider {self.provider.id!r} ({', '.join(self.provider.issuers)})"
            )
        self._discovery = dict(document)
        self._discovery_expire_at = now + self._config.jwks_cache_seconds
        return self._discovery

    def _failed(self, error: str, *, event: str) -> None:
        self.last_error = error
        self._next_attempt_at = self._clock() + RETRY_AFTER_FAILURE_SECONDS
        log.warning(event, provider=self.provider.id, error=error, keeping_old_keys=self._keys is not None)

    def _get_json(self, url: str) -> Any:
        timeout = self._config.http_timeout_seconds
        try:
            # No redirects: a discovery or key URL that moves is a configuration change to make
            # deliberately, not to follow silently.
            with self._session.get(
                url,
                timeout=(timeout, timeout),
                allow_redirects=False,
                stream=True,
                headers={"Accept": "application/json"},
            ) as response:
                if response.status_code != 200:
                    raise FetchError(f"HTTP {response.status_code} from {url}")
                body = b""
                for chunk in response.iter_content(64 * 1024):
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise FetchError(f"response from {url} is larger than {MAX_DOCUMENT_BYTES} bytes")
        except requests.RequestException as exc:
            raise FetchError(f"{type(exc).__name__} fetching {url}") from None
        try:
            return json.loads(body)
        except ValueError:
            raise FetchError(f"response from {url} is not JSON") from None


def default_session() -> requests.Session:
    """A session that ignores proxy and netrc settings from the environment."""
    session = requests.Session()
    session.trust_env = False
    return session
