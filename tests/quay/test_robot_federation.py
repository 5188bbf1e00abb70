"""Robot federation and service-principal tokens on the real Quay 3.15.7, 3.17.4 and 3.18.0.

Quay alone against Quay with ``install``, both with Quay's default FEATURE_MAILING and TESTING
false, the provider on https (its CA made for the session, trusted by Quay's process through
REQUESTS_CA_BUNDLE and by the middleware through its CA_BUNDLE; no DEBUGGING). Robots are created
and federated through Quay's REST API, as an administrator does; the robot token then pushes and
pulls an image with skopeo. Set OIDC_QUAY_REPORT to a directory for the table as Markdown.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from oidc_middleware.quay import lab as harness
from oidc_middleware.quay.lab.scenario import (
    ADMIN,
    CI_CLIENT,
    CLI_CLIENT,
    ORG,
    QUAY_CLIENT_ID,
    ROBOT,
    STRANGER_CLIENT,
    app_token,
    basic,
    bearer,
    describe,
    exchange,
    exchange_rows,
    federate,
    get,
    grant_write,
    provider_block,
    robot_entries,
    user_token,
)
from oidc_middleware.testing import LocalIdP, SigningKey, service_principal_id

# (Quay alone, with install): the same on every version.
EXPECTED = {
    "v2.0 token, right sub": ((200, "robot token"), (200, "robot token")),
    "v1.0 token, same principal (robot lists v2.0)": (400, (200, "robot token")),
    "token for Microsoft Graph, right sub": ((200, "robot token"), (401, "invalid_audience")),
    "calling app not allowed, right sub": ((200, "robot token"), (401, "client_not_allowed")),
    "expired": (400, (401, "token_expired")),
    "signed by another key": (400, (401, "invalid_signature")),
    "another service principal (wrong sub)": ((400, "Token does not match robot"), (400, "robot_subject_mismatch")),
    "robot that does not exist": (400, (400, "Could not find robot with specified username")),
}  # fmt: skip


def _start(
    quay: harness.QuayInstall, idp: LocalIdP, tmp_path_factory: pytest.TempPathFactory, mode: str
) -> Iterator[harness.QuayServer]:
    workdir = tmp_path_factory.mktemp(f"quay-{quay.version}-robots-{mode}")
    server = harness.start_server(
        quay,
        workdir,
        provider_block(idp),
        mode=mode,
        testing=False,
        extra_config={"FEATURE_MAILING": True},  # Quay's default
        ca_file=idp.ca_file,
    )
    try:
        federate(server, ROBOT, robot_entries(idp))
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def quay_alone(
    quay: harness.QuayInstall, entra: LocalIdP, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[harness.QuayServer]:
    yield from _start(quay, entra, tmp_path_factory, "alone")


@pytest.fixture(scope="module")
def with_install(
    quay: harness.QuayInstall, entra: LocalIdP, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[harness.QuayServer]:
    yield from _start(quay, entra, tmp_path_factory, "install")


def ask(server: harness.QuayServer, robot: str, token: str) -> tuple[int, str]:
    answer = exchange(server, robot, token)
    return answer.status_code, describe(answer)


def provider_requests(idp: LocalIdP) -> int:
    return sum(idp.hits.values())


def test_exchanges_quay_alone_and_with_install_row_by_row(
    quay: harness.QuayInstall,
    quay_alone: harness.QuayServer,
    with_install: harness.QuayServer,
    entra: LocalIdP,
    attacker_key: SigningKey,
) -> None:
    table = {}
    for row in exchange_rows():
        token = row.credential(entra, attacker_key)
        table[row.title] = (ask(quay_alone, row.robot, token), ask(with_install, row.robot, token))
    report = os.environ.get("OIDC_QUAY_REPORT")
    if report:
        lines = [f"| {title} | {a[0]} {a[1]} | {b[0]} {b[1]} |" for title, (a, b) in table.items()]
        Path(report).mkdir(parents=True, exist_ok=True)
        (Path(report) / f"robots-{quay.version}.md").write_text("\n".join(lines) + "\n")
    # Pinned: statuses everywhere; what was answered where it names the outcome.
    seen = {
        title: tuple(
            cell if isinstance(want, tuple) else cell[0]
            for cell, want in zip(cells, EXPECTED[title], strict=True)
        )
        for title, cells in table.items()
    }
    assert seen == EXPECTED, table


def test_install_asks_the_provider_nothing_per_exchange_and_quay_alone_asks_twice(
    quay_alone: harness.QuayServer, with_install: harness.QuayServer, entra: LocalIdP
) -> None:
    counts = {}
    for name, server in (("alone", quay_alone), ("install", with_install)):
        assert exchange(server, ROBOT, app_token(entra, "2.0")).status_code == 200  # warm
        before = entra.hits.copy()
        for _ in range(5):
            assert exchange(server, ROBOT, app_token(entra, "2.0")).status_code == 200
        counts[name] = {
            path: entra.hits[path] - before[path] for path in entra.hits if entra.hits[path] != before[path]
        }
    discovery = f"/{entra.tenant}/v2.0/.well-known/openid-configuration"
    keys = f"/{entra.tenant}/discovery/v2.0/keys"
    assert counts == {"alone": {discovery: 5, keys: 5}, "install": {}}


def test_exchanges_keep_working_on_known_keys_while_the_provider_is_down(
    quay_alone: harness.QuayServer, with_install: harness.QuayServer, entra: LocalIdP
) -> None:
    token = app_token(entra, "2.0")
    assert exchange(with_install, ROBOT, token).status_code == 200  # keys known
    entra.stop()
    try:
        alone, installed = exchange(quay_alone, ROBOT, token), exchange(with_install, ROBOT, token)
    finally:
        entra.start()
    assert (alone.status_code, installed.status_code) == (500, 200), (alone.text[:300], installed.text)
    assert installed.json()["token"]


def test_one_event_per_exchange_with_its_final_outcome(
    with_install: harness.QuayServer, entra: LocalIdP, attacker_key: SigningKey
) -> None:
    cases = {
        "v1.0 token, same principal (robot lists v2.0)": ("oidc.token.accepted", None),
        "token for Microsoft Graph, right sub": ("oidc.token.rejected", "invalid_audience"),
        "another service principal (wrong sub)": ("oidc.token.rejected", "robot_subject_mismatch"),
        "robot that does not exist": ("oidc.token.rejected", "robot_not_found"),
    }
    rows = {row.title: row for row in exchange_rows()}
    ids = {}
    for title in cases:
        request_id = f"robot-{uuid.uuid4().hex[:12]}"
        row = rows[title]
        headers = {**basic(row.robot, row.credential(entra, attacker_key)), "X-Request-ID": request_id}
        get(with_install, "/oauth2/federation/robot/token", headers=headers)
        ids[title] = request_id
    events = with_install.audit_events()
    for title, (event_name, reason) in cases.items():
        mine = [
            e for e in events if e.get("request_id") == ids[title] and e["event"].startswith("oidc.token.")
        ]
        assert [(e["event"], e.get("reason")) for e in mine] == [(event_name, reason)], (title, mine)
        assert mine[0]["credential"] == "robot_federation"
    migrated = next(
        e for e in events if e.get("request_id") == ids["v1.0 token, same principal (robot lists v2.0)"]
    )
    # Which issuer the robot lists, and which the token carried.
    assert (migrated["robot"], migrated["robot_issuer"], migrated["iss"]) == (
        ROBOT,
        entra.v2_issuer,
        entra.v1_issuer,
    )
    mismatch = next(e for e in events if e.get("request_id") == ids["another service principal (wrong sub)"])
    assert "claims_verified" not in mismatch and mismatch["sub"] == service_principal_id(CLI_CLIENT)


def test_a_refused_exchange_never_tells_the_client_the_robots_federation(
    with_install: harness.QuayServer, entra: LocalIdP
) -> None:
    """Anyone with a valid token may try any robot name: the answer names the reason, never the
    issuers, subjects or audiences the robot is federated with (the audit event has them)."""
    elsewhere = f"{ORG}+elsewhere"
    other_tenant = "dddddddd-0000-4000-8000-00000000000d"
    federate(with_install, elsewhere, [{"issuer": f"https://login.microsoftonline.com/{other_tenant}/v2.0",
                                        "subject": "secret-subject"}])  # fmt: skip
    answer = exchange(with_install, elsewhere, app_token(entra, "2.0"))
    assert answer.status_code == 400
    assert (
        answer.json()["message"]
        == "robot_issuer_not_listed: the token's issuer is not configured for this robot"
    )
    wrong_sub = exchange(with_install, ROBOT, app_token(entra, "2.0", CLI_CLIENT))
    assert wrong_sub.json()["message"] == "robot_subject_mismatch: the token does not match the robot"
    assert service_principal_id(CI_CLIENT) not in wrong_sub.text


def test_robots_survive_the_migration_in_both_directions(
    quay_alone: harness.QuayServer, with_install: harness.QuayServer, entra: LocalIdP
) -> None:
    """A robot federated before the switch (v1.0 issuer) and one after (v2.0): with install both
    take the service principal's v1.0 and v2.0 tokens; Quay alone only the issuer it lists."""
    legacy = f"{ORG}+legacy"
    subject = service_principal_id(CI_CLIENT)
    answers = {}
    for name, server in (("alone", quay_alone), ("install", with_install)):
        federate(server, legacy, [{"issuer": entra.v1_issuer, "subject": subject}])
        answers[name] = tuple(
            exchange(server, robot, app_token(entra, version)).status_code
            for robot in (legacy, ROBOT)
            for version in ("1.0", "2.0")
        )
    assert answers == {"alone": (200, 400, 400, 200), "install": (200, 200, 200, 200)}


