"""Shared fixtures: real keys, a real loopback identity provider, Quay-shaped configuration."""

from __future__ import annotations

import contextlib
import importlib.util
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from oidc_middleware import TokenRejected, TokenValidator
from oidc_middleware.testing import LocalIdP, SigningKey

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

QUAY_CLIENT_ID = "5f0c9a1e-0000-4000-8000-00000000c1a1"  # Quay's own app registration
QUAY_API = "api://quay-api"  # its App ID URI, the audience of On-Behalf-Of tokens
RHDH_CLIENT = "2b7e4c3d-0000-4000-8000-0000000d0b0b"  # Red Hat Developer Hub, the middle tier
CI_CLIENT = "9a8b7c6d-0000-4000-8000-0000000000c1"  # a CI service principal
OUTSIDER = "0dd0dd0d-0000-4000-8000-0000000bad00"  # an app nobody allowed
USER_OID = "6e5d4c3b-0000-4000-8000-00000000a11c"


@pytest.fixture(scope="session")
def trusted_key() -> SigningKey:
    return SigningKey.rsa("entra-key-1")


@pytest.fixture(scope="session")
def attacker_key() -> SigningKey:
    """An RSA-2048 key the provider never published, using the trusted key's kid."""
    return SigningKey.rsa("entra-key-1")


@pytest.fixture(scope="session")
def ec_key() -> SigningKey:
    return SigningKey.ec("ec-key-1", curve="P-256")


@pytest.fixture
def idp(trusted_key: SigningKey) -> Iterator[LocalIdP]:
    with LocalIdP(keys=[trusted_key]) as provider:
        yield provider


def quay_config(idp: LocalIdP, **block: Any) -> dict[str, Any]:
    """A Quay config.yaml (as a mapping) for an Entra tenant in v1 -> v2 migration."""
    azure: dict[str, Any] = {
        "SERVICE_NAME": "Microsoft Entra ID",
        "OIDC_SERVER": idp.v2_server,
        "CLIENT_ID": QUAY_CLIENT_ID,
        "CLIENT_SECRET": "never-log-this-secret",
        "LOGIN_SCOPES": ["openid", "email"],
        "OIDC_ISSUERS": [idp.v1_issuer, idp.v2_issuer],
        "OIDC_AUDIENCES": [QUAY_API],
        "OIDC_ALLOWED_CLIENTS": [RHDH_CLIENT, CI_CLIENT],
    }
    azure.update(block)
    azure = {key: value for key, value in azure.items() if value is not None}
    return {
        "TESTING": False,
        "SERVER_HOSTNAME": "quay.example.com",
        "FEATURE_DIRECT_LOGIN": False,
        "GITHUB_LOGIN_CONFIG": {"CLIENT_ID": "gh", "CLIENT_SECRET": "gh-secret"},
        "AZURE_LOGIN_CONFIG": azure,
    }


@pytest.fixture
def validator(idp: LocalIdP) -> TokenValidator:
    return TokenValidator(quay_config(idp))


class Clock:
    """A clock the test moves by hand (handed to TokenValidator as ``clock``)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def token(idp: LocalIdP, clock: Clock, **options: Any) -> str:
    """A v2.0 token of the CI client, issued at the clock's now."""
    return idp.token(client=CI_CLIENT, now=clock(), **options)


def reason_of(validator: TokenValidator, raw: str) -> str:
    with pytest.raises(TokenRejected) as caught:
        validator.validate(raw)
    return caught.value.reason


def key_fetches(idp: LocalIdP) -> int:
    return idp.hits[f"/{idp.tenant}/discovery/v2.0/keys"]


def refresh_done(validator: TokenValidator) -> None:
    """Wait for background key refreshes to finish."""
    for keys in validator.providers.values():
        keys.wait_for_refresh(10)


def load_example(name: str) -> ModuleType:
    """A module of examples/ (not a package), loaded from its file."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port; yield its base URL."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(5)
