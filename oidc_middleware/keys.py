"""Discovery documents and signing keys, per provider: fetched lazily, cached, refreshed, kept.

* Nothing is fetched at start-up: the application starts while the identity provider is down.
* A key set lives as long as its ``Cache-Control: max-age`` says (between 5 minutes and a day),
  else ``JWKS_CACHE_SECONDS``. In the last tenth of its life (at most 5 minutes) the first request
  starts a refresh in a background thread and every request goes on with the keys it has: no
  request waits for a scheduled refresh.
* Last-known-good: when refreshes fail, the keys that worked stay in use for up to
  ``KEYS_MAX_STALENESS_SECONDS`` after they were fetched. ``keys_unavailable`` only when a
  provider never had usable keys or they are older than that.
* After a failed fetch, the next attempt waits about a second, doubling up to
  ``FETCH_BACKOFF_MAX_SECONDS``: service returns quickly once the provider does, and a provider
  that is down is not hammered.
* A token naming an unknown ``kid`` causes at most one fetch per ``JWKS_MIN_REFRESH_SECONDS`` per
  provider, single-flight (concurrent requests wait for the one fetch, then look again). A kid
  still absent after a fetch is remembered as absent for the same interval, so a storm of forged
  kids costs neither fetches nor lock waits.
* Each provider's keys are used only for tokens whose issuer maps to that provider.

Threads: fetches run under one lock per provider. Requests read the key set, the times and the
absent-kid dict without it, relying on single reads and writes of attributes and dict items being
atomic in CPython; a lost update there costs at most one extra lookup or fetch attempt, never a
wrong decision, since every key set a request can see was fetched and checked whole.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from . import forks
from .audit import log
from .config import MiddlewareConfig, ProviderConfig, normalize_issuer, url_problem
from .errors import KEYS_UNAVAILABLE, UNKNOWN_KEY, OIDCMiddlewareError, TokenRejected
from .fetch import Fetched, Fetcher, FetchError
from .jwk import Jwk, KeySet
from .stats import Stats

MIN_LIFETIME_SECONDS: Final = 300
MAX_LIFETIME_SECONDS: Final = 86400
REFRESH_AHEAD_SECONDS: Final = 300  # at most; a tenth of the lifetime when that is shorter
FIRST_RETRY_SECONDS: Final = 1.0
MAX_ABSENT_KIDS: Final = 4096

Clock = Callable[[], float]


class FetchNeeded(OIDCMiddlewareError):
    """Raised instead of fetching when the caller said it must not block (an event loop)."""


def wall_clock() -> float:
    """The default clock; looked up on each call so that tests can freeze time."""
    return time.time()


class ProviderKeys:
    """The discovery document and key set of one provider, shared by all threads of a process."""

    def __init__(
        self,
        provider: ProviderConfig,
        config: MiddlewareConfig,
        fetcher: Fetcher,
        stats: Stats,
        clock: Clock = wall_clock,
    ) -> None:
        self.provider = provider
        self._config = config
        self._fetcher = fetcher
        self._stats = stats
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")  # when the keys in use were fetched
        self._refresh_at = float("-inf")  # when a background refresh should start
        self._last_key_fetch = float("-inf")  # when a key fetch was last attempted
        self._discovery: dict[str, Any] | None = None
        self._discovery_expires_at = float("-inf")
        self._next_attempt_at = float("-inf")
        self._retry_delay = 0.0
        self._absent: dict[str, float] = {}  # kid -> until when it is known to be absent
        self._skipped: list[str] = []  # why keys of the last fetched set were refused
        self._issuer_seen: str | None = None  # the issuer the last discovery document named
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._after_fork_in_child()
        forks.register(self)

    def _after_fork_in_child(self) -> None:
        # Held while fetching, one fetch at a time per provider; created at first use (see forks).
        self._fetch_lock: threading.Lock | None = None
        # A short critical section to start at most one refresh thread (the fetch lock may be
        # held for seconds, so it is not used for that).
        self._start_lock = threading.Lock()
        self._refresh_thread: threading.Thread | None = None

    @property
    def _lock(self) -> threading.Lock:
        return forks.lazy_lock(self, "_fetch_lock")

    # -- what the validator asks -------------------------------------------------------------

    def select(self, kid: str | None, alg: str, *, may_fetch: bool = True) -> Jwk:
        """The key to verify a token with this ``kid`` and ``alg``, or TokenRejected.

        With ``may_fetch=False`` nothing blocks: :class:`FetchNeeded` is raised where a fetch (or
        waiting for another thread's fetch) would be needed.
        """
        keys = self._usable_keys(may_fetch)
        try:
            return keys.select(kid, alg)
        except TokenRejected as rejection:
            if rejection.reason != UNKNOWN_KEY or kid is None or self._known_absent(kid):
                raise
        # An unknown kid may be a key the provider rotated in since the last fetch.
        return self._refresh_for_kid(kid, may_fetch).select(kid, alg)

    def usable(self, *, may_fetch: bool = True) -> KeySet:
        """The key set in use (starting a background refresh when one is due)."""
        return self._usable_keys(may_fetch)

    def discovered_issuer(self) -> str | None:
        """The issuer the discovery document names, fetching it if needed; None if unavailable."""
        if self._discovery is not None:
            return str(self._discovery["issuer"])
        if self._clock() < self._next_attempt_at:
            return None
        with self._lock:
            try:
                return str(self._discover()["issuer"])
            except FetchError as exc:
                self._failed(str(exc), event="oidc.discovery.fetch_failed")
            except Exception as exc:  # recorded and backed off like any failure
                self._failed(
                    f"unexpected {type(exc).__name__} in discovery", event="oidc.discovery.fetch_failed"
                )
            return None

    def prefetch(self) -> None:
        """Fetch now (blocking) when there are no usable keys; errors are recorded, not raised."""
        with contextlib.suppress(TokenRejected):
            self._usable_keys(may_fetch=True)

    def health(self) -> dict[str, Any]:
        """Whether keys are loaded, how old, and the last fetch error; no I/O."""
        now = self._clock()
        keys = self._keys
        age = now - self._fetched_at if keys is not None else None
        return {
            "keys_loaded": keys is not None,
            "usable": self._fresh_enough(now),
            "kids": [key.kid for key in keys.keys] if keys is not None else [],
            "age_seconds": round(age, 1) if age is not None else None,
            "refresh_due": keys is not None and now >= self._refresh_at,
            "skipped_keys": list(self._skipped),
            # What the discovery document last named, even when it was refused for it.
            "discovered_issuer": self._issuer_seen,
            "last_error": self.last_error,
            "last_error_age_seconds": round(now - self.last_error_at, 1)
            if self.last_error_at is not None
            else None,
            "next_attempt_in_seconds": round(max(0.0, self._next_attempt_at - now), 1),
        }

    def wait_for_refresh(self, timeout: float | None = None) -> None:
        """Wait for a background refresh in progress (for tests and orderly shutdown)."""
        thread = self._refresh_thread
        if thread is not None:
            thread.join(timeout)

    # -- keys in use ---------------------------------------------------------------------------

    def _usable_keys(self, may_fetch: bool) -> KeySet:
        keys = self._keys
        if keys is not None:
            now = self._clock()
            if now < self._refresh_at:
                return keys
            if self._fresh_enough(now):
                self._refresh_in_background()
                return keys
        if not may_fetch:
            raise FetchNeeded
        with self._lock:
            if not self._fresh_enough(self._clock()):
                self._fetch_keys()
            if not self._fresh_enough(self._clock()):
                raise TokenRejected(
                    KEYS_UNAVAILABLE,
                    f"signing keys of provider {self.provider.id!r} are unavailable: "
                    f"{self.last_error or 'not fetched yet'}",
                    provider=self.provider.id,
                )
            assert self._keys is not None
            return self._keys

    def _fresh_enough(self, now: float) -> bool:
        """Keys are in hand and not older than KEYS_MAX_STALENESS_SECONDS: the one staleness rule."""
        return self._keys is not None and now - self._fetched_at <= self._config.keys_max_staleness_seconds

    def _refresh_in_background(self) -> None:
        """Start one refresh thread unless one runs or the back-off says wait."""
        if self._refresh_thread is not None or self._clock() < self._next_attempt_at:
            return
        with self._start_lock:
            if self._refresh_thread is not None:
                return
            thread = threading.Thread(target=self._background_refresh, name="oidc-keys-refresh", daemon=True)
            self._refresh_thread = thread
        thread.start()

    def _background_refresh(self) -> None:
        try:
            with self._lock:
                if self._clock() >= self._refresh_at:
                    self._fetch_keys()
        finally:
            self._refresh_thread = None

    # -- unknown kids --------------------------------------------------------------------------

    def _known_absent(self, kid: str) -> bool:
        until = self._absent.get(kid)
        return until is not None and self._clock() < until

    def _refresh_for_kid(self, kid: str, may_fetch: bool) -> KeySet:
        if not self._may_refetch():
            self._remember_absent(kid)
            return self._keys or KeySet()
        if not may_fetch:
            raise FetchNeeded
        with self._lock:
            # Another thread may have fetched while this one waited for the lock.
            if self._keys is not None and kid in self._keys:
                return self._keys
            if self._may_refetch():
                # The request waits for this fetch: one fetch, not a discovery refresh first.
                self._fetch_keys(refresh_discovery=False)
            keys = self._keys or KeySet()
            if kid not in keys:
                self._remember_absent(kid)
            return keys

    def _may_refetch(self) -> bool:
        now = self._clock()
        return (
            now - self._last_key_fetch >= self._config.jwks_min_refresh_seconds
            and now >= self._next_attempt_at
        )

    def _remember_absent(self, kid: str) -> None:
        """Answer this kid without a lock until a refetch would be allowed anyway, not longer:
        a key rotated in meanwhile must be found by the first refetch allowed."""
        if len(self._absent) >= MAX_ABSENT_KIDS:
            self._absent = {}
        until = max(self._last_key_fetch + self._config.jwks_min_refresh_seconds, self._next_attempt_at)
        if until > self._clock():
            self._absent[kid] = until

    # -- fetching (lock held) ------------------------------------------------------------------

    def _fetch_keys(self, *, refresh_discovery: bool = True) -> None:
        """Fetch the key set; on failure keep the keys that were working and back off.

        ``refresh_discovery=False`` uses the discovery document in hand even when its lifetime
        has ended (a stale ``jwks_uri`` is far likelier right than an unknown kid is real).
        """
        now = self._clock()
        if now < self._next_attempt_at:
            return
        self._last_key_fetch = now
        deadline = self._fetcher.deadline()  # one deadline for discovery and keys together
        url = self.provider.jwks_uri or "the discovered jwks_uri"
        try:
            url = self.provider.jwks_uri or self._jwks_uri(refresh_discovery, deadline)
            fetched = self._fetcher.get_json(url, deadline)
            keys, skipped = KeySet.from_jwks(fetched.document)
        except FetchError as exc:
            self._failed(str(exc), event="oidc.keys.fetch_failed")
            return
        except ValueError as exc:
            self._failed(f"key set at {url} is unusable: {exc}", event="oidc.keys.fetch_failed")
            return
        except Exception as exc:  # a bug must still back off, never fetch per request
            self._failed(
                f"unexpected {type(exc).__name__} fetching keys from {url}", event="oidc.keys.fetch_failed"
            )
            return
        for reason in skipped:
            log.warning("oidc.keys.key_skipped", provider=self.provider.id, url=url, reason=reason)
        if not keys:
            self._failed(f"no usable signing key at {url}", event="oidc.keys.fetch_failed")
            return
        now = self._clock()
        lifetime = self._lifetime(fetched)
        self._keys = keys
        self._skipped = skipped
        self._fetched_at = now
        self._refresh_at = now + lifetime - min(REFRESH_AHEAD_SECONDS, lifetime / 10)
        self._absent = {}
        self._succeeded()
        self._stats.add("key_fetches", "ok")
        log.info(
            "oidc.keys.fetched",
            provider=self.provider.id,
            url=url,
            kids=[key.kid for key in keys.keys],
            skipped=len(skipped),
            lifetime_seconds=lifetime,
        )

    def _jwks_uri(self, refresh_discovery: bool, deadline: float) -> str:
        document = self._discovery
        if document is None or refresh_discovery:
            document = self._discover(deadline)
        uri = document.get("jwks_uri")
        problem = url_problem(uri)
        if problem is not None:
            raise FetchError(f"jwks_uri of provider {self.provider.id!r}: {problem}")
        return str(uri)

    def _discover(self, deadline: float | None = None) -> dict[str, Any]:
        """The discovery document, fetched when missing or stale; a stale one is kept on failure."""
        now = self._clock()
        if self._discovery is not None and now < self._discovery_expires_at:
            return self._discovery
        url = self.provider.discovery_url
        try:
            fetched = self._fetcher.get_json(url, deadline)
        except FetchError as exc:
            if self._discovery is None:
                raise
            # The document that was working stays in use; the key fetch that follows decides
            # whether this attempt failed (and backs off once, not twice).
            log.warning(
                "oidc.discovery.fetch_failed",
                provider=self.provider.id,
                error=str(exc),
                keeping_old_document=True,
            )
            return self._discovery
        document = fetched.document
        issuer = document.get("issuer") if isinstance(document, dict) else None
        if not isinstance(issuer, str):
            raise FetchError(f"discovery document at {url} has no issuer")
        # OpenID Connect Discovery 1.0 section 4.3: the issuer returned MUST be identical to the
        # one expected; otherwise the document (and its keys) must not be used.
        expected = {normalize_issuer(i) for i in self.provider.issuers}
        self._issuer_seen = issuer
        if expected and normalize_issuer(issuer) not in expected:
            raise FetchError(
                f"discovery at {url} names issuer {issuer!r}, which is not configured for "
                f"provider {self.provider.id!r} ({', '.join(self.provider.issuers)})"
            )
        self._discovery = dict(document)
        self._discovery_expires_at = self._clock() + self._lifetime(fetched)
        return self._discovery

    def _lifetime(self, fetched: Fetched) -> float:
        if fetched.max_age is None:
            return float(self._config.jwks_cache_seconds)
        return float(min(max(fetched.max_age, MIN_LIFETIME_SECONDS), MAX_LIFETIME_SECONDS))

    def _failed(self, error: str, *, event: str) -> None:
        now = self._clock()
        self.last_error = error
        self.last_error_at = now
        # Exponential back-off with jitter, so that many processes do not retry in step.
        self._retry_delay = min(
            max(FIRST_RETRY_SECONDS, self._retry_delay * 2), float(self._config.fetch_backoff_max_seconds)
        )
        self._next_attempt_at = now + self._retry_delay * random.uniform(0.8, 1.0)  # noqa: S311
        self._stats.add("key_fetches", "failed")
        log.warning(
            event,
            provider=self.provider.id,
            error=error,
            keeping_old_keys=self._keys is not None,
            retry_in_seconds=round(self._next_attempt_at - now, 1),
        )

    def _succeeded(self) -> None:
        self._retry_delay = 0.0
        self._next_attempt_at = float("-inf")
        self.last_error = None
        self.last_error_at = None
