"""Fork safety for Quay's process model (gunicorn ``preload_app``: built in the master, forked).

Objects that hold locks, threads or pooled connections register here; in each child process
right after ``fork`` they get fresh locks, forget any refresh thread of the parent (threads do
not survive a fork) and drop pooled connections (a socket must not be shared by two processes).
Cached keys are kept: they are plain data and still valid.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol


class ForkAware(Protocol):
    def _after_fork_in_child(self) -> None: ...


_registered: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def register(obj: ForkAware) -> None:
    """Call ``obj._after_fork_in_child()`` in every child process forked from now on."""
    _registered.add(obj)


def _reinitialize() -> None:
    for obj in list(_registered):
        obj._after_fork_in_child()


os.register_at_fork(after_in_child=_reinitialize)
