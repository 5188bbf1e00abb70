"""Fixtures for the tests against the real Quay: one Entra-shaped provider, and per Quay version
the cached install and its servers (Quay alone, and Quay with ``install``)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from oidc_middleware.quay import lab as harness
from oidc_middleware.testing import LocalIdP, SigningKey, mint

# Quay's app registration in Entra: one application for the web UI login and the API.
QUAY_CLIENT_ID = "5f0c6e0a-8c1b-4f3e-9a57-2d4e6b8c0a1f"
QUAY_API = "api://quay-api"
CLI_CLIENT = "c0ffee00-1111-4222-8333-444455556666"  # a CLI on the allowlist
DEVHUB_CLIENT = "de7b0b00-2222-4333-8444-555566667777"  # Red Hat Developer Hub, on the allowlist
STRANGER_CLIENT = "0ddba11e-3333-4444-8555-666677778888"  # not on the allowlist
GRAPH = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph: another API's audience
USER_OID = "a1b2c3d4-0000-4000-8000-00000000ada0"
USER_EMAIL = "ada@example.com"
QUAY_OAUTH_TOKEN = "d" * 40 + "e" * 40  # created for devtable by build_database.py


@pytest.fixture(scope="session")
def quay_sources() -> Path:
    source = harness.sources()
    if source is None:
        if harness.required():
            pytest.fail(f"OIDC_QUAY_REQUIRED is set and there are {harness.HOW_TO_GET}")
        pytest.skip(harness.HOW_TO_GET)
    return source


@pytest.fixture(scope="session")
def project_wheel(quay_sources: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return harness.build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def entra() -> Iterator[LocalIdP]:
    with LocalIdP() as idp:
        yield idp


@pytest.fixture(scope="session")
def attacker_key() -> SigningKey:
    return SigningKey.rsa("entra-key-1")  # the provider's kid, another key


def provider_block(idp: LocalIdP) -> dict[str, Any]:
    """The provider block an administrator writes for an Entra tenant in migration."""
    return {
        "SERVICE_NAME": "Entra ID",
        "OIDC_SERVER": idp.v1_server,
        "CLIENT_ID": QUAY_CLIENT_ID,
        "CLIENT_SECRET": "a-client-secret-for-tests",
        "OIDC_ISSUER": idp.v1_issuer,
        "OIDC_ISSUERS": [idp.v1_issuer, idp.v2_issuer],
        "OIDC_AUDIENCES": [QUAY_API],
        "OIDC_ALLOWED_CLIENTS": [CLI_CLIENT, DEVHUB_CLIENT],
        "VERIFIED_EMAIL_CLAIM_NAME": "email",
        "DEBUGGING": True,  # Quay refuses an http:// OIDC_SERVER without it
    }


@pytest.fixture(scope="module", params=harness.VERSIONS)
def quay(request: pytest.FixtureRequest, quay_sources: Path, project_wheel: Path) -> harness.QuayInstall:
    return harness.ensure_installed(request.param, quay_sources, project_wheel)


def _server(
    quay: harness.QuayInstall,
    idp: LocalIdP,
    tmp_path_factory: pytest.TempPathFactory,
    mode: str,
    testing: bool,
    **extra_config: Any,
) -> Iterator[harness.QuayServer]:
    workdir = tmp_path_factory.mktemp(f"quay-{quay.version}-{mode}-{'testing' if testing else 'prod'}")
    server = harness.start_server(
        quay, workdir, provider_block(idp), mode=mode, testing=testing, extra_config=extra_config
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def installed(
    quay: harness.QuayInstall, entra: LocalIdP, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[harness.QuayServer]:
    """Quay with ``install(application)``, TESTING false (as in production)."""
    yield from _server(quay, entra, tmp_path_factory, "install", testing=False)


@pytest.fixture(scope="module")
def installed_testing(
    quay: harness.QuayInstall, entra: LocalIdP, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[harness.QuayServer]:
    """Quay with ``install(application)`` and TESTING true, Quay's default."""
    yield from _server(quay, entra, tmp_path_factory, "install", testing=True)


@pytest.fixture(scope="module")
def installed_without_signup(
    quay: harness.QuayInstall, entra: LocalIdP, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[harness.QuayServer]:
    """Quay with ``install`` and FEATURE_USER_CREATION false."""
    yield from _server(quay, entra, tmp_path_factory, "install", testing=False, FEATURE_USER_CREATION=False)


@pytest.fixture(scope="module")
def alone(
    quay: harness.QuayInstall, entra: LocalIdP, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[harness.QuayServer]:
    """Quay as shipped, TESTING true: what an administrator who kept Quay's default gets."""
    yield from _server(quay, entra, tmp_path_factory, "alone", testing=True)


@pytest.fixture(scope="module")
def alone_strict(
    quay: harness.QuayInstall, entra: LocalIdP, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[harness.QuayServer]:
    """Quay as shipped with TESTING false, as its documentation asks for production."""
    yield from _server(quay, entra, tmp_path_factory, "alone", testing=False)


# -- tokens --------------------------------------------------------------------------------------


def user_claims(
    idp: LocalIdP,
    version: str,
    client: str,
    *,
    audience: str = QUAY_API,
    user: str = USER_OID,
    now: float | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """An Entra access token's claims for ``user``. ``sub`` is pairwise per recipient (Quay's
    application), so every token addressed to Quay carries the same one, whatever the client."""
    claims = idp.claims(
        version, audience=audience, client=client, user=user, recipient=QUAY_CLIENT_ID, now=now
    )
    # The optional claim, named by VERIFIED_EMAIL_CLAIM_NAME: Quay creates no user without one.
    claims["email"] = USER_EMAIL if user == USER_OID else f"someone-{user[-8:]}@example.com"
    claims.update(changes)
    return claims


def user_token(idp: LocalIdP, version: str, client: str, **options: Any) -> str:
    return idp.token(user_claims(idp, version, client, **options))


def id_token(idp: LocalIdP, *, user: str = USER_OID, **changes: Any) -> str:
    """A v2.0 ID token issued to Quay's web UI login (aud: Quay's client id, no azp)."""
    claims = user_claims(idp, "2.0", CLI_CLIENT, audience=QUAY_CLIENT_ID, user=user)
    for name in ("azp", "azpacr", "scp"):
        claims.pop(name, None)
    claims["nonce"] = uuid.uuid4().hex
    claims.update(changes)
    return idp.token(claims)


def forged(idp: LocalIdP, key: SigningKey, **options: Any) -> str:
    return mint(user_claims(idp, "2.0", CLI_CLIENT, **options), key)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def get(server: harness.QuayServer, path: str, **options: Any) -> requests.Response:
    return requests.get(server.url + path, timeout=60, **options)
