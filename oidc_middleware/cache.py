"""The verified-token cache: a client sends the same token for many requests until it expires.

Keyed by the SHA-256 of the token (never the token itself), bounded in entries (least recently
used go first), each entry living no longer than the token's ``exp`` plus the leeway nor
``TOKEN_CACHE_SECONDS``. Only accepted tokens are cached, so the cache can never turn a rejection
into an acceptance; the validator re-checks time and the signing key's presence on every hit.

A token is cached the second time it is verified, not the first: tokens used once (a docker
login, a burst of distinct clients) would otherwise churn the cache, evicting the tokens that are
reused and filling memory for nothing. Only the 32-byte digests of first sightings are remembered.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import forks
from .principal import Principal

if TYPE_CHECKING:
    from .keys import ProviderKeys


@dataclass(frozen=True, eq=False, slots=True)
class Entry:
    """A token accepted earlier: its principal, the key that verified it, and until when."""

    principal: Principal
    keys: ProviderKeys
    key_fingerprint: str
    valid_until: float  # exp + leeway, or the cache lifetime, whichever comes first


class TokenCache:
    """A thread-safe LRU of accepted tokens (its lock is never held across I/O)."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()
        # Digests verified once, oldest first. An OrderedDict, because popping the oldest key of a
        # plain dict scans the slots its deletions left behind.
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        forks.register(self)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    @staticmethod
    def key(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def get(self, key: bytes) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def admit(self, key: bytes) -> bool:
        """True when this token was verified before (cache it now); else remember it was."""
        with self._lock:
            if key in self._seen:
                del self._seen[key]
                return True
            self._seen[key] = None
            if len(self._seen) > self._max:
                self._seen.popitem(last=False)
            return False

    def put(self, key: bytes, entry: Entry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def drop(self, key: bytes) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
