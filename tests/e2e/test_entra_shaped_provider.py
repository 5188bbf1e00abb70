"""End to end: tokens issued by a real, certified OpenID provider (oidc-provider, configured to
issue Entra-shaped v1.0 and v2.0 tokens) sent over HTTP to the example Quay-shaped app behind the
WSGI middleware. Nothing here mints a token: every token comes from the provider's token
endpoints (client credentials, a user's sign-in, On-Behalf-Of).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from .harness import (
    CI_CLIENT,
    DIRECTORY,
    OTHER_API,
    OUTSIDER,
    QUAY_API,
    QUAY_CLIENT_ID,
    RHDH_CLIENT,
    SHORT_LIVED_CLIENT,
    TENANT,
    USER,
    USER_OID,
    EntraShapedProvider,
    QuayFactory,
    claims_of,
    header_of,
    quay_config,
)

VERSIONS = pytest.mark.parametrize("version", ["1.0", "2.0"])
CI_ROLES = ["Repositories.Push", "Repositories.Pull"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_user(http: requests.Session, quay: str, token: str) -> requests.Response:
    return http.get(f"{quay}/api/v1/user/", headers=bearer(token), timeout=10)


def refused(reply: requests.Response) -> str:
    """The middleware's reason for an RFC 6750 refusal on /api/."""
    assert reply.status_code == 401, reply.text
    assert reply.headers["WWW-Authenticate"].startswith(
        'Bearer realm="quay.example.com", error="invalid_token"'
    )
    reason: str = reply.json()["reason"]
    return reason


def person_token(entra: EntraShapedProvider, version: str) -> str:
    """The signed-in person's token for Quay's API, got by Developer Hub (a delegated token)."""
    return entra.user_token(RHDH_CLIENT, version=version, resource=QUAY_API)


def sleep_until(monotonic_deadline: float) -> None:
    time.sleep(max(0.0, monotonic_deadline - time.monotonic()))


# --- the provider itself: are its tokens shaped like Entra's? --------------------------------------


@VERSIONS
def test_provider_issues_entra_shaped_app_only_tokens(entra: EntraShapedProvider, version: str) -> None:
    token = entra.client_credentials(CI_CLIENT, version=version)
    header, claims = header_of(token), claims_of(token)
    assert header["typ"] == "JWT" and header["alg"] == "RS256"
    assert header["kid"] in [key["kid"] for key in entra.jwks(version)["keys"]]
    assert claims["iss"] == entra.issuer(version)
    assert claims["ver"] == version
    assert claims["tid"] == TENANT
    assert claims["sub"] == claims["oid"]  # a service principal
    assert claims["idtyp"] == "app"
    assert claims["roles"] == CI_ROLES
    assert "scp" not in claims
    if version == "1.0":
        assert (claims["aud"], claims["appid"], claims["appidacr"]) == (QUAY_API, CI_CLIENT, "1")
        assert "azp" not in claims
    else:
        assert (claims["aud"], claims["azp"], claims["azpacr"]) == (QUAY_CLIENT_ID, CI_CLIENT, "1")
        assert "appid" not in claims
    assert claims["nbf"] <= claims["iat"] < claims["exp"]


def test_both_issuers_publish_one_key_set_without_alg(entra: EntraShapedProvider) -> None:
    v1, v2 = entra.jwks("1.0"), entra.jwks("2.0")
    assert v1 == v2
    for key in v1["keys"]:
        assert (key["kty"], key["use"]) == ("RSA", "sig")
        assert "alg" not in key and "d" not in key


@VERSIONS
def test_provider_issues_entra_shaped_delegated_tokens(entra: EntraShapedProvider, version: str) -> None:
    user_token = entra.user_token(version=version)
    obo = entra.on_behalf_of(user_token, version=version, scope=f"{QUAY_API}/repo:read")
    user_claims, obo_claims = claims_of(user_token), claims_of(obo)
    assert user_claims["aud"] == ("api://developer-hub" if version == "1.0" else RHDH_CLIENT)
    assert obo_claims["aud"] == (QUAY_API if version == "1.0" else QUAY_CLIENT_ID)
    for claims in (user_claims, obo_claims):
        assert claims["oid"] == USER_OID and claims["tid"] == TENANT and claims["ver"] == version
        assert claims["appid" if version == "1.0" else "azp"] == RHDH_CLIENT
        assert "roles" not in claims and "idtyp" not in claims
        assert claims["upn" if version == "1.0" else "preferred_username"] == USER
    assert (user_claims["scp"], obo_claims["scp"]) == ("user_impersonation", "repo:read")
    # sub is pairwise, as in Entra: the same user has another sub at another API.
    assert user_claims["sub"] != obo_claims["sub"]


