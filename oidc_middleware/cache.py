"""The verified-token cache: a client sends the same token for many requests until it expires.

Bounded in entries (least recently used go first), each entry living no longer than the token's
``exp`` plus the leeway nor ``TOKEN_CACHE_SECONDS``. Only accepted tokens are cached, so the cache
can never turn a rejection into an acceptance; the validator re-checks time and the signing key's
presence on every hit.

The token itself is never kept. Entries are found by Python's string hash of the token (SipHash
with a per-process random key, cheaper than SHA-256 for a lookup that usually misses) and a hit
counts only when the SHA-256 of the token matches the one stored with the entry: a 64-bit slot
collision is a miss, never someone else's principal.

A token is cached the second time it is verified, not the first: tokens used once (a docker
login, a burst of distinct clients) would otherwise churn the cache, evicting the tokens that are
reused and filling memory for nothing. Only the slots of first sightings are remembered.
"""

from __future__ import annotations

import hmac
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import forks
from .jws import token_digest
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
        # slot -> (SHA-256 of the token, entry)
        self._entries: OrderedDict[int, tuple[bytes, Entry]] = OrderedDict()
        # Slots of tokens verified once, oldest first. An OrderedDict, because popping the oldest
        # key of a plain dict scans the slots its deletions left behind.
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._lock = threading.Lock()
        forks.register(self)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def get(self, token: str) -> Entry | None:
        """The entry cached for exactly this token, or None."""
        slot = hash(token)
        lock = self._lock
        lock.acquire()  # not ``with``: see Stats.add
        try:
            found = self._entries.get(slot)
            if found is not None:
                self._entries.move_to_end(slot)
        finally:
            lock.release()
        if found is None or not hmac.compare_digest(found[0], token_digest(token)):
            return None
        return found[1]

    def admit(self, token: str) -> bool:
        """True when this token was verified before (cache it now); else remember it was."""
        slot, seen = hash(token), self._seen
        lock = self._lock
        lock.acquire()
        try:
            if slot in seen:
                del seen[slot]
                return True
            seen[slot] = None
            if len(seen) > self._max:
                seen.popitem(last=False)
            return False
        finally:
            lock.release()

    def put(self, digest: bytes, entry: Entry, *, slot: int) -> None:
        """Cache an accepted token by its SHA-256 (``token_digest``) and slot (``hash(token)``)."""
        with self._lock:
            self._entries[slot] = (digest, entry)
            self._entries.move_to_end(slot)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def drop(self, token: str) -> None:
        """Forget this token's entry (one in its slot for another token stays)."""
        slot, digest = hash(token), token_digest(token)
        with self._lock:
            found = self._entries.get(slot)
            if found is not None and found[0] == digest:
                del self._entries[slot]

    def __len__(self) -> int:
        return len(self._entries)
