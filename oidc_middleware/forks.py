"""Fork safety for Quay's process model (gunicorn ``preload_app``: built in the master, forked).

Objects that hold locks, threads or pooled connections register here; in each child process
right after ``fork`` they get fresh locks, forget any refresh thread of the parent (threads do
not survive a fork) and drop pooled connections (a socket must not be shared by two processes).
Cached keys are kept: they are plain data and still valid.

Locks held across network I/O are created lazily, at first use (:func:`lazy_lock`): gunicorn's
gevent worker monkey-patches ``threading`` *after* the fork, and a lock created before that would
be a real OS lock, which blocks the whole worker when one greenlet waits for another's fetch.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Protocol

# Guards the creation of lazy locks; held for nanoseconds, never across I/O, so a real lock is
# safe even under gevent.
_creation = threading.Lock()


def lazy_lock(owner: Any, attribute: str) -> threading.Lock:
    """``owner.<attribute>``, creating a ``threading.Lock`` there on first use.

    ``threading.Lock`` is looked up at that moment, so under gevent it is gevent's lock.
    """
    lock: threading.Lock | None = getattr(owner, attribute, None)
    if lock is None:
        with _creation:
            lock = getattr(owner, attribute, None)
            if lock is None:
                lock = threading.Lock()
                setattr(owner, attribute, lock)
    return lock


class ForkAware(Protocol):
    def _after_fork_in_child(self) -> None: ...


_registered: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def register(obj: ForkAware) -> None:
    """Call ``obj._after_fork_in_child()`` in every child process forked from now on."""
    _registered.add(obj)


def _reinitialize() -> None:
    global _creation
    _creation = threading.Lock()
    for obj in list(_registered):
        obj._after_fork_in_child()


os.register_at_fork(after_in_child=_reinitialize)
