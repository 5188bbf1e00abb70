"""Counters for operators: decisions, key fetches, verified-token cache. Thread-safe, fork-safe."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from . import forks


class Stats:
    """Named counters; ``snapshot()`` is a plain dict (see :meth:`TokenValidator.stats`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        forks.register(self)

    def add(self, group: str, name: str, amount: int = 1) -> None:
        # acquire/release rather than ``with``: this runs twice per request, and the with
        # statement's __enter__/__exit__ calls cost as much again as the lock itself.
        lock = self._lock
        lock.acquire()
        try:
            self._counts[(group, name)] += amount
        finally:
            lock.release()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self._counts)
        result: dict[str, Any] = {
            "accepted": counts.get(("decision", "accepted"), 0),
            "rejected": {},
            "passthrough": {},
            "key_fetches": {"ok": 0, "failed": 0},
            "token_cache": {"hits": 0, "misses": 0},
        }
        for (group, name), value in sorted(counts.items()):
            if group in ("rejected", "passthrough") or group in ("key_fetches", "token_cache"):
                result[group][name] = value
        return result

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
