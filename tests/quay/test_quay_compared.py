"""What Quay alone answers and what it answers with ``install``, row by row, per version.

The expected statuses below are the table in docs/quay-integration.md: every cell is measured
here against the real Quay. Set OIDC_QUAY_REPORT to a directory to also get the table with each
answer's user or message, as Markdown.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import requests

from oidc_middleware.quay import lab as harness
from oidc_middleware.testing import LocalIdP, SigningKey

from .conftest import (
    CLI_CLIENT,
    DEVHUB_CLIENT,
    GRAPH,
    QUAY_OAUTH_TOKEN,
    STRANGER_CLIENT,
    basic,
    bearer,
    get,
    id_token,
    user_token,
)
from .test_quay_install import logged_in, web_login

# Each row: how to ask, on /api/v1/user/ unless said otherwise. The stranger rows use another
# person, so that a row cannot be answered by a Quay user an earlier row created.
STRANGER = "a1b2c3d4-0000-4000-8000-00000000face"
ROWS: dict[str, Callable[[LocalIdP, SigningKey], tuple[str, dict[str, str]]]] = {
    "v1.0 token (appid allowed)": lambda idp, _: ("api", bearer(user_token(idp, "1.0", CLI_CLIENT))),
    "v2.0 token (azp allowed)": lambda idp, _: ("api", bearer(user_token(idp, "2.0", CLI_CLIENT))),
    "OBO token from Developer Hub": lambda idp, _: ("api", bearer(user_token(idp, "2.0", DEVHUB_CLIENT))),
    "audience of another API (Graph)": lambda idp, _: (
        "api",
        bearer(user_token(idp, "1.0", CLI_CLIENT, audience=GRAPH, user=STRANGER)),
    ),
    "v2.0 azp not allowed": lambda idp, _: (
        "api",
        bearer(user_token(idp, "2.0", STRANGER_CLIENT, user=STRANGER)),
    ),
    "v1.0 appid not allowed": lambda idp, _: (
        "api",
        bearer(user_token(idp, "1.0", STRANGER_CLIENT, user=STRANGER)),
    ),
    "expired (v1.0)": lambda idp, _: (
        "api",
        bearer(user_token(idp, "1.0", CLI_CLIENT, now=time.time() - 7200, user=STRANGER)),
    ),
    "forged signature (v1.0)": lambda idp, key: ("api", bearer(forged_v1(idp, key))),
    "Quay's own OAuth token": lambda idp, _: ("api", bearer(QUAY_OAUTH_TOKEN)),
    "no credentials": lambda idp, _: ("api", {}),
    "docker login, v2.0 token": lambda idp, _: (
        "docker",
        basic("$oauthtoken", user_token(idp, "2.0", CLI_CLIENT)),
    ),
    "docker login, v1.0 token": lambda idp, _: (
        "docker",
        basic("$oauthtoken", user_token(idp, "1.0", CLI_CLIENT)),
    ),
    "web login, v2.0 ID token": lambda idp, _: ("login", {"id_token": id_token(idp)}),
}


def forged_v1(idp: LocalIdP, key: SigningKey) -> str:
    from oidc_middleware.testing import mint

    from .conftest import user_claims

    return mint(user_claims(idp, "1.0", CLI_CLIENT, user=STRANGER), key)


# Expected statuses per Quay line: (alone with TESTING true, alone with TESTING false, install).
# A refused web login is Quay's error page (400) on 3.15 and a redirect to /oauth-error (302) after.
BEFORE_3_18 = {
    "v1.0 token (appid allowed)": (200, 200, 200),
    "v2.0 token (azp allowed)": (401, 401, 200),
    "OBO token from Developer Hub": (401, 401, 200),
    "audience of another API (Graph)": (200, 200, 401),
    "v2.0 azp not allowed": (401, 401, 401),
    "v1.0 appid not allowed": (200, 200, 401),
    "expired (v1.0)": (200, 401, 401),
    "forged signature (v1.0)": (200, 401, 401),
    "Quay's own OAuth token": (200, 200, 200),
    "no credentials": (401, 401, 401),
    "docker login, v2.0 token": (401, 401, 200),
    "docker login, v1.0 token": (200, 200, 200),
}
EXPECTED = {
    "3.15": {**BEFORE_3_18, "web login, v2.0 ID token": (400, 400, 200)},
    "3.17": {**BEFORE_3_18, "web login, v2.0 ID token": (302, 302, 200)},
    "3.18": {
        "v1.0 token (appid allowed)": (200, 200, 200),
        "v2.0 token (azp allowed)": (200, 200, 200),
        "OBO token from Developer Hub": (200, 200, 200),
        "audience of another API (Graph)": (200, 401, 401),
        "v2.0 azp not allowed": (401, 401, 401),
        "v1.0 appid not allowed": (200, 200, 401),
        "expired (v1.0)": (200, 401, 401),
        "forged signature (v1.0)": (200, 401, 401),
        "Quay's own OAuth token": (200, 200, 200),
        "no credentials": (401, 401, 401),
        "docker login, v2.0 token": (200, 200, 200),
        "docker login, v1.0 token": (200, 200, 200),
        "web login, v2.0 ID token": (200, 200, 200),
    },
}


def ask(server: harness.QuayServer, entra: LocalIdP, kind: str, headers: dict[str, str]) -> tuple[int, str]:
    """The status and, for 200, the Quay user; else Quay's message or our reason code."""
    if kind == "login":
        session, back = web_login(server, entra, headers["id_token"])
        if not logged_in(back):
            return back.status_code, "login refused: " + (back.headers.get("Location") or back.reason)[:60]
        answer = session.get(server.url + "/api/v1/user/", timeout=60)
    elif kind == "docker":
        answer = get(server, f"/v2/auth?service=127.0.0.1:{server.port}", headers=headers)
    else:
        answer = get(server, "/api/v1/user/", headers=headers)
    return answer.status_code, describe(answer)


def describe(answer: requests.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:80]
    if answer.status_code == 200:
        return str(body.get("username") or ("registry token" if "token" in body else ""))
    if "reason" in body:
        return str(body["reason"])
    if "errors" in body:
        detail = body["errors"][0].get("detail") or {}
        return str(detail.get("reason") or body["errors"][0].get("message"))[:80]
    return str(body.get("error") or body.get("error_message") or body)[:80]


def test_quay_alone_and_with_install_row_by_row(
    quay: harness.QuayInstall,
    alone: harness.QuayServer,
    alone_strict: harness.QuayServer,
    installed: harness.QuayServer,
    entra: LocalIdP,
    attacker_key: SigningKey,
) -> None:
    table = {}
    for row, make in ROWS.items():
        kind, headers = make(entra, attacker_key)
        table[row] = tuple(ask(server, entra, kind, headers) for server in (alone, alone_strict, installed))
    report = os.environ.get("OIDC_QUAY_REPORT")
    if report:
        lines = [
            f"| {row} | " + " | ".join(f"{status} {detail}" for status, detail in cells) + " |"
            for row, cells in table.items()
        ]
        Path(report).mkdir(parents=True, exist_ok=True)
        (Path(report) / f"table-{quay.version}.md").write_text("\n".join(lines) + "\n")
    statuses = {row: tuple(status for status, _ in cells) for row, cells in table.items()}
    assert statuses == EXPECTED[quay.line], table
