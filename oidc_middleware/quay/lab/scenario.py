"""The Entra tenant that meets the real Quay in the lab: Quay's app registration, its clients, one
person, the provider block an administrator writes, the tokens they send, and how to ask Quay.

Shared by the tests against Quay, ``oidc-middleware demo --quay`` and the benchmark, so that all
three talk about the same requests.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from ...errors import REASONS
from ...testing import LocalIdP, SigningKey, mint, service_principal_id
from . import QuayServer

# Quay's app registration in Entra: one application for the web UI login and the API.
QUAY_CLIENT_ID = "5f0c6e0a-8c1b-4f3e-9a57-2d4e6b8c0a1f"
QUAY_API = "api://quay-api"
CLI_CLIENT = "c0ffee00-1111-4222-8333-444455556666"  # a CLI on the allowlist
DEVHUB_CLIENT = "de7b0b00-2222-4333-8444-555566667777"  # Red Hat Developer Hub, on the allowlist
CI_CLIENT = "c1c1c1c1-4444-4555-8666-777788889999"  # a CI pipeline's service principal, allowed
STRANGER_CLIENT = "0ddba11e-3333-4444-8555-666677778888"  # not on the allowlist
GRAPH = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph: another API's audience
USER_OID = "a1b2c3d4-0000-4000-8000-00000000ada0"
USER_EMAIL = "ada@example.com"
STRANGER = "a1b2c3d4-0000-4000-8000-00000000face"  # a person no accepted token names
QUAY_OAUTH_TOKEN = "d" * 40 + "e" * 40  # Quay's own, created for devtable by build_database


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
        "OIDC_ALLOWED_CLIENTS": [CLI_CLIENT, DEVHUB_CLIENT, CI_CLIENT],
        "VERIFIED_EMAIL_CLAIM_NAME": "email",
        # Quay refuses an http:// OIDC_SERVER unless DEBUGGING: the lab's provider speaks https.
        **({} if idp.base_url.startswith("https://") else {"DEBUGGING": True}),
    }


# -- tokens ----------------------------------------------------------------------------------------


def entra_audience(version: str) -> str:
    """The ``aud`` of Entra's access tokens for Quay's API: v1.0 carries the App ID URI the client
    asked for (or the client id), v2.0 always the API's client id."""
    return QUAY_API if version == "1.0" else QUAY_CLIENT_ID


