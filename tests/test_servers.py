"""Both adapters behind real servers on loopback, spoken to over real HTTP with requests.

WSGI: the example Quay-shaped Flask app (examples/quay_wsgi.py) in Werkzeug's threaded server.
ASGI: the example plain ASGI app (examples/asgi_app.py) in uvicorn.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import CI_CLIENT, OUTSIDER, RHDH_CLIENT, USER_OID, load_example, quay_config, serve_asgi
from werkzeug.serving import make_server

from oidc_middleware import TokenValidator
from oidc_middleware.testing import LocalIdP


@pytest.fixture
def wsgi_server(idp: LocalIdP) -> Iterator[str]:
    example = load_example("quay_wsgi")
    app = example.wrap(example.create_app(), TokenValidator(quay_config(idp)))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def asgi_server(idp: LocalIdP) -> Iterator[str]:
    with serve_asgi(load_example("asgi_app").create_app(quay_config(idp))) as url:
        yield url


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_wsgi_server_accepts_v1_v2_and_obo_tokens(wsgi_server: str, idp: LocalIdP) -> None:
    for version in ("1.0", "2.0"):
        reply = requests.get(f"{wsgi_server}/api/v1/user/", headers=auth(idp.token(version=version, client=CI_CLIENT, user=USER_OID)),
                             timeout=10)  # fmt: skip
        assert reply.status_code == 200
        assert reply.json()["token_version"] == version
    obo = idp.token(client=RHDH_CLIENT, user=USER_OID, scopes="repo:read")
    body = requests.get(f"{wsgi_server}/api/v1/user/", headers=auth(obo), timeout=10).json()
    assert (body["on_behalf_of"], body["object_id"], body["scopes"]) == (True, USER_OID, ["repo:read"])


def test_wsgi_server_rejects_with_exact_headers(wsgi_server: str, idp: LocalIdP) -> None:
    api = requests.get(f"{wsgi_server}/api/v1/user/", headers=auth(idp.token(client=OUTSIDER)), timeout=10)
    assert api.status_code == 401
    assert api.headers["WWW-Authenticate"] == (
        'Bearer realm="quay.example.com", error="invalid_token", '
        f"error_description=\"client '{OUTSIDER}' is not in OIDC_ALLOWED_CLIENTS\""
    )
    assert api.json()["reason"] == "client_not_allowed"
    registry = requests.get(f"{wsgi_server}/v2/", headers=auth(idp.token(client=OUTSIDER)), timeout=10)
    assert registry.status_code == 401
    assert (
        registry.headers["WWW-Authenticate"]
        == 'Bearer realm="https://quay.example.com/v2/auth",service="quay.example.com"'
    )
    assert registry.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_wsgi_server_docker_login_and_robot_federation(wsgi_server: str, idp: LocalIdP) -> None:
    token = idp.token(client=CI_CLIENT, user=USER_OID)
    login = requests.get(
        f"{wsgi_server}/v2/auth", auth=("$oauthtoken", token), params={"service": "quay"}, timeout=10
    )
    assert login.status_code == 200
    assert login.json()["identity"]["client"] == CI_CLIENT
    robot = requests.get(f"{wsgi_server}/oauth2/federation/robot/token", auth=("org+bot", token), timeout=10)
    assert (robot.status_code, robot.json()["robot"]) == (200, "org+bot")
    wrong = requests.get(
        f"{wsgi_server}/v2/auth", auth=("$oauthtoken", idp.token(client=OUTSIDER)), timeout=10
    )
    assert wrong.status_code == 401
    assert wrong.json()["errors"][0]["detail"]["reason"] == "client_not_allowed"


def test_wsgi_server_passes_quay_own_tokens_and_anonymous_requests(wsgi_server: str) -> None:
    opaque = requests.get(f"{wsgi_server}/api/v1/user/", headers=auth("quay-oauth-token"), timeout=10)
    assert opaque.json()["authenticated_by"] is None  # Quay's to check, not the middleware's
    anonymous = requests.get(f"{wsgi_server}/api/v1/user/", timeout=10)
    assert anonymous.status_code == 401
    assert "WWW-Authenticate" not in anonymous.headers  # the app's own answer, not the middleware's


def test_asgi_server_accepts_and_rejects(asgi_server: str, idp: LocalIdP) -> None:
    accepted = requests.get(
        f"{asgi_server}/anything", headers=auth(idp.token(client=CI_CLIENT, user=USER_OID)), timeout=10
    )
    # Plain ASGI example: every path is the app, but only /api/ and /v2/ are examined.
    assert accepted.json() == {"principal": None}
    accepted = requests.get(f"{asgi_server}/api/v1/user/", headers=auth(idp.token(version="1.0", client=CI_CLIENT, user=USER_OID)),
                            timeout=10)  # fmt: skip
    assert accepted.json()["principal"]["client"] == CI_CLIENT
    rejected = requests.get(f"{asgi_server}/v2/", headers=auth(idp.token(client=OUTSIDER)), timeout=10)
    assert rejected.status_code == 401
    assert (
        rejected.headers["WWW-Authenticate"]
        == 'Bearer realm="https://quay.example.com/v2/auth",service="quay.example.com"'
    )
    body: dict[str, Any] = rejected.json()
    assert body["errors"][0]["detail"] == {"reason": "client_not_allowed"}


def test_asgi_server_docker_login(asgi_server: str, idp: LocalIdP) -> None:
    pair = base64.b64encode(f"$oauthtoken:{idp.token(client=CI_CLIENT, user=USER_OID)}".encode()).decode()
    reply = requests.get(f"{asgi_server}/v2/auth", headers={"Authorization": f"Basic {pair}"}, timeout=10)
    assert reply.json()["principal"]["client"] == CI_CLIENT