# --- what the middleware makes of them ---------------------------------------------------------------


@pytest.mark.parametrize("server_version", ["1.0", "2.0"])
@VERSIONS
def test_service_principal_tokens_are_accepted_by_robot_federation_only(
    entra: EntraShapedProvider, quay: QuayFactory, http: requests.Session, version: str, server_version: str
) -> None:
    """Either token version, whichever of the two issuers OIDC_SERVER discovers. On the API an
    app-only token is refused (APP_ONLY_TOKENS' default): it names no person."""
    url = quay(quay_config(entra, server_version=server_version))
    token = entra.client_credentials(CI_CLIENT, version=version)
    assert refused(api_user(http, url, token)) == "app_only_token"
    reply = http.get(f"{url}/oauth2/federation/robot/token", auth=("myorg+ci", token), timeout=10)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()["identity"]
    assert body["token_version"] == version
    assert body["client"] == CI_CLIENT
    assert body["roles"] == CI_ROLES
    assert body["scopes"] == []
    assert body["on_behalf_of"] is False
    assert body["tenant_id"] == TENANT
    assert body["object_id"] == DIRECTORY["apps"][CI_CLIENT]["servicePrincipal"]


@VERSIONS
def test_client_outside_the_allowlist_is_refused(
    entra: EntraShapedProvider, quay: QuayFactory, http: requests.Session, version: str
) -> None:
    url = quay(quay_config(entra))
    token = entra.client_credentials(OUTSIDER, version=version)
    assert refused(api_user(http, url, token)) == "client_not_allowed"


@VERSIONS
def test_token_for_another_resource_is_refused(
    entra: EntraShapedProvider, quay: QuayFactory, http: requests.Session, version: str
) -> None:
    url = quay(quay_config(entra))
    token = entra.client_credentials(CI_CLIENT, version=version, resource=OTHER_API)
    assert refused(api_user(http, url, token)) == "invalid_audience"


@VERSIONS
def test_middle_tier_user_token_is_refused_and_its_obo_token_accepted(
    entra: EntraShapedProvider, quay: QuayFactory, http: requests.Session, version: str
) -> None:
    url = quay(quay_config(entra))
    user_token = entra.user_token(version=version)  # addressed to Developer Hub, not to Quay
    assert refused(api_user(http, url, user_token)) == "invalid_audience"

    obo = entra.on_behalf_of(user_token, version=version, scope=f"{QUAY_API}/.default")
    reply = api_user(http, url, obo)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    assert body["on_behalf_of"] is True
    assert body["client"] == RHDH_CLIENT
    assert body["object_id"] == USER_OID
    assert body["tenant_id"] == TENANT
    assert body["scopes"] == ["repo:read", "repo:write"]  # everything consented to Developer Hub
    assert body["roles"] == []
    assert body["token_version"] == version


@VERSIONS
def test_obo_token_of_a_middle_tier_not_allowed_is_refused(
    entra: EntraShapedProvider, quay: QuayFactory, http: requests.Session, version: str
) -> None:
    url = quay(quay_config(entra))
    user_token = entra.user_token(OUTSIDER, version=version)
    obo = entra.on_behalf_of(user_token, OUTSIDER, version=version, scope=f"{QUAY_API}/repo:read")
    assert claims_of(obo)["oid"] == USER_OID
    assert refused(api_user(http, url, obo)) == "client_not_allowed"


def test_provider_refuses_obo_for_a_token_addressed_to_someone_else(entra: EntraShapedProvider) -> None:
    """The harness's OBO grant checks what Entra checks: the assertion is the caller's."""
    ci_token = entra.client_credentials(CI_CLIENT, version="2.0")
    reply = entra.token_response(
        RHDH_CLIENT,
        "2.0",
        grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",
        requested_token_use="on_behalf_of",
        assertion=ci_token,
        scope=f"{QUAY_API}/.default",
    )
    assert (reply.status_code, reply.json()["error"]) == (400, "invalid_grant")


