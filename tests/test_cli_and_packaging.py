"""The demo command, the examples and the packaging promises (typed, cryptography backend only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
from conftest import CI_CLIENT, quay_config

from oidc_middleware import load_config
from oidc_middleware.cli import main
from oidc_middleware.testing import LocalIdP

ROOT = Path(__file__).resolve().parent.parent


def test_demo_serves_real_requests_and_prints_each_decision(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        assert main(["demo"]) == 0
    finally:
        structlog.reset_defaults()  # the demo configures JSON logging, as an application would
    out = capsys.readouterr().out
    assert "every request got the expected status" in out
    table, events = out.split("audit events (oidc_middleware.audit, JSON):")
    for row in (
        "OBO token from Developer Hub (allowed)     GET /api/v1/user/                    200     accepted",
        "OBO token from an app not allowed          GET /api/v1/user/                    401     rejected     client_not_allowed",
        "Quay's own registry token (iss quay)       GET /v2/                             200     passthrough  issuer_not_configured",
        "docker login, $oauthtoken + v2.0 token     GET /v2/auth                         200     accepted",
    ):
        assert row in table
    lines = [json.loads(line) for line in events.strip().splitlines()[:-1] if line.startswith("{")]
    assert {line["event"] for line in lines} == {
        "oidc.keys.fetched",
        "oidc.token.accepted",
        "oidc.token.rejected",
        "oidc.token.passthrough",
    }
    assert "not-shown-anywhere" not in out


def test_the_example_config_loads() -> None:
    config = load_config(ROOT / "examples" / "config.yaml")
    [azure] = config.providers
    assert azure.audiences == ("5f0c9a1e-0000-4000-8000-00000000c1a1", "api://quay-api")
    assert len(azure.issuers) == 2


def test_the_example_script_accepts_and_rejects(idp: LocalIdP, tmp_path: Path) -> None:
    import yaml

    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(quay_config(idp)))
    script = str(ROOT / "examples" / "validate_token.py")
    good = subprocess.run(
        [sys.executable, script, str(config_path), idp.token(client=CI_CLIENT)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (good.returncode, good.stdout.split(":")[0]) == (0, "accepted")
    bad = subprocess.run(
        [sys.executable, script, str(config_path), idp.token(audience="https://graph.microsoft.com")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 1
    assert bad.stdout.startswith("rejected: invalid_audience")


def test_the_package_refuses_to_start_without_the_cryptography_backend() -> None:
    # Block cryptography as if it were not installed: python-jose would fall back to pure Python.
    code = "import sys; sys.modules['cryptography'] = None; import oidc_middleware"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "refusing the pure-Python backends" in result.stderr


def test_the_package_is_typed() -> None:
    assert (ROOT / "oidc_middleware" / "py.typed").exists()


def test_importing_the_package_and_its_quay_integration_imports_none_of_quays_code() -> None:
    """Only oidc_middleware.quay knows Quay, and it reads Quay's modules only when install() runs."""
    code = (
        "import sys, oidc_middleware, oidc_middleware.quay; "
        "quay = {'app', 'auth', 'oauth', 'data', 'endpoints', 'features', 'jwt'} & "
        "{name.split('.')[0] for name in sys.modules}; print(sorted(quay))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_install_outside_quay_says_what_it_found_and_what_is_supported() -> None:
    from oidc_middleware.quay import UnsupportedQuay, detect

    with pytest.raises(UnsupportedQuay) as raised:
        detect({})
    assert "this is not Quay's code" in str(raised.value)
    assert "Quay 3.15.x, 3.17.x and 3.18.x" in str(raised.value)


def test_the_quay_demo_without_quay_sources_says_how_to_get_them_and_fails(tmp_path: Path) -> None:
    environment = {**os.environ, "OIDC_QUAY_SOURCES": str(tmp_path)}  # an empty directory
    done = subprocess.run(
        [sys.executable, "-m", "oidc_middleware.cli", "demo", "--quay"],
        capture_output=True, text=True, check=False, env=environment, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    assert "OIDC_QUAY_SOURCES" in lines[0] and "quay-VERSION.tar.gz" in lines[0]
