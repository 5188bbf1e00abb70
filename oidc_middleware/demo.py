"""``oidc-middleware demo``: the example Quay-shaped app behind the middleware, over real HTTP.

A self-contained Entra-shaped provider runs on loopback (generated keys, discovery, JWKS); the
example app of ``examples/quay_wsgi.py`` runs behind :class:`OIDCMiddleware` in a real threaded
WSGI server on loopback; real HTTP requests carry the tokens a Quay deployment meets. The output
is a table (request, status, decision, reason) and then the audit events, one JSON line each.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import requests
from werkzeug.serving import make_server

from .audit import configure_json_logging
from .testing import LocalIdP, SigningKey, mint
from .validator import TokenValidator

QUAY_CLIENT_ID = "5f0c9a1e-0000-4000-8000-00000000c1a1"
RHDH_CLIENT = "2b7e4c3d-0000-4000-8000-0000000d0b0b"
CI_CLIENT = "9a8b7c6d-0000-4000-8000-0000000000c1"
CLI_CLIENT = "c0ffee00-1111-4222-8333-444455556666"
OUTSIDER = "0dd0dd0d-0000-4000-8000-0000000bad00"
USER = "6e5d4c3b-0000-4000-8000-00000000a11c"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "quay_wsgi.py"


@dataclass(frozen=True)
class Call:
    title: str
    path: str
    expected_status: int
    headers: Callable[[LocalIdP], dict[str, str]] = field(default=lambda idp: {})


def bearer(token: Callable[[LocalIdP], str]) -> Callable[[LocalIdP], dict[str, str]]:
    return lambda idp: {"Authorization": f"Bearer {token(idp)}"}


def basic(user: str, password: Callable[[LocalIdP], str]) -> Callable[[LocalIdP], dict[str, str]]:
    def headers(idp: LocalIdP) -> dict[str, str]:
        pair = base64.b64encode(f"{user}:{password(idp)}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}

    return headers


def calls(quay_key: SigningKey) -> list[Call]:
    def quay_registry_token(idp: LocalIdP) -> str:
        now = int(time.time())
        return mint({"iss": "quay", "aud": "127.0.0.1", "sub": "alice", "exp": now + 300}, quay_key)

    # aud as Entra sets it for Quay's API: the App ID URI in v1.0, Quay's client id in v2.0.
    def aud(version: str) -> str:
        return "api://quay-api" if version == "1.0" else QUAY_CLIENT_ID

    def expired(idp: LocalIdP) -> str:
        return idp.token(client=CLI_CLIENT, user=USER, audience=aud("2.0"), now=time.time() - 7200)

    def obo(client: str) -> Callable[[LocalIdP], str]:
        return lambda idp: idp.token(version="2.0", client=client, user=USER, audience=aud("2.0"))

    def person(version: str) -> Callable[[LocalIdP], str]:
        return lambda idp: idp.token(version=version, client=CLI_CLIENT, user=USER, audience=aud(version))

    def service_principal(idp: LocalIdP) -> str:
        return idp.token(version="2.0", client=CI_CLIENT, audience=aud("2.0"))

    return [
        Call("v1.0 token of a person (CLI)", "/api/v1/user/", 200, bearer(person("1.0"))),
        Call("v2.0 token of a person (CLI)", "/api/v1/user/", 200, bearer(person("2.0"))),
        Call("OBO token from Developer Hub (allowed)", "/api/v1/user/", 200, bearer(obo(RHDH_CLIENT))),
        Call("OBO token from an app not allowed", "/api/v1/user/", 401, bearer(obo(OUTSIDER))),
        Call("app-only token of a CI service principal", "/api/v1/user/", 401,
             bearer(service_principal)),
        Call("expired token", "/api/v1/user/", 401, bearer(expired)),
        Call("token for another API (Microsoft Graph)", "/api/v1/user/", 401,
             bearer(lambda idp: idp.token(audience="https://graph.microsoft.com", client=CLI_CLIENT, user=USER))),
        Call("Quay's own OAuth token (opaque)", "/api/v1/user/", 200,
             bearer(lambda idp: "quay-oauth-3f9a0c7d2b1e4a5f")),
        Call("Quay's own registry token (iss quay)", "/v2/", 200, bearer(quay_registry_token)),
        Call("expired token on the registry", "/v2/", 401, bearer(expired)),
        Call("docker login, $oauthtoken + v2.0 token", "/v2/auth?service=quay&scope=repository:org/app:pull", 200,
             basic("$oauthtoken", person("2.0"))),
        Call("robot federation, CI service principal", "/oauth2/federation/robot/token", 200,
             basic("org+deployer", service_principal)),
        Call("no credentials", "/api/v1/user/", 401),
        Call("token in header and query", "/api/v1/user/?access_token=x", 400, bearer(person("2.0"))),
    ]  # fmt: skip


def run() -> int:
    example = _load_example()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the table says what the access log would
    log = io.StringIO()
    configure_json_logging(log)
    with LocalIdP(keys=[SigningKey.rsa("entra-key-1")]) as idp:
        config = {
            "AZURE_LOGIN_CONFIG": {
                "OIDC_SERVER": idp.v2_server,
                "CLIENT_ID": QUAY_CLIENT_ID,
                "CLIENT_SECRET": "not-shown-anywhere",
                "OIDC_ISSUERS": [idp.v1_issuer, idp.v2_issuer],
                "OIDC_AUDIENCES": ["api://quay-api"],
                "OIDC_ALLOWED_CLIENTS": [RHDH_CLIENT, CI_CLIENT, CLI_CLIENT],
            }
        }
        app = example.wrap(example.create_app(), TokenValidator(config))
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}"
        print(f"Entra-shaped provider  {idp.base_url}  (v1.0 and v2.0 issuers, one key set)")
        print(f"Quay-shaped app        {base}  (examples/quay_wsgi.py behind OIDCMiddleware)\n")
        failures = 0
        rows = []
        try:
            with requests.Session() as http:
                for number, call in enumerate(calls(SigningKey.rsa("quay-service-key")), start=1):
                    request_id = f"demo-{number:02d}"
                    headers = {**call.headers(idp), "X-Request-ID": request_id}
                    response = http.get(base + call.path, headers=headers, timeout=10)
                    decision, reason = _decision(log.getvalue(), request_id)
                    ok = response.status_code == call.expected_status
                    failures += not ok
                    path = call.path.split("?")[0]
                    rows.append(
                        (
                            " " if ok else "!",
                            call.title,
                            f"GET {path}",
                            response.status_code,
                            decision,
                            reason,
                        )
                    )
        finally:
            server.shutdown()
    print(f"  {'request':<42} {'':<36} {'status':<7} {'decision':<12} reason")
    for mark, title, request, status, decision, reason in rows:
        print(f"{mark} {title:<42} {request:<36} {status:<7} {decision:<12} {reason}")
    print("\naudit events (oidc_middleware.audit, JSON):")
    print(log.getvalue().rstrip())
    if failures:
        print(f"\n{failures} request(s) got an unexpected status")
        return 1
    print("\nevery request got the expected status")
    return 0


def _decision(log: str, request_id: str) -> tuple[str, str]:
    """The decision and reason the audit log recorded for one request, '-' when it logged none."""
    for line in reversed(log.splitlines()):
        event: dict[str, Any] = json.loads(line)
        if event.get("request_id") == request_id and event.get("event", "").startswith("oidc.token."):
            return event["event"].removeprefix("oidc.token."), event.get("reason") or ""
    return "-", "not examined (no credential)"


def _load_example() -> ModuleType:
    if not EXAMPLE.exists():
        raise SystemExit("oidc-middleware demo runs from a source checkout (it needs examples/quay_wsgi.py)")
    spec = importlib.util.spec_from_file_location("quay_wsgi_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