@VERSIONS
def test_docker_login_with_oauthtoken(
    entra: EntraShapedProvider, quay: QuayFactory, http: requests.Session, version: str
) -> None:
    url = quay(quay_config(entra))
    login = http.get(
        f"{url}/v2/auth",
        auth=("$oauthtoken", person_token(entra, version)),
        params={"service": "quay.example.com", "scope": "repository:org/app:push,pull"},
        timeout=10,
    )
    assert login.status_code == 200, login.text
    identity = login.json()["identity"]
    assert (identity["client"], identity["token_version"], identity["object_id"]) == (
        RHDH_CLIENT,
        version,
        USER_OID,
    )
    app_only = entra.client_credentials(CI_CLIENT, version=version)
    robot_please = http.get(f"{url}/v2/auth", auth=("$oauthtoken", app_only), timeout=10)
    assert robot_please.json()["errors"][0]["detail"]["reason"] == "app_only_token"

    obo = entra.on_behalf_of(
        entra.user_token(version=version), version=version, scope=f"{QUAY_API}/repo:read"
    )
    login = http.get(f"{url}/v2/auth", auth=("$oauthtoken", obo), timeout=10)
    assert login.status_code == 200, login.text
    assert login.json()["identity"]["object_id"] == USER_OID

    outsider = entra.client_credentials(OUTSIDER, version=version)
    wrong = http.get(f"{url}/v2/auth", auth=("$oauthtoken", outsider), timeout=10)
    assert wrong.status_code == 401
    assert wrong.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert wrong.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert wrong.json()["errors"][0]["detail"]["reason"] == "client_not_allowed"


def test_expired_token_is_refused(
    entra: EntraShapedProvider, quay: QuayFactory, http: requests.Session
) -> None:
    """A real expiry: this client's tokens live 3 s at the provider; no clock is faked."""
    config = quay_config(
        entra,
        allowed_clients=(RHDH_CLIENT, CI_CLIENT, SHORT_LIVED_CLIENT),
        middleware={"LEEWAY_SECONDS": 0},
    )
    url = quay(config)
    token = entra.client_credentials(SHORT_LIVED_CLIENT, version="2.0")
    expires = claims_of(token)["exp"]
    assert expires - claims_of(token)["iat"] == 3
    robot_url = f"{url}/oauth2/federation/robot/token"
    assert http.get(robot_url, auth=("myorg+ci", token), timeout=10).status_code == 200  # 2 s left

    time.sleep(max(0.0, expires - time.time()) + 0.2)
    assert refused(api_user(http, url, token)) == "token_expired"
    registry = http.get(f"{url}/v2/", headers=bearer(token), timeout=10)
    assert registry.status_code == 401
    assert registry.json()["errors"][0]["detail"]["reason"] == "token_expired"


# --- key rotation: each test has a provider of its own ----------------------------------------------

REFRESH_SECONDS = 1  # JWKS_MIN_REFRESH_SECONDS: at most one unknown-kid refetch per second


def test_first_token_after_key_rotation_is_accepted(
    own_entra: EntraShapedProvider, quay: QuayFactory, http: requests.Session
) -> None:
    url = quay(quay_config(own_entra, middleware={"JWKS_MIN_REFRESH_SECONDS": REFRESH_SECONDS}))
    before = person_token(own_entra, "1.0")
    assert api_user(http, url, before).status_code == 200  # the middleware fetched the key set
    fetched = time.monotonic()

    rotated = own_entra.rotate_keys()
    old_kid = header_of(before)["kid"]
    assert rotated["kids"] == [rotated["kid"], old_kid]  # new key first, old one still published
    after = person_token(own_entra, "2.0")
    assert header_of(after)["kid"] == rotated["kid"] != old_kid

    sleep_until(fetched + REFRESH_SECONDS + 0.1)
    reply = api_user(http, url, after)  # unknown kid: one refetch, then accepted
    assert reply.status_code == 200, reply.text
    assert reply.json()["token_version"] == "2.0"
    assert api_user(http, url, before).status_code == 200  # the old key is still published