def test_a_robots_own_audiences_narrow_what_install_accepts(
    with_install: harness.QuayServer, entra: LocalIdP
) -> None:
    """Quay 3.18 keeps per-entry ``audiences`` but its API drops them: set in the database here."""
    narrow = f"{ORG}+narrow"
    subject = service_principal_id(CI_CLIENT)
    federate(with_install, narrow, [{"issuer": entra.v2_issuer, "subject": subject}])
    entries = [{"issuer": entra.v2_issuer, "subject": subject, "audiences": [QUAY_CLIENT_ID]}]
    connection = sqlite3.connect(with_install.workdir / "quay.sqlite", timeout=30)
    try:
        with connection:
            connection.execute(
                "UPDATE federatedlogin SET metadata_json = ? WHERE user_id = "
                "(SELECT id FROM user WHERE username = ?)",
                (json.dumps({"federation_config": entries}), narrow),
            )
    finally:
        connection.close()
    v2 = exchange(with_install, narrow, app_token(entra, "2.0"))  # aud: Quay's client id
    v1 = exchange(with_install, narrow, app_token(entra, "1.0"))  # aud: api://quay-api
    assert v2.status_code == 200, v2.text
    assert (v1.status_code, v1.json()["message"].split(":")[0]) == (400, "robot_audience_mismatch")


