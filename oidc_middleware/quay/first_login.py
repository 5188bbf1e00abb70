"""A person's first requests racing each other never get a refusal: Quay's first login, for the
login services of configured providers, under :func:`~oidc_middleware.quay.install`.

Quay makes a user the first time it sees a federated identity (``oauth.login_utils.
_conduct_oauth_login``: look the identity up, else pick a free username and create the user and
its federated login). Two requests of one new person at once both find no user and both create
one; the loser gets "The e-mail address ... is already associated with an existing ... account",
"Username has already been taken" or a raw database error (measured: 3 to 14 of 20 concurrent
first requests refused, Quay 3.15.7 to 3.18.0). A CLI, Developer Hub and a browser tab starting
together are enough.

Here, as the bearer path (``auth.oauth``) and the web login callback (``endpoints.oauth.login``)
call it, for a login service that ``install`` took over:

* in one process, the first logins of one identity take turns (a lock per identity, from a fixed
  set of stripes): the second finds the user the first made; identities already logged in in
  this process skip the lock;
* across processes (two gunicorn workers, web and registry), a creation refused because its
  e-mail or username was taken meanwhile (or failing with a database error) is followed by a login
  once the identity's user exists, waiting up to ``WAIT_SECONDS`` (outside the lock) for the other
  process to commit it; a refusal of any other kind ("User creation is disabled", a token without
  an e-mail) is answered at once.

Everything else is Quay's: the lookup, username choice, user creation and its messages.
"""

from __future__ import annotations

import inspect
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any, Final

# The modules that call Quay's first login, each under the name it imported it with.
CALLERS: Final = ("auth.oauth", "endpoints.oauth.login")
NAME: Final = "_conduct_oauth_login"
STRIPES: Final = 64
WAIT_SECONDS: Final = 2.0
KNOWN: Final = 100_000


class FirstLogins:
    """Quay's ``_conduct_oauth_login`` with first logins of one identity in turn, and a lost race
    tried again; only for the login services in ``services``."""

    def __init__(
        self,
        original: Callable[..., Any],
        callers: Iterable[ModuleType],
        services: Iterable[Any],
        find_user: Callable[[str, str], Any],
    ) -> None:
        self.original = original
        self.callers = list(callers)
        self.services = {id(service) for service in services}
        self.find_user = find_user  # Quay's model.user.verify_federated_login(service_id, lid)
        self.signature = inspect.signature(original)
        self.stripes = [threading.Lock() for _ in range(STRIPES)]
        self.known: set[tuple[str, str]] = set()  # identities with a Quay user, in this process

    def connect(self) -> None:
        for module in self.callers:
            setattr(module, NAME, self.conduct)

    def disconnect(self) -> None:
        for module in self.callers:
            setattr(module, NAME, self.original)

    def conduct(self, *args: Any, **kwargs: Any) -> Any:
        bound = self.signature.bind(*args, **kwargs)
        service: Any = bound.arguments.get("login_service")
        lid = bound.arguments.get("lid")
        if id(service) not in self.services or not isinstance(lid, str):
            return self.original(*args, **kwargs)
        service_id = service.service_id()
        key = (service_id, lid)
        if key in self.known:  # logged in before in this process: no first login to race
            return self.original(*args, **kwargs)
        failure: Exception | None = None
        with self.stripes[zlib.crc32(f"{service_id}\0{lid}".encode()) % STRIPES]:
            try:
                result = self.original(*args, **kwargs)
            except Exception as exc:  # a raw database error of a creation that lost the race?
                result, failure = None, exc
        if failure is None:
            message = getattr(result, "error_message", None)
            if not message:
                self._remember(key)
                return result
            if not (_lost_a_race(message) and bound.arguments.get("lemail")):
                return result  # "User creation is disabled", no e-mail to clash on: at once
        # Another process may be making this very person's user: wait for it, outside the lock.
        if not self._appeared(service_id, lid):
            if failure is not None:
                raise failure
            return result
        result = self.original(*args, **kwargs)  # the user exists now: log in
        if not getattr(result, "error_message", None):
            self._remember(key)
        return result

    def _remember(self, key: tuple[str, str]) -> None:
        if len(self.known) >= KNOWN:
            self.known.clear()  # bounded; forgetting only costs a lock on the next request
        self.known.add(key)

    def _appeared(self, service_id: str, lid: str) -> bool:
        """Whether the identity's user exists, waiting a little for another process's commit."""
        return _wait_for(lambda: self.find_user(service_id, lid) is not None)


def _lost_a_race(message: str) -> bool:
    """Quay's refusals of a creation that another creation of the same user beat: its e-mail or
    username taken meanwhile. Others ("User creation is disabled", ...) are answered at once."""
    lowered = message.lower()
    return "already" in lowered or "taken" in lowered or "unique" in lowered or "duplicate" in lowered


def _wait_for(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            if condition():
                return True
        except Exception:  # the database is Quay's to report; the caller's answer stands
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
