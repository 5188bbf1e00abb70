"""The administrator's commands, end to end as subprocesses, against a loopback key server."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CI_CLIENT, OUTSIDER, QUAY_API, quay_config

from oidc_middleware.testing import LocalIdP

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oidc_middleware.cli", *args], input=stdin, capture_output=True, text=True,
        check=False, timeout=60,
    )  # fmt: skip


def write(tmp_path: Path, config: dict[str, Any]) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_check_config_lists_every_problem_and_fails(tmp_path: Path) -> None:
    config = {
        "AZURE_LOGIN_CONFIG": {
            "OIDC_SERVER": "http://login.example.com/common/",
            "OIDC_ISSUERS": "https://sts.windows.net/x/",
            "CLIENT_SECRET": "do-not-print-me",
        },
        "OIDC_MIDDLEWARE_CONFIG": {"LEEWAY": 30},
    }
    result = run("check-config", write(tmp_path, config))
    assert result.returncode == 1
    assert "configuration has 4 problem(s):" in result.stdout
    for expected in (
        "AZURE_LOGIN_CONFIG.OIDC_SERVER: must use https",
        "AZURE_LOGIN_CONFIG.CLIENT_ID: required",
        "AZURE_LOGIN_CONFIG.OIDC_ISSUERS: must be a list of strings, got str",
        "OIDC_MIDDLEWARE_CONFIG.LEEWAY: unknown key; did you mean LEEWAY_SECONDS?",
    ):
        assert expected in result.stdout
    assert "do-not-print-me" not in result.stdout + result.stderr


def test_check_config_summarizes_a_good_config_offline_and_online(tmp_path: Path, idp: LocalIdP) -> None:
    path = write(tmp_path, quay_config(idp))
    offline = run("check-config", path)
    assert offline.returncode == 0
    assert "configuration is valid: 1 provider(s)" in offline.stdout
    assert f"audiences         5f0c9a1e-0000-4000-8000-00000000c1a1, {QUAY_API}" in offline.stdout
    assert "add --online" in offline.stdout
    assert sum(idp.hits.values()) == 0
    online = run("check-config", path, "--online")
    assert online.returncode == 0, online.stdout
    assert f"issuer        {idp.v2_issuer} (configured)" in online.stdout
    assert "signing keys  1 usable: entra-key-1" in online.stdout
    assert "reachable     yes" in online.stdout


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        ("redirect", "redirect to attacker.example not followed"),
        ("html", "is not JSON"),
        (None, "names issuer"),  # OIDC_SERVER of the v1 issuer, only v2 configured
    ],
)
def test_check_config_online_reports_provider_problems(tmp_path: Path, idp: LocalIdP, fault: str | None,
                                                       problem: str) -> None:  # fmt: skip
    config = (
        quay_config(idp, OIDC_SERVER=idp.v1_server, OIDC_ISSUERS=[idp.v2_issuer])
        if fault is None
        else quay_config(idp)
    )
    idp.fault = fault
    result = run("check-config", write(tmp_path, config), "--online")
    assert result.returncode == 1
    assert "PROBLEM" in result.stdout
    assert problem in result.stdout
    if fault is None:
        assert f"issuer        {idp.v1_issuer} (NOT configured)" in result.stdout


def explain(tmp_path: Path, idp: LocalIdP, token: str, *extra: str, via_stdin: bool = True,
            config: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    path = write(tmp_path, config or quay_config(idp))
    if via_stdin:
        return run("explain", "--config", path, *extra, "-", stdin=token + "\n")
    return run("explain", "--config", path, *extra, token)


def test_explain_walks_an_accepted_token_through_every_step(tmp_path: Path, idp: LocalIdP) -> None:
    token = idp.token(client=CI_CLIENT)
    result = explain(tmp_path, idp, token, "--online")
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    steps = [line.split()[1] for line in lines if line.startswith("  ok ")]
    assert steps == ["parse", "issuer", "signature", "claims", "time", "audience", "client", "identity"]
    assert "decision   accepted" in result.stdout
    assert "key 'entra-key-1' (RSA) found; RS256 signature verifies" in result.stdout
    assert token.split(".")[2] not in result.stdout  # never the signature
    assert '"kid": "entra-key-1"' in result.stdout


def test_explain_offline_checks_everything_but_the_signature(tmp_path: Path, idp: LocalIdP) -> None:
    result = explain(tmp_path, idp, f"Bearer {idp.token(client=CI_CLIENT)}", via_stdin=False)
    assert result.returncode == 0
    assert "skip  signature not checked offline" in result.stdout
    assert "decision   accepted (if the signature verifies" in result.stdout
    assert sum(idp.hits.values()) == 0


@pytest.mark.parametrize(
    ("make", "reason", "step"),
    [
        (lambda idp: idp.token(client=CI_CLIENT, now=time.time() - 7200), "token_expired", "time"),
        (
            lambda idp: idp.token(client=CI_CLIENT, audience="https://graph.microsoft.com"),
            "invalid_audience",
            "audience",
        ),
        (lambda idp: idp.token(client=OUTSIDER, version="1.0"), "client_not_allowed", "client"),
        (
            lambda idp: idp.token({**idp.claims(client=CI_CLIENT), "iss": "https://sts.windows.net/other/"}),
            "issuer_not_configured",
            "issuer",
        ),
        (lambda idp: "not-a-token", "malformed_token", "parse"),
        (lambda idp: idp.token({**idp.claims(client=CI_CLIENT), "oid": 5}), "malformed_token", "identity"),
    ],
    ids=["expired", "wrong-audience", "disallowed-client", "foreign-issuer", "garbage", "numeric-oid"],
)
@pytest.mark.parametrize("online", [False, True], ids=["offline", "online"])
def test_explain_names_the_failing_step_the_reason_and_the_docs(tmp_path: Path, idp: LocalIdP, make: Any,
                                                                reason: str, step: str, online: bool) -> None:  # fmt: skip
    result = explain(tmp_path, idp, make(idp), *(["--online"] if online else []))
    assert result.returncode == 1
    [failed] = [line for line in result.stdout.splitlines() if line.startswith("  FAIL")]
    assert failed.split()[1] == step
    assert f"{reason}:" in failed
    assert (
        f"read       docs/troubleshooting.md#{reason} (in the oidc_middleware documentation)" in result.stdout
    )


def test_explain_with_a_bad_config_lists_its_problems(tmp_path: Path, idp: LocalIdP) -> None:
    result = explain(tmp_path, idp, idp.token(), config={"AZURE_LOGIN_CONFIG": {"OIDC_SERVER": "nope"}})
    assert result.returncode == 2
    assert "AZURE_LOGIN_CONFIG.OIDC_SERVER" in result.stdout


def test_explain_offline_cannot_decide_for_a_provider_that_learns_its_issuer_online(
    tmp_path: Path, idp: LocalIdP
) -> None:
    result = explain(
        tmp_path, idp, idp.token(client=CI_CLIENT, now=0), config=quay_config(idp, OIDC_ISSUERS=None)
    )
    assert result.returncode == 1
    assert "skip  issuer" in result.stdout
    assert "decision   undetermined offline: run with --online" in result.stdout
    online = explain(tmp_path, idp, idp.token(client=CI_CLIENT, now=0), "--online",
                     config=quay_config(idp, OIDC_ISSUERS=None))  # fmt: skip
    assert "FAIL  time      token_expired" in online.stdout


@pytest.mark.parametrize("testing", [None, True, "false"], ids=["missing", "true", "a-string"])
def test_check_config_reports_quay_testing_not_false_as_a_problem(
    tmp_path: Path, idp: LocalIdP, testing: Any
) -> None:
    """Quay's default TESTING true turns its own signature check of bearer tokens off."""
    config = quay_config(idp)
    config.pop("TESTING")
    if testing is not None:
        config["TESTING"] = testing
    result = run("check-config", write(tmp_path, config))
    assert result.returncode == 1
    assert "configuration is valid: 1 provider(s)" in result.stdout
    assert "Quay's own settings have 1 problem(s):" in result.stdout
    assert "TESTING: must be false in production" in result.stdout
    assert "skips the signature" in result.stdout
