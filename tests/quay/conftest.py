"""Fixtures for the tests against the real Quay: one Entra-shaped provider, and per Quay version
the cached install and its servers (Quay alone, and Quay with ``install``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oidc_middleware.quay import lab as harness
from oidc_middleware.quay.lab.scenario import provider_block
from oidc_middleware.testing import LocalIdP, SigningKey


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
    """The tenant's provider, over https with a CA made for the session (Quay verifies TLS)."""
    with LocalIdP(tls=True) as idp:
        yield idp


@pytest.fixture(scope="session")
def attacker_key() -> SigningKey:
    return SigningKey.rsa("entra-key-1")  # the provider's kid, another key


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
        quay,
        workdir,
        provider_block(idp),
        mode=mode,
        testing=testing,
        extra_config=extra_config,
        ca_file=idp.ca_file,
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