def user_claims(
    idp: LocalIdP,
    version: str,
    client: str,
    *,
    audience: str | None = None,
    user: str = USER_OID,
    now: float | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """An Entra access token's claims for ``user``. ``sub`` is pairwise per recipient (Quay's
    application), so every token addressed to Quay carries the same one, whatever the client.
    ``aud`` by default as Entra sets it for Quay's API: the App ID URI in v1.0, Quay's client id
    in v2.0 (always, whatever the client asked for)."""
    if audience is None:
        audience = entra_audience(version)
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


def app_token(
    idp: LocalIdP,
    version: str,
    client: str = CI_CLIENT,
    *,
    key: SigningKey | None = None,
    now: float | None = None,
    **changes: Any,
) -> str:
    """An app-only (client credentials) token of ``client``'s service principal for Quay's API, as
    Entra issues it: ``aud`` the App ID URI in v1.0, Quay's client id in v2.0."""
    claims = idp.claims(version, audience=entra_audience(version), client=client, now=now)
    claims.update(changes)
    return mint(claims, key) if key is not None else idp.token(claims)


def forged(idp: LocalIdP, key: SigningKey, version: str = "2.0", **options: Any) -> str:
    """A token of the provider's shape signed by ``key``, which the provider does not publish."""
    return mint(user_claims(idp, version, CLI_CLIENT, **options), key)


# -- robot federation --------------------------------------------------------------------------------

ORG = "buynlarge"  # an organization of Quay's fixture database, administered by devtable
ROBOT = f"{ORG}+ci"
ADMIN = {"Authorization": f"Bearer {QUAY_OAUTH_TOKEN}"}


def federate(server: Any, robot: str, entries: list[dict[str, str]], admin: dict[str, str] = ADMIN) -> None:
    """Create the robot and its federation through Quay's REST API, as an administrator does
    (``admin``: the Authorization header of an organization administrator's OAuth token)."""
    org, _, name = robot.partition("+")
    made = requests.put(f"{server.url}/api/v1/organization/{org}/robots/{name}", json={}, headers=admin,
                        timeout=60)  # fmt: skip
    if made.status_code not in (200, 201, 400):  # 400: exists already
        raise RuntimeError(f"Quay did not create the robot: {made.status_code} {made.text[:200]}")
    federated = requests.post(
        f"{server.url}/api/v1/organization/{org}/robots/{name}/federation",
        json=entries,
        headers=admin,
        timeout=60,
    )
    if federated.status_code != 200:
        raise RuntimeError(f"Quay did not federate the robot: {federated.status_code} {federated.text[:200]}")


def initialize(server: Any) -> dict[str, str]:
    """The first user of an empty Quay (``POST /api/v1/user/initialize``, as the Quay Operator and
    automation do): an administrator; returns the Authorization header of its OAuth token."""
    answer = requests.post(
        f"{server.url}/api/v1/user/initialize",
        json={"username": "quayadmin", "password": "an-initial-password", "email": "admin@example.com",
              "access_token": True},
        timeout=60,
    )  # fmt: skip
    if answer.status_code != 200:
        raise RuntimeError(
            f"Quay did not initialize its first user: {answer.status_code} {answer.text[:300]}"
        )
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def create_organization(server: Any, admin: dict[str, str], name: str = ORG) -> None:
    answer = requests.post(f"{server.url}/api/v1/organization/", json={"name": name, "email": f"{name}@example.com"},
                           headers=admin, timeout=60)  # fmt: skip
    if answer.status_code != 201:
        raise RuntimeError(f"Quay did not create the organization: {answer.status_code} {answer.text[:300]}")


def grant_write(server: Any, repository: str, member: str, admin: dict[str, str] = ADMIN) -> None:
    """A private repository of the organization, with write permission for ``member`` (a robot)."""
    made = requests.post(
        f"{server.url}/api/v1/repository",
        json={"namespace": ORG, "repository": repository, "visibility": "private", "description": ""},
        headers=admin,
        timeout=60,
    )
    granted = requests.put(
        f"{server.url}/api/v1/repository/{ORG}/{repository}/permissions/user/{member}",
        json={"role": "write"},
        headers=admin,
        timeout=60,
    )
    if made.status_code != 201 or granted.status_code != 200:
        raise RuntimeError(f"Quay did not make the repository: {made.text[:200]} {granted.text[:200]}")


def exchange(server: QuayServer, robot: str, token: str) -> requests.Response:
    """Robot federation: the workload's token for a short-lived robot token."""
    return get(server, "/oauth2/federation/robot/token", headers=basic(robot, token))


@dataclass(frozen=True)
class ExchangeRow:
    """One robot-federation exchange of the comparison, for the robot ``robot``."""

    title: str
    robot: str
    credential: Callable[[LocalIdP, SigningKey], str]


def robot_entries(idp: LocalIdP) -> list[dict[str, str]]:
    """The CI robot's federation: the CI service principal and the stranger application's, both
    named with the v2.0 issuer only (an administrator who federated after the switch)."""
    return [
        {"issuer": idp.v2_issuer, "subject": service_principal_id(CI_CLIENT)},
        {"issuer": idp.v2_issuer, "subject": service_principal_id(STRANGER_CLIENT)},
    ]


def exchange_rows() -> list[ExchangeRow]:
    expired = time.time() - 7200
    return [
        ExchangeRow("v2.0 token, right sub", ROBOT, lambda idp, _: app_token(idp, "2.0")),
        ExchangeRow("v1.0 token, same principal (robot lists v2.0)", ROBOT, lambda idp, _: app_token(idp, "1.0")),
        ExchangeRow("token for Microsoft Graph, right sub", ROBOT, lambda idp, _: app_token(idp, "2.0", aud=GRAPH)),
        ExchangeRow("calling app not allowed, right sub", ROBOT,
                    lambda idp, _: app_token(idp, "2.0", STRANGER_CLIENT)),
        ExchangeRow("expired", ROBOT, lambda idp, _: app_token(idp, "2.0", now=expired)),
        ExchangeRow("signed by another key", ROBOT, lambda idp, key: app_token(idp, "2.0", key=key)),
        ExchangeRow("another service principal (wrong sub)", ROBOT,
                    lambda idp, _: app_token(idp, "2.0", CLI_CLIENT)),
        ExchangeRow("robot that does not exist", f"{ORG}+nobody", lambda idp, _: app_token(idp, "2.0")),
    ]  # fmt: skip


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- asking Quay -------------------------------------------------------------------------------------


def get(server: QuayServer, path: str, **options: Any) -> requests.Response:
    return requests.get(server.url + path, timeout=60, **options)


def web_login(server: QuayServer, idp: LocalIdP, token: str) -> tuple[requests.Session, requests.Response]:
    """Quay's web UI login as a browser does it: start it, come back from the provider with a code
    that the provider exchanges for ``token``. Returns the browser's session and Quay's answer to
    the callback (a redirect home when logged in; an error page or a redirect to /oauth-error)."""
    session = requests.Session()
    csrf = session.get(server.url + "/csrf_token", timeout=60).json()["csrf_token"]
    started = session.post(
        server.url + "/api/v1/externallogin/azure",
        json={"kind": "login"},
        headers={"X-CSRF-Token": csrf},
        timeout=60,
    )
    if started.status_code != 200:
        raise RuntimeError(f"Quay did not start the login: {started.status_code} {started.text[:200]}")
    state = parse_qs(urlsplit(started.json()["auth_url"]).query)["state"][0]
    code = idp.issue_code(token)
    back = session.get(
        server.url + "/oauth2/azure/callback",
        params={"code": code, "state": state},
        allow_redirects=False,
        timeout=60,
    )
    return session, back


def logged_in(back: requests.Response) -> bool:
    return back.status_code == 302 and "error" not in back.headers.get("Location", "")


@dataclass(frozen=True)
class Row:
    """One request of the comparison: ``kind`` is "api" (GET /api/v1/user/), "docker" (docker
    login at /v2/auth) or "login" (the web UI login with an ID token)."""

    title: str
    kind: str
    credential: Callable[[LocalIdP, SigningKey], str]


def rows() -> list[Row]:
    """The requests Quay meets, good and bad. Rows that must be refused use another person, so
    that no row is answered by a Quay user an earlier row created."""
    expired = time.time() - 7200
    return [
        Row("v1.0 token (appid allowed)", "api", lambda idp, _: user_token(idp, "1.0", CLI_CLIENT)),
        Row("v2.0 token (azp allowed)", "api", lambda idp, _: user_token(idp, "2.0", CLI_CLIENT)),
        Row("OBO token from Developer Hub", "api", lambda idp, _: user_token(idp, "2.0", DEVHUB_CLIENT)),
        Row(
            "audience of another API (Graph)",
            "api",
            lambda idp, _: user_token(idp, "1.0", CLI_CLIENT, audience=GRAPH, user=STRANGER),
        ),
        Row(
            "v2.0 azp not allowed",
            "api",
            lambda idp, _: user_token(idp, "2.0", STRANGER_CLIENT, user=STRANGER),
        ),
        Row(
            "v1.0 appid not allowed",
            "api",
            lambda idp, _: user_token(idp, "1.0", STRANGER_CLIENT, user=STRANGER),
        ),
        Row(
            "expired (v1.0)",
            "api",
            lambda idp, _: user_token(idp, "1.0", CLI_CLIENT, now=expired, user=STRANGER),
        ),
        Row("forged signature (v1.0)", "api", lambda idp, key: forged(idp, key, "1.0", user=STRANGER)),
        Row("Quay's own OAuth token", "api", lambda idp, _: QUAY_OAUTH_TOKEN),
        Row("no credentials", "api", lambda idp, _: ""),
        Row("docker login, v2.0 token", "docker", lambda idp, _: user_token(idp, "2.0", CLI_CLIENT)),
        Row("docker login, v1.0 token", "docker", lambda idp, _: user_token(idp, "1.0", CLI_CLIENT)),
        Row("web login, v2.0 ID token", "login", lambda idp, _: id_token(idp)),
    ]


def ask(server: QuayServer, idp: LocalIdP, kind: str, credential: str) -> tuple[int, str]:
    """The status and, for 200, the Quay user; else Quay's message or our reason code."""
    if kind == "login":
        session, back = web_login(server, idp, credential)
        if not logged_in(back):
            return back.status_code, "login refused: " + (back.headers.get("Location") or back.reason)[:60]
        answer = session.get(server.url + "/api/v1/user/", timeout=60)
    elif kind == "docker":
        answer = get(
            server, f"/v2/auth?service=127.0.0.1:{server.port}", headers=basic("$oauthtoken", credential)
        )
    else:
        answer = get(server, "/api/v1/user/", headers=bearer(credential) if credential else {})
    return answer.status_code, describe(answer)


def describe(answer: requests.Response) -> str:
    """For 200 the Quay user (or "registry token"); else the reason code, or Quay's message."""
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:80]
    if not isinstance(body, dict):
        return str(body)[:80]
    if answer.status_code == 200:
        if "token" in body and answer.url.split("?")[0].endswith("/robot/token"):
            return "robot token"
        return str(body.get("username") or ("registry token" if "token" in body else ""))
    if "reason" in body:
        return str(body["reason"])
    if "errors" in body:
        detail = body["errors"][0].get("detail") or {}
        return str(detail.get("reason") or body["errors"][0].get("message"))[:200]
    message = str(body.get("error") or body.get("error_message") or body.get("message") or body)
    code = message.partition(":")[0]  # Quay's message for a refusal of ours starts with its reason
    return code if code in REASONS else message[:200]
