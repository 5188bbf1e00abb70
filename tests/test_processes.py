"""Quay's process model: built in a gunicorn master with preload_app, forked into sync or gevent
workers; and a fork that happens while a key fetch holds its lock."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from conftest import CI_CLIENT, OUTSIDER, USER_OID, quay_config

from oidc_middleware import TokenRejected, TokenValidator
from oidc_middleware.testing import LocalIdP

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(params=["sync", "gevent"])
def gunicorn(request: pytest.FixtureRequest, idp: LocalIdP, tmp_path: Path) -> Iterator[str]:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(quay_config(idp)))
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "--preload", "--workers", "2", "--worker-class", request.param,
        "--bind", f"127.0.0.1:{port}", "--chdir", str(EXAMPLES), "--log-level", "warning",
        "quay_wsgi:from_environment()",
    ]  # fmt: skip
    process = subprocess.Popen(command, env={**os.environ, "QUAY_CONFIG": str(config)})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, "gunicorn exited"
        try:
            requests.get(f"{base}/v2/", timeout=1)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.1)
    yield base
    process.send_signal(signal.SIGTERM)
    process.wait(15)


def test_gunicorn_preload_workers_accept_and_reject_over_http(gunicorn: str, idp: LocalIdP) -> None:
    accepted = rejected = 0
    session = requests.Session()
    for index in range(40):
        good = session.get(f"{gunicorn}/api/v1/user/", headers={"Authorization": f"Bearer {idp.token(client=CI_CLIENT, user=USER_OID)}"},
                           timeout=10)  # fmt: skip
        assert good.status_code == 200, good.text
        accepted += good.json()["client"] == CI_CLIENT
        bad = session.get(
            f"{gunicorn}/v2/", headers={"Authorization": f"Bearer {idp.token(client=OUTSIDER)}"}, timeout=10
        )
        assert bad.status_code == 401
        rejected += bad.json()["errors"][0]["detail"]["reason"] == "client_not_allowed"
        if index % 10 == 0:
            session = requests.Session()  # new connections, so that both workers get work
    assert (accepted, rejected) == (40, 40)
    # Each worker fetched its own keys: one discovery and one key set per process at most.
    assert 1 <= idp.hits[f"/{idp.tenant}/discovery/v2.0/keys"] <= 2


def test_a_fork_while_a_fetch_holds_the_lock_does_not_deadlock_the_child(idp: LocalIdP) -> None:
    validator = TokenValidator(quay_config(idp))
    validator.validate(idp.token(client=CI_CLIENT, user=USER_OID))
    keys = validator.providers["azure"]
    holding, release = threading.Event(), threading.Event()

    def fetch_in_progress() -> None:
        with keys._lock:  # as a fetch would, when the fork comes
            holding.set()
            release.wait(10)

    new_key = idp.rotate()  # published by the server, which keeps running in this process
    thread = threading.Thread(target=fetch_in_progress)
    thread.start()
    holding.wait(5)
    pid = os.fork()
    if pid == 0:  # the child: needs the fetch lock for a kid it does not know
        code = 1
        try:
            keys._last_key_fetch = float("-inf")  # let the unknown kid refetch at once
            validator.validate(idp.token(key=new_key, client=CI_CLIENT, user=USER_OID))
            code = 0
        except TokenRejected:
            code = 2
        finally:
            os._exit(code)
    release.set()
    thread.join()
    deadline = time.monotonic() + 20
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the child deadlocked on a lock held at fork time")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0
