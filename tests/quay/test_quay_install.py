"""oidc_middleware.quay.install against the real Quay 3.15.7, 3.17.4 and 3.18.0, over HTTP.

Each test runs once per Quay version (the ``quay`` fixture). ``installed`` is Quay with the two
lines of ``install`` and TESTING false; ``installed_testing`` the same with TESTING true (Quay's
default); ``alone`` is Quay as shipped, for what Quay itself answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from oidc_middleware.quay import lab as harness
from oidc_middleware.quay.lab.scenario import (
    CLI_CLIENT,
    DEVHUB_CLIENT,
    GRAPH,
    QUAY_OAUTH_TOKEN,
    STRANGER_CLIENT,
    basic,
    bearer,
    forged,
    get,
    id_token,
    logged_in,
    provider_block,
    user_token,
    web_login,
)
from oidc_middleware.testing import LocalIdP, SigningKey

STRANGER_OID = "a1b2c3d4-0000-4000-8000-0000000bad00"  # never accepted anywhere: never a Quay user


def username(server: harness.QuayServer, token: str) -> str:
    answer = get(server, "/api/v1/user/", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["username"])


def user_count(server: harness.QuayServer) -> int:
    return int(server.query("SELECT count(*) FROM user")[0][0])


# -- accepted: v1.0, v2.0 and On-Behalf-Of tokens of one person ------------------------------------


def test_v1_v2_and_obo_tokens_of_one_person_are_one_quay_user(
    installed: harness.QuayServer, entra: LocalIdP
) -> None:
    names = {
        "v1.0": username(installed, user_token(entra, "1.0", CLI_CLIENT)),
        "v2.0": username(installed, user_token(entra, "2.0", CLI_CLIENT)),
        "obo": username(installed, user_token(entra, "2.0", DEVHUB_CLIENT)),
    }
    assert len(set(names.values())) == 1, names
    bound = [row for row in installed.federated_users() if row[0] == names["v1.0"]]
    assert len(bound) == 1  # one federated login (service azure, the pairwise sub)


def test_an_obo_token_creates_a_private_repository_as_developer_hub_does(
    installed: harness.QuayServer, entra: LocalIdP
) -> None:
    token = user_token(entra, "2.0", DEVHUB_CLIENT, scp="repo:write")
    namespace = username(installed, token)
    created = requests.post(
        installed.url + "/api/v1/repository",
        headers=bearer(token),
        json={
            "namespace": namespace,
            "repository": "from-developer-hub",
            "visibility": "private",
            "description": "created by the quay:create-repository template action",
            "repo_kind": "image",
        },
        timeout=60,
    )
    assert created.status_code == 201, created.text
    shown = get(installed, f"/api/v1/repository/{namespace}/from-developer-hub", headers=bearer(token))
    assert shown.status_code == 200
    assert shown.json()["is_public"] is False


def test_an_obo_token_of_a_client_not_allowed_creates_nothing(
    installed: harness.QuayServer, entra: LocalIdP
) -> None:
    namespace = username(installed, user_token(entra, "2.0", CLI_CLIENT))
    refused = requests.post(
        installed.url + "/api/v1/repository",
        headers=bearer(user_token(entra, "2.0", STRANGER_CLIENT, scp="repo:write")),
        json={
            "namespace": namespace,
            "repository": "from-a-stranger",
            "visibility": "private",
            "description": "",
        },
        timeout=60,
    )
    assert refused.status_code == 401
    assert refused.json()["reason"] == "client_not_allowed"
    assert installed.query("SELECT id FROM repository WHERE name = 'from-a-stranger'") == []


# -- refused: 401 with the reason code, and no Quay user -------------------------------------------

Case = Callable[[LocalIdP, SigningKey], str]
REFUSED: dict[str, tuple[Case, str]] = {
    "v2.0 azp not allowed": (
        lambda idp, _: user_token(idp, "2.0", STRANGER_CLIENT, user=STRANGER_OID),
        "client_not_allowed",
    ),
    "v1.0 appid not allowed": (
        lambda idp, _: user_token(idp, "1.0", STRANGER_CLIENT, user=STRANGER_OID),
        "client_not_allowed",
    ),
    "audience of another API": (
        lambda idp, _: user_token(idp, "2.0", CLI_CLIENT, audience=GRAPH, user=STRANGER_OID),
        "invalid_audience",
    ),
    "expired": (
        lambda idp, _: user_token(idp, "2.0", CLI_CLIENT, now=time.time() - 7200, user=STRANGER_OID),
        "token_expired",
    ),
    "bad signature": (lambda idp, key: forged(idp, key, user=STRANGER_OID), "invalid_signature"),
    "unknown kid": (
        lambda idp, _: forged(idp, SigningKey.rsa("retired-key"), user=STRANGER_OID),
        "unknown_key",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_tokens_get_401_with_the_reason_and_no_quay_user(
    installed: harness.QuayServer, entra: LocalIdP, attacker_key: SigningKey, case: str
) -> None:
    make, reason = REFUSED[case]
    users = user_count(installed)
    answer = get(installed, "/api/v1/user/", headers=bearer(make(entra, attacker_key)))
    assert answer.status_code == 401
    assert answer.json()["reason"] == reason
    assert user_count(installed) == users


def test_forged_signature_is_refused_with_testing_true(
    installed_testing: harness.QuayServer, entra: LocalIdP, attacker_key: SigningKey
) -> None:
    users = user_count(installed_testing)
    for path in ("/api/v1/user/", "/api/v1/repository?public=true"):
        answer = get(installed_testing, path, headers=bearer(forged(entra, attacker_key, user=STRANGER_OID)))
        assert answer.status_code == 401
        assert answer.json()["reason"] == "invalid_signature"
    login = get(
        installed_testing,
        f"/v2/auth?service=127.0.0.1:{installed_testing.port}",
        headers=basic("$oauthtoken", forged(entra, attacker_key, user=STRANGER_OID)),
    )
    assert login.status_code == 401
    assert user_count(installed_testing) == users
    warnings = [
        event for event in installed_testing.audit_events() if event["event"] == "oidc.quay.testing_enabled"
    ]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning"


# -- Quay's own account rules still apply to a token the validator accepted ------------------------


def test_user_creation_disabled_reaches_the_client_as_quay_words_it(
    installed_without_signup: harness.QuayServer, entra: LocalIdP
) -> None:
    users = user_count(installed_without_signup)
    answer = get(
        installed_without_signup, "/api/v1/user/", headers=bearer(user_token(entra, "2.0", CLI_CLIENT))
    )
    assert answer.status_code == 401
    assert answer.json()["error"] == "User creation is disabled. Please contact your administrator"
    assert user_count(installed_without_signup) == users


def test_an_impersonated_token_is_refused_by_quays_own_rule(
    installed: harness.QuayServer, entra: LocalIdP
) -> None:
    token = user_token(entra, "2.0", CLI_CLIENT, user=STRANGER_OID, impersonated=True)
    answer = get(installed, "/api/v1/user/", headers=bearer(token))
    assert answer.status_code == 401
    assert answer.json()["error"] == "Requests from impersonated principals are not supported"


def test_a_web_route_of_quay_outside_protected_paths_is_decided_by_the_validator(
    installed: harness.QuayServer, entra: LocalIdP
) -> None:
    """Quay's process_oauth web routes (/<namespace>) are not under PROTECTED_PATHS: the middleware
    passes them, and Quay's own decode, now the validator's, decides and records the token."""
    namespace = username(installed, user_token(entra, "2.0", CLI_CLIENT))
    refused_id, accepted_id = f"web-refused-{time.monotonic_ns()}", f"web-accepted-{time.monotonic_ns()}"
    stranger = user_token(entra, "1.0", STRANGER_CLIENT, user=STRANGER_OID)
    refused = get(installed, f"/{namespace}", headers={**bearer(stranger), "X-Request-ID": refused_id})
    assert refused.status_code == 401
    assert refused.json()["error"].startswith("client_not_allowed: ")
    accepted = get(
        installed,
        f"/{namespace}",
        headers={**bearer(user_token(entra, "2.0", CLI_CLIENT)), "X-Request-ID": accepted_id},
        allow_redirects=False,
    )
    assert accepted.status_code < 400
    events = installed.audit_events()
    [refused_event] = [event for event in events if event.get("request_id") == refused_id]
    [accepted_event] = [event for event in events if event.get("request_id") == accepted_id]
    assert (refused_event["event"], refused_event["reason"]) == ("oidc.token.rejected", "client_not_allowed")
    assert (accepted_event["event"], accepted_event["path"]) == ("oidc.token.accepted", f"/{namespace}")


def test_docker_v1_login_posts_the_token_in_the_body_and_the_validator_decides(
    installed: harness.QuayServer, entra: LocalIdP
) -> None:
    """POST /v1/users/ (docker's v1 login) carries the token in its JSON body, where the middleware
    does not look: Quay's own decode, now the validator's, decides and records it."""
    request_id = f"v1-login-{time.monotonic_ns()}"

    def login(token: str, request: str) -> requests.Response:
        body = {"username": "$oauthtoken", "password": token, "email": "unused@example.com"}
        return requests.post(
            installed.url + "/v1/users/", json=body, headers={"X-Request-ID": request}, timeout=60
        )

    accepted = login(user_token(entra, "2.0", CLI_CLIENT), "v1-accepted")
    # Quay answers a successful v1 login with this 400, so that docker retries with a GET.
    assert (accepted.status_code, accepted.json()) == (400, "Username or email already exists")
    refused = login(user_token(entra, "2.0", STRANGER_CLIENT, user=STRANGER_OID), request_id)
    assert (refused.status_code, refused.json()["error"]) == (400, "Invalid oauth access token.")
    [event] = [event for event in installed.audit_events() if event.get("request_id") == request_id]
    assert (event["event"], event["reason"], event["credential"]) == (
        "oidc.token.rejected",
        "client_not_allowed",
        "docker_login",
    )


def test_a_kid_with_a_percent_sign_is_a_clean_401(installed: harness.QuayServer, entra: LocalIdP) -> None:
    """Quay formats its abort messages with '%': a refusal naming such a kid must not become a 500."""
    namespace = username(installed, user_token(entra, "2.0", CLI_CLIENT))
    token = forged(entra, SigningKey.rsa("%(a)s %d"), user=STRANGER_OID)
    answer = get(installed, f"/{namespace}", headers=bearer(token))
    assert answer.status_code == 401
    assert answer.json()["error"].startswith("unknown_key: ")
    assert "%(a)s %d" in answer.json()["error"]


# -- what stays Quay's own ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [pytest.param(bearer(QUAY_OAUTH_TOKEN), id="quay-oauth-token"), pytest.param({}, id="no-credentials")],
)
def test_quay_own_token_and_no_credentials_are_answered_as_quay_alone_answers(
    installed: harness.QuayServer, alone: harness.QuayServer, headers: dict[str, str]
) -> None:
    ours, theirs = (get(server, "/api/v1/user/", headers=headers) for server in (installed, alone))
    assert ours.status_code == theirs.status_code
    assert ours.json() == {
        **theirs.json(),
        **({"type": ours.json()["type"]} if "type" in ours.json() else {}),
    }
    if headers:
        assert ours.json()["username"] == "devtable"


# -- docker login --------------------------------------------------------------------------------------


def test_docker_login_with_a_v2_token_gets_a_registry_token_that_opens_v2(
    installed: harness.QuayServer, entra: LocalIdP
) -> None:
    service = f"127.0.0.1:{installed.port}"
    login = get(
        installed,
        f"/v2/auth?service={service}",
        headers=basic("$oauthtoken", user_token(entra, "2.0", CLI_CLIENT)),
    )
    assert login.status_code == 200, login.text
    registry_token = login.json()["token"]
    assert get(installed, "/v2/", headers=bearer(registry_token)).status_code == 200
    assert get(installed, "/v2/").status_code == 401


def test_docker_login_of_a_client_not_allowed_is_refused(
    installed: harness.QuayServer, entra: LocalIdP
) -> None:
    service = f"127.0.0.1:{installed.port}"
    token = user_token(entra, "2.0", STRANGER_CLIENT, user=STRANGER_OID)
    login = get(installed, f"/v2/auth?service={service}", headers=basic("$oauthtoken", token))
    assert login.status_code == 401
    assert login.json()["errors"][0]["detail"]["reason"] == "client_not_allowed"


# -- the web UI login ----------------------------------------------------------------------------------


def test_web_login_with_a_v2_id_token_while_oidc_issuer_is_v1(
    installed: harness.QuayServer, entra: LocalIdP
) -> None:
    session, back = web_login(installed, entra, id_token(entra))
    assert logged_in(back), (back.status_code, back.headers.get("Location"), back.text[:300])
    me = session.get(installed.url + "/api/v1/user/", timeout=60)
    assert me.status_code == 200, me.text
    # The same person as the bearer tokens: the ID token's sub is the same (same recipient).
    assert me.json()["username"] == username(installed, user_token(entra, "2.0", CLI_CLIENT))


def test_web_login_with_an_id_token_for_another_audience_is_refused(
    installed: harness.QuayServer, entra: LocalIdP
) -> None:
    users = user_count(installed)
    session, back = web_login(installed, entra, id_token(entra, aud=GRAPH, user=STRANGER_OID))
    assert not logged_in(back)
    assert user_count(installed) == users
    assert session.get(installed.url + "/api/v1/user/", timeout=60).status_code == 401
    refused = [
        e
        for e in installed.audit_events()
        if e.get("credential") == "id_token" and e["event"] == "oidc.token.rejected"
    ]
    assert refused and refused[-1]["reason"] == "invalid_audience"


# -- one record per decision ---------------------------------------------------------------------------


def test_a_request_decided_by_the_middleware_is_recorded_once(
    installed: harness.QuayServer, entra: LocalIdP
) -> None:
    request_id = f"once-{time.monotonic_ns()}"
    token = user_token(entra, "2.0", DEVHUB_CLIENT)
    answer = get(installed, "/api/v1/user/", headers={**bearer(token), "X-Request-ID": request_id})
    assert answer.status_code == 200
    events = [event for event in installed.audit_events() if event.get("request_id") == request_id]
    assert [event["event"] for event in events] == ["oidc.token.accepted"]
    assert events[0]["on_behalf_of"] is True


# -- installing into Quay's environment ----------------------------------------------------------------


def test_installing_the_package_changes_none_of_quays_pins(quay: harness.QuayInstall) -> None:
    before = dict(line.split("==", 1) for line in quay.freeze_before.read_text().split() if "==" in line)
    after = dict(line.split("==", 1) for line in quay.freeze() if "==" in line)
    changed = {
        name: (version, after.get(name)) for name, version in before.items() if after.get(name) != version
    }
    assert changed == {}
    added = sorted(set(after) - set(before))
    assert added == ["ecdsa", "python-jose", "structlog"]  # and oidc-middleware, from a file
    assert any(line.startswith("oidc-middleware") for line in quay.freeze())
    report = os.environ.get("OIDC_QUAY_REPORT")
    if report:
        Path(report).mkdir(parents=True, exist_ok=True)
        (Path(report) / f"pip-{quay.version}.json").write_text(
            json.dumps({"added": added, "changed": changed})
        )


def test_install_and_remove_in_quays_own_process(quay: harness.QuayInstall, tmp_path: Path) -> None:
    """install, a second install, remove and an unrecognised Quay, checked inside Quay's process."""
    script = Path(__file__).with_name("install_and_remove.py")
    environment = {
        **harness.clean_environment(),
        "PYTHONPATH": str(quay.tree),
        "QUAYCONF": str(tmp_path / "conf"),
    }
    conf = tmp_path / "conf" / "stack"
    conf.mkdir(parents=True)
    for logging_conf in (quay.tree / "conf").glob("logging*.conf"):
        (tmp_path / "conf" / logging_conf.name).write_bytes(logging_conf.read_bytes())
    import yaml

    with LocalIdP() as idp:
        config = harness.quay_config(quay.tree, tmp_path, 1, provider_block(idp))
        (conf / "config.yaml").write_text(yaml.safe_dump(config))
        done = subprocess.run(
            [str(quay.python), str(script)],
            cwd=quay.tree,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "line": quay.line,
        "taken_over": ["azure"],
        "second_install": "OIDCMiddlewareError",
        "restored": True,
        "unrecognised": "UnsupportedQuay",
        "robots_taken_over": True,
        "robots_unrecognised": "UnsupportedQuay",
    }