def test_token_of_a_retired_key_is_refused_once_the_new_key_set_is_fetched(
    own_entra: EntraShapedProvider, quay: QuayFactory, http: requests.Session
) -> None:
    url = quay(quay_config(own_entra, middleware={"JWKS_MIN_REFRESH_SECONDS": REFRESH_SECONDS}))
    before = person_token(own_entra, "2.0")
    assert api_user(http, url, before).status_code == 200
    fetched = time.monotonic()

    rotated = own_entra.rotate_keys(retire_previous=True)
    assert rotated["kids"] == [rotated["kid"]]
    after = person_token(own_entra, "2.0")

    sleep_until(fetched + REFRESH_SECONDS + 0.1)
    assert api_user(http, url, after).status_code == 200  # refetched: only the new key now
    assert refused(api_user(http, url, before)) == "unknown_key"


# --- discovery and outages -----------------------------------------------------------------------


def test_discovered_issuer_must_be_configured(
    entra: EntraShapedProvider, quay: QuayFactory, http: requests.Session
) -> None:
    """OIDC_SERVER discovers the v2 issuer, but only v1 is configured: its keys are not used."""
    config = quay_config(entra, server_version="2.0")
    config["AZURE_LOGIN_CONFIG"]["OIDC_ISSUERS"] = [entra.v1_issuer]
    url = quay(config)
    reply = api_user(http, url, person_token(entra, "1.0"))
    assert reply.status_code == 503, reply.text
    assert "Retry-After" in reply.headers
    assert (reply.json()["error"], reply.json()["reason"]) == ("temporarily_unavailable", "keys_unavailable")


def test_provider_outage_keeps_known_keys_and_fails_closed_without_them(
    own_entra: EntraShapedProvider, quay: QuayFactory, http: requests.Session
) -> None:
    config = quay_config(own_entra)
    running = quay(config)
    token = person_token(own_entra, "2.0")
    assert api_user(http, running, token).status_code == 200  # keys fetched

    own_entra.stop()
    assert api_user(http, running, token).status_code == 200  # the keys in hand still work
    started_during_outage = quay(config)
    reply = api_user(http, started_during_outage, token)
    assert reply.status_code == 503, reply.text
    assert reply.json()["reason"] == "keys_unavailable"
    registry = http.get(f"{started_during_outage}/v2/", headers=bearer(token), timeout=10)
    assert registry.status_code == 503
    assert registry.json()["errors"][0]["code"] == "UNAVAILABLE"


@VERSIONS
def test_robot_federation_applies_the_allowlist(
    entra: EntraShapedProvider, quay: QuayFactory, http: requests.Session, version: str
) -> None:
    url = quay(quay_config(entra))
    robot_url = f"{url}/oauth2/federation/robot/token"
    ci = http.get(
        robot_url, auth=("myorg+deployer", entra.client_credentials(CI_CLIENT, version=version)), timeout=10
    )
    assert ci.status_code == 200, ci.text
    assert (ci.json()["robot"], ci.json()["identity"]["client"]) == ("myorg+deployer", CI_CLIENT)
    outsider = entra.client_credentials(OUTSIDER, version=version)
    refusal = http.get(robot_url, auth=("myorg+deployer", outsider), timeout=10)
    assert refused(refusal) == "client_not_allowed"


def test_asgi_adapter_under_uvicorn(entra: EntraShapedProvider, http: requests.Session) -> None:
    """The same tokens through OIDCASGIMiddleware served by uvicorn (keys fetched off the loop)."""
    from conftest import load_example, serve_asgi

    app = load_example("asgi_app").create_app(quay_config(entra))
    with serve_asgi(app) as url:
        for version in ("1.0", "2.0"):
            reply = http.get(f"{url}/api/v1/user/", headers=bearer(person_token(entra, version)), timeout=10)
            assert reply.status_code == 200, reply.text
            assert reply.json()["principal"]["client"] == RHDH_CLIENT
            app_only = bearer(entra.client_credentials(CI_CLIENT, version=version))
            assert refused(http.get(f"{url}/api/v1/user/", headers=app_only, timeout=10)) == "app_only_token"
        obo = entra.on_behalf_of(
            entra.user_token(version="2.0"), version="2.0", scope=f"{QUAY_API}/repo:read"
        )
        principal = http.get(f"{url}/api/v1/user/", headers=bearer(obo), timeout=10).json()["principal"]
        assert (principal["on_behalf_of"], principal["object_id"]) == (True, USER_OID)
        refusal = http.get(
            f"{url}/v2/", headers=bearer(entra.client_credentials(OUTSIDER, version="2.0")), timeout=10
        )
        assert refusal.status_code == 401
        assert refusal.json()["errors"][0]["detail"]["reason"] == "client_not_allowed"