# -- service principals on the other paths ------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_an_app_only_token_gets_a_deliberate_answer_on_the_api_and_at_docker_login(
    quay: harness.QuayInstall,
    quay_alone: harness.QuayServer,
    with_install: harness.QuayServer,
    entra: LocalIdP,
    version: str,
) -> None:
    token = app_token(entra, version)
    alone = get(quay_alone, "/api/v1/user/", headers=bearer(token))
    # Quay's own answer: misleading where it takes the issuer (OIDC_ISSUER, v1.0, before 3.18).
    takes_issuer = version == "1.0" or quay.line == "3.18"
    assert alone.status_code == 401
    assert ("e-mail address None is already associated" if takes_issuer else "not configured") in alone.text
    api = get(with_install, "/api/v1/user/", headers=bearer(token))
    assert (api.status_code, api.json()["reason"]) == (401, "app_only_token")
    assert "robot federation" in api.json()["error_description"]
    login = get(
        with_install, f"/v2/auth?service=127.0.0.1:{with_install.port}", headers=basic("$oauthtoken", token)
    )
    assert (login.status_code, login.json()["errors"][0]["detail"]["reason"]) == (401, "app_only_token")
    assert not with_install.query("SELECT username FROM federatedlogin f JOIN user u ON u.id = f.user_id "
                                  "WHERE f.service_ident = ?", service_principal_id(CI_CLIENT))  # fmt: skip


# -- a real registry client --------------------------------------------------------------------------


def test_the_robot_token_pushes_and_pulls_an_image_with_skopeo(
    with_install: harness.QuayServer, entra: LocalIdP, tmp_path: Path
) -> None:
    """CI and Zero Trust: the service principal's v1.0 token (robot federated with v2.0) becomes
    a robot token, which pushes and pulls an image with the same digest."""
    grant_write(with_install, "ci-image", ROBOT)
    answer = exchange(with_install, ROBOT, app_token(entra, "1.0"))
    assert answer.status_code == 200, answer.text
    built, pushed, pulled = harness.push_and_pull(
        with_install.port, tmp_path, f"{ORG}/ci-image", f"{ROBOT}:{answer.json()['token']}"
    )
    assert built == pushed == pulled
    print(f"robot push/pull digest {pushed}")


def test_a_persons_v2_token_pushes_and_pulls_through_docker_login(
    with_install: harness.QuayServer, entra: LocalIdP, tmp_path: Path
) -> None:
    """Dev Spaces: skopeo logs in with $oauthtoken and the person's v2.0 token."""
    token = user_token(entra, "2.0", CLI_CLIENT)
    me = get(with_install, "/api/v1/user/", headers=bearer(token))
    assert me.status_code == 200, me.text
    username = me.json()["username"]
    built, pushed, pulled = harness.push_and_pull(
        with_install.port, tmp_path, f"{username}/workspace", f"$oauthtoken:{token}"
    )
    assert built == pushed == pulled
    print(f"person push/pull digest {pushed}")


def test_unknown_issuers_keep_quays_own_robot_code(with_install: harness.QuayServer, entra: LocalIdP) -> None:
    """A token of an issuer no provider claims is Quay's to decide, as without install."""
    other = LocalIdP(tenant="00000000-0000-4000-8000-0000000000ff", tls=True)
    with other:
        token = other.token(other.claims("2.0", client=CLI_CLIENT, audience="x"))
        answer = exchange(with_install, ROBOT, token)
    assert answer.status_code == 400
    assert "not configured for this robot" in answer.json()["message"]
    assert describe(answer) != "robot token"


def test_an_admin_token_creates_robots_through_quays_api(with_install: harness.QuayServer) -> None:
    listed = requests.get(
        f"{with_install.url}/api/v1/organization/{ORG}/robots/ci/federation", headers=ADMIN, timeout=60
    )
    assert listed.status_code == 200
    assert {entry["subject"] for entry in listed.json()} == {
        service_principal_id(CI_CLIENT),
        service_principal_id(STRANGER_CLIENT),
    }
