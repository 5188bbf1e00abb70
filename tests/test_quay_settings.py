"""check-config reports what Quay's own start-up refuses, with the Quay version that refuses it:
config-tool's required fields (every version), 3.18's OIDCLoginService lists, PKCE at login."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import quay_config
from test_admin import run, write

from oidc_middleware.quay_settings import quay_settings_problems
from oidc_middleware.testing import LocalIdP

CONFIG_TOOL = "Quay's start-up (config-tool validate, every version) refuses it"
QUAY_318 = "Quay 3.18 does not start (OIDCLoginService)"


def problems_with(idp: LocalIdP, **block: Any) -> list[str]:
    return quay_settings_problems(quay_config(idp, **block))


def test_a_complete_configuration_has_no_problem(idp: LocalIdP) -> None:
    assert problems_with(idp) == []


@pytest.mark.parametrize("field", ["OIDC_SERVER", "CLIENT_ID", "CLIENT_SECRET", "SERVICE_NAME"])
@pytest.mark.parametrize("value", [None, "", 7], ids=["missing", "empty", "not-a-string"])
def test_config_tool_requires_four_strings_in_every_oidc_block(idp: LocalIdP, field: str, value: Any) -> None:
    found = problems_with(idp, **{field: value})
    assert [p for p in found if p.startswith(f"AZURE_LOGIN_CONFIG.{field}: required")] == [
        next(p for p in found if p.startswith(f"AZURE_LOGIN_CONFIG.{field}:"))
    ]
    assert all(p.endswith(CONFIG_TOOL) for p in found)


def test_config_tool_wants_oidc_server_to_end_with_a_slash(idp: LocalIdP) -> None:
    assert problems_with(idp, OIDC_SERVER=idp.v2_server.rstrip("/")) == [
        f"AZURE_LOGIN_CONFIG.OIDC_SERVER: must end with '/', got {idp.v2_server.rstrip('/')!r}; {CONFIG_TOOL}"
    ]


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ({"OIDC_ALLOWED_CLIENTS": []}, f"AZURE_LOGIN_CONFIG.OIDC_ALLOWED_CLIENTS: must not be empty (remove the key to allow any client); {QUAY_318}"),
        ({"OIDC_AUDIENCES": []}, f"AZURE_LOGIN_CONFIG.OIDC_AUDIENCES: must not be empty (remove the key); {QUAY_318}"),
        ({"OIDC_ISSUERS": "https://x/"}, f"AZURE_LOGIN_CONFIG.OIDC_ISSUERS: must be a list, got 'https://x/'; {QUAY_318}"),
        ({"OIDC_AUDIENCES": ["a", 1]}, f"AZURE_LOGIN_CONFIG.OIDC_AUDIENCES: must hold only strings; {QUAY_318}"),
        ({"OIDC_ISSUER": ["https://x/"]}, f"AZURE_LOGIN_CONFIG.OIDC_ISSUER: must be a string, got list; {QUAY_318}"),
        ({"SERVICE_ICON": 3}, f"AZURE_LOGIN_CONFIG.SERVICE_ICON: must be a string, got int; {CONFIG_TOOL}"),
        ({"LOGIN_SCOPES": "openid"}, f"AZURE_LOGIN_CONFIG.LOGIN_SCOPES: must be a list, got 'openid'; {CONFIG_TOOL}"),
        ({"USE_PKCE": True, "PKCE_METHOD": "S512"}, "AZURE_LOGIN_CONFIG.PKCE_METHOD: must be S256 or plain, got 'S512'; Quay 3.17 and 3.18 fail every web login with it"),
    ],
    ids=["empty-allowlist", "empty-audiences", "issuers-not-a-list", "audience-not-a-string", "issuer-not-a-string",
         "icon", "scopes", "pkce"],
)  # fmt: skip
def test_what_quay_refuses_at_start_or_login_is_reported_with_who_refuses_it(
    idp: LocalIdP, block: dict[str, Any], expected: str
) -> None:
    assert problems_with(idp, **block) == [expected]


def test_every_oidc_block_is_checked_but_github_and_google(idp: LocalIdP) -> None:
    config = quay_config(idp)
    config["KEYCLOAK_LOGIN_CONFIG"] = {
        "OIDC_SERVER": "https://sso.example.com/realms/r/",
        "CLIENT_ID": "quay",
    }
    config["GOOGLE_LOGIN_CONFIG"] = {"CLIENT_ID": "g"}
    assert quay_settings_problems(config) == [
        f"KEYCLOAK_LOGIN_CONFIG.CLIENT_SECRET: required, a non-empty string, got nothing; {CONFIG_TOOL}",
        f"KEYCLOAK_LOGIN_CONFIG.SERVICE_NAME: required, a non-empty string, got nothing; {CONFIG_TOOL}",
    ]


def test_check_config_fails_on_an_empty_allowlist_that_would_stop_quay_318(
    tmp_path: Path, idp: LocalIdP
) -> None:
    result = run("check-config", write(tmp_path, quay_config(idp, OIDC_ALLOWED_CLIENTS=[])))
    assert result.returncode == 1
    assert "Quay's own settings have 1 problem(s):" in result.stdout
    assert QUAY_318 in result.stdout
