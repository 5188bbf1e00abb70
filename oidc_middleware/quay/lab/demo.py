"""``oidc-middleware demo --quay``: the real Quay 3.17.4, three ways, side by side.

Quay alone, Quay with the middleware as a filter (``OIDCMiddleware`` only) and Quay with
``install``, each in a process of its own on loopback (``TESTING`` false, as in production), next
to an Entra-shaped provider over https; the same requests to all three: bearer tokens, docker
login, an app-only token, and robot federation exchanges for a robot federated through Quay's API. One row per request, one column per
Quay: the status and, for 200, the Quay user; for refusals Quay's message or the reason code.
Then the audit events of the ``install`` column, and a last line that says whether every cell was
what the demo expected (exit status 1 when not).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from ...testing import LocalIdP, SigningKey
from .. import lab
from .scenario import (
    ROBOT,
    app_token,
    ask,
    bearer,
    describe,
    exchange,
    exchange_rows,
    federate,
    get,
    provider_block,
    robot_entries,
    rows,
)

VERSION = "3.17.4"
MODES = ("alone", "filter", "install")
HEADINGS = ("Quay alone", "with the middleware as a filter", "with install")
# The expected status of each row in each column: what Quay 3.17.4 does and what we change.
EXPECTED: dict[str, tuple[int, int, int]] = {
    "v1.0 token (appid allowed)": (200, 200, 200),
    "v2.0 token (azp allowed)": (401, 401, 200),
    "OBO token from Developer Hub": (401, 401, 200),
    "audience of another API (Graph)": (200, 401, 401),
    "v2.0 azp not allowed": (401, 401, 401),
    "v1.0 appid not allowed": (200, 401, 401),
    "expired (v1.0)": (401, 401, 401),
    "docker login, v2.0 token": (401, 401, 200),
    "Quay's own OAuth token": (200, 200, 200),
    # Quay alone, FEATURE_MAILING off as here: a Quay user named after the service principal.
    "app-only token (CI service principal)": (200, 401, 401),
}
# Robot federation (GET /oauth2/federation/robot/token) for the robot buynlarge+ci, which Quay's
# API federated with the CI service principal under the v2.0 issuer.
EXPECTED_EXCHANGES: dict[str, tuple[int, int, int]] = {
    "v2.0 token, right sub": (200, 200, 200),
    "v1.0 token, same principal (robot lists v2.0)": (400, 400, 200),
    "token for Microsoft Graph, right sub": (200, 401, 401),
    "calling app not allowed, right sub": (200, 401, 401),
    "expired": (400, 401, 401),
    "another service principal (wrong sub)": (400, 400, 400),
}
WIDTH = 40


def run(out: TextIO | None = None) -> int:
    out = out or sys.stdout
    source = lab.sources()
    if source is None:
        print(f"oidc-middleware demo --quay: {lab.HOW_TO_GET}", file=out)
        return 2
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="oidc-demo-quay-") as scratch:
        work = Path(scratch)
        print(
            f"Quay {VERSION} from {source} (installed once into {lab.cache_root()}) ...", file=out, flush=True
        )
        wheel = lab.build_wheel(work / "wheel")
        quay = lab.ensure_installed(VERSION, source, wheel)
        with LocalIdP(tls=True) as idp:
            servers = []
            try:
                for mode in MODES:
                    servers.append(
                        lab.start_server(
                            quay,
                            work / mode,
                            provider_block(idp),
                            mode=mode,
                            testing=False,
                            ca_file=idp.ca_file,
                        )
                    )
                attacker = SigningKey.rsa("entra-key-1")
                table = []
                for row in rows():
                    if row.title not in EXPECTED:
                        continue
                    credential = row.credential(idp, attacker)
                    cells = [ask(server, idp, row.kind, credential) for server in servers]
                    table.append((row.title, [(status, _short(detail, idp)) for status, detail in cells]))
                app_only = app_token(idp, "1.0")
                cells = [
                    _answer(get(server, "/api/v1/user/", headers=bearer(app_only))) for server in servers
                ]
                table.append(
                    ("app-only token (CI service principal)", [(s, _short(d, idp)) for s, d in cells])
                )
                for server in servers:
                    federate(server, ROBOT, robot_entries(idp))
                for exchange_row in exchange_rows():
                    if exchange_row.title not in EXPECTED_EXCHANGES:
                        continue
                    credential = exchange_row.credential(idp, attacker)
                    cells = [_answer(exchange(server, exchange_row.robot, credential)) for server in servers]
                    table.append((exchange_row.title, [(s, _short(d, idp)) for s, d in cells]))
                events = [
                    event
                    for event in servers[-1].audit_events()
                    if str(event.get("event", "")).startswith(("oidc.token.", "oidc.quay."))
                ]
            finally:
                for server in servers:
                    server.stop()
    return _report(table, events, time.monotonic() - started, out)


def _answer(answer: Any) -> tuple[int, str]:
    return answer.status_code, describe(answer)


def _short(detail: str, idp: LocalIdP) -> str:
    """Quay's messages name the loopback issuer in full: shown as Entra's shape, {tid} for the tenant."""
    return detail.replace(idp.base_url.rstrip("/"), "").replace(idp.tenant, "{tid}")


def _report(
    table: list[tuple[str, list[tuple[int, str]]]],
    events: list[dict[str, object]],
    seconds: float,
    out: TextIO,
) -> int:
    first = max(len(title) for title, _ in table) + 2
    print("\n  request to GET /api/v1/user/ (docker login: /v2/auth)", file=out)
    print((f"  {'':<{first}}" + "".join(f"{heading:<{WIDTH}}" for heading in HEADINGS)).rstrip(), file=out)
    unexpected = []
    for title, cells in table:
        if title == next(iter(EXPECTED_EXCHANGES)):
            print(f"\n  robot federation: {ROBOT} at GET /oauth2/federation/robot/token", file=out)
        shown = []
        expectations = EXPECTED.get(title) or EXPECTED_EXCHANGES[title]
        for (status, detail), expected, heading in zip(cells, expectations, HEADINGS, strict=True):
            mark = "" if status == expected else " (!)"
            if status != expected:
                unexpected.append(f"{title} / {heading}: {status}, expected {expected}")
            shown.append(f"{status} {detail}{mark}"[: WIDTH - 2])
        print((f"  {title:<{first}}" + "".join(f"{cell:<{WIDTH}}" for cell in shown)).rstrip(), file=out)
    print("\naudit events of the 'with install' column (oidc_middleware.audit, JSON):", file=out)
    for event in events:
        print(json.dumps(event), file=out)
    if unexpected:
        print(f"\n{len(unexpected)} cell(s) differ from what the demo expected:", file=out)
        for line in unexpected:
            print(f"  {line}", file=out)
        return 1
    print(
        f"\nevery cell was what the demo expected ({len(table)} requests x 3 Quays, {seconds:.0f} s)",
        file=out,
    )
    return 0
