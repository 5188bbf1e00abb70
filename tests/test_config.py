"""load_config: Quay's config.yaml in, a validated MiddlewareConfig out, every problem reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from oidc_middleware import ConfigError, MiddlewareConfig, load_config

V1 = "https://sts.windows.net/3c9e5a2f-7b41-4d8a-9f06-1e2d3c4b5a69/"
V2 = "https://login.microsoftonline.com/3c9e5a2f-7b41-4d8a-9f06-1e2d3c4b5a69/v2.0"
SERVER = "https://login.microsoftonline.com/3c9e5a2f-7b41-4d8a-9f06-1e2d3c4b5a69/v2.0/"


def azure(**block: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"OIDC_SERVER": SERVER, "CLIENT_ID": "quay-client", "CLIENT_SECRET": "hunter2"}
    base.update(block)
    return {"AZURE_LOGIN_CONFIG": {k: v for k, v in base.items() if v is not None}}


def problems_of(source: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(source)
    return caught.value.problems


def test_provider_id_is_the_key_prefix_lowercased_and_non_oidc_blocks_are_ignored() -> None:
    config = load_config(
        {
            **azure(OIDC_ISSUERS=[V1, V2]),
            "GITHUB_LOGIN_CONFIG": {"CLIENT_ID": "x", "CLIENT_SECRET": "y"},
            "GOOGLE_LOGIN_CONFIG": {"CLIENT_ID": "x", "CLIENT_SECRET": "y"},
            "KEYCLOAK_LOGIN_CONFIG": {
                "OIDC_SERVER": "https://sso.example.com/realms/quay/",
                "CLIENT_ID": "q",
            },
        }
    )
    assert [p.id for p in config.providers] == ["azure", "keycloak"]
    assert config.providers[0].config_key == "AZURE_LOGIN_CONFIG"


def test_issuers_come_from_oidc_issuers_then_oidc_issuer_then_discovery() -> None:
    both = load_config(azure(OIDC_ISSUERS=[V1, V2], OIDC_ISSUER=V2)).providers[0]
    single = load_config(azure(OIDC_ISSUER=V2)).providers[0]
    neither = load_config(azure()).providers[0]
    assert both.issuers == (V1, V2)
    assert single.issuers == (V2,)
    assert neither.issuers == ()  # taken from the discovery document at first use


def test_audiences_are_client_id_plus_oidc_audiences_as_quay_318_does() -> None:
    provider = load_config(azure(OIDC_AUDIENCES=["api://quay-api", "quay-client"])).providers[0]
    assert provider.audiences == ("quay-client", "api://quay-api")


def test_allowed_clients_absent_means_no_restriction_and_empty_means_quay_only() -> None:
    assert load_config(azure()).providers[0].allowed_clients is None
    assert load_config(azure(OIDC_ALLOWED_CLIENTS=[])).providers[0].allowed_clients == frozenset()
    listed = load_config(azure(OIDC_ALLOWED_CLIENTS=["rhdh"])).providers[0]
    assert listed.allowed_clients == frozenset({"rhdh"})


def test_oidc_server_gets_its_trailing_slash_and_discovery_url() -> None:
    provider = load_config(azure(OIDC_SERVER=SERVER.rstrip("/"))).providers[0]
    assert provider.discovery_url == SERVER + ".well-known/openid-configuration"


def test_a_yaml_path_is_read_like_the_mapping(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(azure(OIDC_ISSUERS=[V1, V2])))
    assert load_config(path) == load_config(str(path)) == load_config(azure(OIDC_ISSUERS=[V1, V2]))


def test_middleware_settings_have_defaults_and_can_be_set() -> None:
    default = load_config(azure())
    assert (default.leeway_seconds, default.jwks_min_refresh_seconds) == (60, 60)
    custom = load_config(
        {**azure(), "OIDC_MIDDLEWARE_CONFIG": {"LEEWAY_SECONDS": 30, "JWKS_MIN_REFRESH_SECONDS": 300}}
    )
    assert (custom.leeway_seconds, custom.jwks_min_refresh_seconds) == (30, 300)


def test_client_secret_is_never_kept_nor_shown() -> None:
    config = load_config(azure(OIDC_ISSUERS=[V1]))
    assert "hunter2" not in repr(config)
    assert "hunter2" not in str(problems_of(azure(OIDC_ISSUERS="oops")))


def test_the_issue_example_message_names_the_key_path_and_types() -> None:
    assert problems_of(azure(OIDC_ISSUERS=V1)) == [
        "AZURE_LOGIN_CONFIG.OIDC_ISSUERS: must be a list of strings, got str"
    ]


def test_every_problem_is_reported_at_once_with_its_key_path() -> None:
    source = {
        **azure(CLIENT_ID=None, OIDC_AUDIENCES=["ok", 7, ""], OIDC_ALLOWED_CLIENTS="rhdh"),
        "OIDC_MIDDLEWARE_CONFIG": {"LEEWAY_SECOND": 5, "JWKS_MIN_REFRESH_SECONDS": True},
    }
    with pytest.raises(ConfigError) as caught:
        load_config(source)
    problems = caught.value.problems
    assert problems == [
        "AZURE_LOGIN_CONFIG.CLIENT_ID: required, a non-empty string (got null)",
        "AZURE_LOGIN_CONFIG.OIDC_AUDIENCES[1]: must be a string, got int",
        "AZURE_LOGIN_CONFIG.OIDC_AUDIENCES[2]: must not be empty",
        "AZURE_LOGIN_CONFIG.OIDC_ALLOWED_CLIENTS: must be a list of strings, got str",
        "OIDC_MIDDLEWARE_CONFIG.LEEWAY_SECOND: unknown key; did you mean LEEWAY_SECONDS?",
        "OIDC_MIDDLEWARE_CONFIG.JWKS_MIN_REFRESH_SECONDS: must be an integer, got bool",
    ]
    # The exception's message lists them all too, one per line.
    assert all(problem in str(caught.value) for problem in problems)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        pytest.param(
            {"OIDC_SERVER": "http://login.example.com/t/"},
            "AZURE_LOGIN_CONFIG.OIDC_SERVER: must use https (plain http only for loopback hosts)",
            id="plain-http-remote",
        ),
        pytest.param(
            {"OIDC_SERVER": "login.microsoftonline.com/t/"},
            "AZURE_LOGIN_CONFIG.OIDC_SERVER: must be an absolute https URL",
            id="relative-url",
        ),
        pytest.param(
            {"OIDC_ISSUERS": [V2, "ftp://x/"]},
            "AZURE_LOGIN_CONFIG.OIDC_ISSUERS[1]: must be an absolute https URL",
            id="issuer-not-https",
        ),
        pytest.param(
            {"OIDC_ISSUER": 42},
            "AZURE_LOGIN_CONFIG.OIDC_ISSUER: must be an absolute https URL, got int",
            id="issuer-not-a-string",
        ),
        pytest.param(
            {"OIDC_ISSUERS": []},
            "AZURE_LOGIN_CONFIG.OIDC_ISSUERS: must not be empty",
            id="empty-issuer-list",
        ),
        pytest.param(
            {"OIDC_ALLOWED_CLIENTS": ["*"]},
            "AZURE_LOGIN_CONFIG.OIDC_ALLOWED_CLIENTS[0]: wildcards are not accepted",
            id="wildcard-client",
        ),
        pytest.param(
            {"OIDC_SERVER": "https://user:pw@login.example.com/t/"},
            "AZURE_LOGIN_CONFIG.OIDC_SERVER: must not carry credentials",
            id="credentials-in-url",
        ),
        pytest.param(
            {"OIDC_JWKS_URI": "http://keys.example.com/keys"},
            "AZURE_LOGIN_CONFIG.OIDC_JWKS_URI: must use https",
            id="jwks-uri-not-https",
        ),
    ],
)
def test_bad_values_are_refused_with_their_key_path(block: dict[str, Any], expected: str) -> None:
    problems = problems_of(azure(**block))
    assert len(problems) == 1
    assert problems[0].startswith(expected)


@pytest.mark.parametrize(
    "url",
    [
        "https://login.microsoftonline.com/common/v2.0",
        "https://login.microsoftonline.com/organizations/v2.0",
        "https://login.microsoftonline.com/consumers/v2.0",
        "https://login.microsoftonline.com/{tenantid}/v2.0",
        "https://login.microsoftonline.com/{TenantId}/v2.0",
        "https://sts.windows.net/*/",
    ],
)
def test_multi_tenant_placeholders_are_refused(url: str) -> None:
    for block in ({"OIDC_ISSUERS": [url]}, {"OIDC_SERVER": url + "/"}):
        [problem] = problems_of(azure(**block))
        assert "multi-tenant placeholder" in problem
        assert "each tenant must be configured explicitly" in problem


def test_plain_http_is_allowed_for_loopback_hosts() -> None:
    for host in ("127.0.0.1:8080", "localhost", "[::1]:9000"):
        config = load_config(azure(OIDC_SERVER=f"http://{host}/t/", OIDC_ISSUERS=[f"http://{host}/t/v2.0"]))
        assert config.providers[0].oidc_server == f"http://{host}/t/"


def test_one_issuer_claimed_by_two_providers_is_refused_even_with_a_trailing_slash() -> None:
    source = {
        **azure(OIDC_ISSUERS=[V1]),
        "ENTRA_LOGIN_CONFIG": {"OIDC_SERVER": SERVER, "CLIENT_ID": "other", "OIDC_ISSUER": V1.rstrip("/")},
    }
    [problem] = problems_of(source)
    assert problem.startswith("ENTRA_LOGIN_CONFIG: issuer")
    assert "also claimed by AZURE_LOGIN_CONFIG" in problem


def test_two_blocks_with_the_same_provider_id_are_refused() -> None:
    source = {
        **azure(),
        "AZURE_V2_LOGIN_CONFIG": {"OIDC_SERVER": SERVER, "CLIENT_ID": "other", "OIDC_ISSUER": V1},
    }
    [problem] = problems_of(source)
    assert "provider id 'azure' is also the id of AZURE_LOGIN_CONFIG" in problem


def test_a_config_without_any_oidc_provider_is_refused() -> None:
    assert problems_of({"GITHUB_LOGIN_CONFIG": {"CLIENT_ID": "x"}}) == [
        "(top level): no *_LOGIN_CONFIG block with an OIDC_SERVER: nothing to validate"
    ]


def test_oidc_keys_without_oidc_server_are_reported_not_ignored() -> None:
    [problem] = problems_of({**azure(), "OKTA_LOGIN_CONFIG": {"CLIENT_ID": "x", "OIDC_ISSUERS": [V1]}})
    assert problem == "OKTA_LOGIN_CONFIG: has OIDC_ISSUERS but no OIDC_SERVER"


def test_settings_out_of_range_are_refused() -> None:
    [problem] = problems_of({**azure(), "OIDC_MIDDLEWARE_CONFIG": {"JWKS_MIN_REFRESH_SECONDS": 0}})
    assert problem == "OIDC_MIDDLEWARE_CONFIG.JWKS_MIN_REFRESH_SECONDS: must be between 1 and 86400, got 0"


def test_unreadable_and_invalid_yaml_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("AZURE_LOGIN_CONFIG:\n  OIDC_SERVER: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML at line"):
        load_config(bad)


def test_a_built_config_is_passed_through_unchanged() -> None:
    config = load_config(azure())
    assert isinstance(config, MiddlewareConfig)
    assert load_config(config) is config


def test_proxy_and_ca_bundle_settings_are_checked(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    config = load_config(
        {**azure(), "OIDC_MIDDLEWARE_CONFIG": {"HTTPS_PROXY": "http://proxy:3128", "CA_BUNDLE": str(bundle)}}
    )
    assert (config.https_proxy, config.ca_bundle) == ("http://proxy:3128", str(bundle))
    problems = problems_of(
        {
            **azure(),
            "OIDC_MIDDLEWARE_CONFIG": {"HTTPS_PROXY": "proxy:3128", "CA_BUNDLE": "/nonexistent/ca.pem"},
        }
    )
    assert problems == [
        "OIDC_MIDDLEWARE_CONFIG.HTTPS_PROXY: must be an http or https URL, got 'proxy:3128'",
        "OIDC_MIDDLEWARE_CONFIG.CA_BUNDLE: must be the path of an existing, readable file, got '/nonexistent/ca.pem'",
    ]


def test_middleware_settings_of_every_kind_are_type_checked() -> None:
    problems = problems_of(
        {
            **azure(),
            "OIDC_MIDDLEWARE_CONFIG": {
                "PROTECTED_PATHS": ["api/"],
                "UNKNOWN_ISSUER": "allow",
                "HIDE_ERROR_DESCRIPTIONS": "yes",
                "FETCH_DEADLINE_SECONDS": 0,
            },
        }
    )
    assert problems == [
        "OIDC_MIDDLEWARE_CONFIG.PROTECTED_PATHS: path prefixes must be strings starting with '/', got 'api/'",
        "OIDC_MIDDLEWARE_CONFIG.UNKNOWN_ISSUER: must be one of pass, reject, got 'allow'",
        "OIDC_MIDDLEWARE_CONFIG.HIDE_ERROR_DESCRIPTIONS: must be true or false, got str",
        "OIDC_MIDDLEWARE_CONFIG.FETCH_DEADLINE_SECONDS: must be between 1 and 120, got 0",
    ]


def test_quay_server_hostname_and_scheme_are_read_for_challenges() -> None:
    config = load_config(
        {**azure(), "SERVER_HOSTNAME": "quay.example.com:8443", "PREFERRED_URL_SCHEME": "https"}
    )
    assert (config.server_hostname, config.preferred_url_scheme) == ("quay.example.com:8443", "https")
    assert problems_of({**azure(), "SERVER_HOSTNAME": 'quay" evil'})[0].startswith(
        "SERVER_HOSTNAME: must be a host name"
    )


def test_unfilled_placeholders_are_refused() -> None:
    problems = problems_of(
        azure(
            OIDC_SERVER="https://login.microsoftonline.com/<tenant-id>/v2.0/",
            CLIENT_ID="<quay-client-id>",
            OIDC_ALLOWED_CLIENTS=["<developer-hub-client-id>"],
        )
    )
    assert [problem.split(": ")[0] for problem in problems] == [
        "AZURE_LOGIN_CONFIG.OIDC_SERVER",
        "AZURE_LOGIN_CONFIG.CLIENT_ID",
        "AZURE_LOGIN_CONFIG.OIDC_ALLOWED_CLIENTS[0]",
    ]
    assert all("looks like an unfilled placeholder" in problem for problem in problems)


def test_a_misspelt_security_key_is_an_error_not_an_open_door() -> None:
    problems = problems_of(azure(OIDC_ALLOWED_CLIENT=["rhdh"], OIDC_AUDIENCE=["api://quay-api"]))
    assert problems == [
        "AZURE_LOGIN_CONFIG.OIDC_ALLOWED_CLIENT: unknown key; did you mean OIDC_ALLOWED_CLIENTS?",
        "AZURE_LOGIN_CONFIG.OIDC_AUDIENCE: unknown key; did you mean OIDC_AUDIENCES?",
    ]
    # Quay's own keys of the block, OIDC_* or not, stay accepted.
    load_config(azure(OIDC_ENDPOINT_CUSTOM_PARAMS={"prompt": "login"}, OIDC_DISABLE_USER_ENDPOINT=True,
                      SERVICE_NAME="Entra", LOGIN_SCOPES=["openid"]))  # fmt: skip
