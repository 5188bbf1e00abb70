"""Fixtures of the end-to-end tests: a real OpenID provider (oidc-provider on Node.js, shaped like
Microsoft Entra ID) and the example Quay-shaped app behind the WSGI middleware, both on loopback.

Without `node` or the installed node_modules the tests are skipped, except with
OIDC_E2E_REQUIRED=1 (CI), where that is an error.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any, NoReturn

import pytest
import requests
from conftest import load_example
from werkzeug.serving import BaseWSGIServer, make_server

from oidc_middleware import TokenValidator

from .harness import (
    REQUIRED_ENV,
    EntraShapedProvider,
    ProviderStartError,
    QuayFactory,
    e2e_required,
    missing_toolchain,
    start_provider,
)


def _unavailable(reason: str) -> NoReturn:
    if e2e_required():
        pytest.fail(f"{reason} ({REQUIRED_ENV} is set: the end-to-end tests must run)", pytrace=False)
    pytest.skip(f"end-to-end tests skipped: {reason}")


@pytest.fixture(scope="session")
def http() -> Iterator[requests.Session]:
    """One client session, deaf to proxy settings of the environment (everything is loopback)."""
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()


def _start(tmp_path_factory: pytest.TempPathFactory, http: requests.Session) -> EntraShapedProvider:
    reason = missing_toolchain()
    if reason is not None:
        _unavailable(reason)
    try:
        return start_provider(tmp_path_factory.mktemp("oidc-provider"), http)
    except ProviderStartError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def entra(tmp_path_factory: pytest.TempPathFactory, http: requests.Session) -> Iterator[EntraShapedProvider]:
    """The provider shared by the session's tests; its keys are never rotated."""
    provider = _start(tmp_path_factory, http)
    yield provider
    provider.stop()


@pytest.fixture
def own_entra(
    tmp_path_factory: pytest.TempPathFactory, http: requests.Session
) -> Iterator[EntraShapedProvider]:
    """A provider of the test's own, for tests that rotate its keys."""
    provider = _start(tmp_path_factory, http)
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def quay_example() -> ModuleType:
    return load_example("quay_wsgi")


@pytest.fixture
def quay(quay_example: ModuleType) -> Iterator[QuayFactory]:
    """Serve the Quay-shaped example app behind OIDCMiddleware with a Quay config; returns its URL.

    Each call builds a fresh TokenValidator, so no key cache is shared between tests.
    """
    servers: list[tuple[BaseWSGIServer, threading.Thread]] = []

    def serve(config: dict[str, Any]) -> str:
        app = quay_example.wrap(quay_example.create_app(), TokenValidator(config))
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield serve
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)
