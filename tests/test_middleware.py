"""OIDCMiddleware (WSGI) and OIDCASGIMiddleware (ASGI), in process: every behaviour on both adapters.

Each test runs twice, once per adapter, against the same loopback identity provider. The wrapped
app records what it saw, so the tests can assert that a refused request never reaches it and that
an accepted one arrives unchanged with the principal.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import structlog
from conftest import CI_CLIENT, OUTSIDER, QUAY_API, RHDH_CLIENT, USER_OID, quay_config
from structlog.testing import capture_logs
from werkzeug.datastructures import Headers
from werkzeug.test import Client

from oidc_middleware import (
    OIDCASGIMiddleware,
    OIDCMiddleware,
    Principal,
    TokenValidator,
    configure_json_logging,
)
from oidc_middleware.testing import LocalIdP, SigningKey, mint

SECRET = "never-log-this-secret"  # CLIENT_SECRET in quay_config


@dataclass
class Reply:
    status: int
    headers: Headers
    body: bytes
    seen: list[dict[str, Any]]  # what the app saw, one entry per call
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Send = Callable[..., Reply]


def echo_wsgi(seen: list[dict[str, Any]]) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(
            {"principal": environ.get("oidc.principal"), "authorization": environ.get("HTTP_AUTHORIZATION")}
        )
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"app"]

    return app


def echo_asgi(seen: list[dict[str, Any]]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        authorization = [v.decode() for k, v in scope.get("headers", []) if k == b"authorization"]
        seen.append({"principal": scope.get("oidc.principal"), "authorization": ", ".join(authorization) or None,
                     "type": scope["type"]})  # fmt: skip
        if scope["type"] == "http":
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
            )
            await send({"type": "http.response.body", "body": b"app"})

    return app


def wsgi_sender(config: Any, validator: TokenValidator | None = None) -> Send:
    seen: list[dict[str, Any]] = []
    client = Client(OIDCMiddleware(echo_wsgi(seen), config, validator=validator))

    def send(path: str, headers: list[tuple[str, str]] | None = None, query: str = "") -> Reply:
        with capture_logs() as events:
            response = client.get(
                path,
                headers=Headers(headers or []),
                query_string=query,
                environ_base={"REMOTE_ADDR": "127.0.0.1"},
            )
        return Reply(response.status_code, response.headers, response.get_data(), seen, events)

    return send


def asgi_sender(config: Any, validator: TokenValidator | None = None) -> Send:
    seen: list[dict[str, Any]] = []
    middleware = OIDCASGIMiddleware(echo_asgi(seen), config, validator=validator)

    def send(path: str, headers: list[tuple[str, str]] | None = None, query: str = "") -> Reply:
        with capture_logs() as events:
            status, raw_headers, body = asyncio.run(asgi_call(middleware, path, headers or [], query))
        return Reply(status, Headers([(k.decode(), v.decode()) for k, v in raw_headers]), body, seen, events)

    return send


async def asgi_call(
    app: Any, path: str, headers: list[tuple[str, str]], query: str
) -> tuple[int, Any, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"localhost")] + [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("localhost", 80),
    }
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], start["headers"], body


SENDERS = {"wsgi": wsgi_sender, "asgi": asgi_sender}


@pytest.fixture(params=["wsgi", "asgi"])
def make_sender(request: pytest.FixtureRequest) -> Callable[..., Send]:
    return SENDERS[request.param]


@pytest.fixture
def send(make_sender: Callable[..., Send], idp: LocalIdP) -> Send:
    return make_sender(quay_config(idp))


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


def basic(user: str, password: str) -> list[tuple[str, str]]:
    return [("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())]


def only_event(reply: Reply) -> dict[str, Any]:
    token_events = [e for e in reply.events if e["event"].startswith("oidc.token.")]
    assert len(token_events) == 1, reply.events
    return token_events[0]


# -- accepted ---------------------------------------------------------------------------------------


def test_an_accepted_token_reaches_the_app_with_the_principal_and_its_header(
    send: Send, idp: LocalIdP
) -> None:
    token = idp.token(version="2.0", client=RHDH_CLIENT, user=USER_OID)
    reply = send("/api/v1/user/", bearer(token))
    assert (reply.status, reply.body) == (200, b"app")
    [seen] = reply.seen
    principal = seen["principal"]
    assert isinstance(principal, Principal)
    assert (principal.provider, principal.object_id, principal.on_behalf_of) == ("azure", USER_OID, True)
    assert seen["authorization"] == f"Bearer {token}"
    event = only_event(reply)
    assert event["event"] == "oidc.token.accepted"
    assert event["log_level"] == "info"
    assert {
        k: event[k] for k in ("provider", "oid", "tid", "azp", "aud", "ver", "on_behalf_of", "credential")
    } == {
        "provider": "azure",
        "oid": USER_OID,
        "tid": idp.tenant,
        "azp": RHDH_CLIENT,
        "aud": QUAY_API,
        "ver": "2.0",
        "on_behalf_of": True,
        "credential": "bearer",
    }
    assert event["method"] == "GET"
    assert event["path"] == "/api/v1/user/"
    assert event["remote_addr"] == "127.0.0.1"
    assert len(event["token_fingerprint"]) == 16
    assert event["token_id"] == json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["uti"]


def test_request_id_is_taken_from_x_request_id(send: Send, idp: LocalIdP) -> None:
    reply = send(
        "/api/v1/user/", [*bearer(idp.token(client=CI_CLIENT, user=USER_OID)), ("X-Request-ID", "req-42")]
    )
    assert only_event(reply)["request_id"] == "req-42"


def test_docker_login_with_oauthtoken_user_is_validated(send: Send, idp: LocalIdP) -> None:
    token = idp.token(client=CI_CLIENT, user=USER_OID)
    reply = send("/v2/auth", basic("$oauthtoken", token), query="service=quay&scope=repository:org/app:pull")
    assert reply.status == 200
    assert reply.seen[0]["principal"].authorized_party == CI_CLIENT
    assert only_event(reply)["credential"] == "docker_login"


def test_robot_federation_is_validated_and_the_robot_is_audited(send: Send, idp: LocalIdP) -> None:
    reply = send(
        "/oauth2/federation/robot/token", basic("org+deployer", idp.token(version="1.0", client=CI_CLIENT))
    )
    assert reply.status == 200
    assert reply.seen[0]["principal"].token_version == "1.0"
    event = only_event(reply)
    assert (event["credential"], event["robot"]) == ("robot_federation", "org+deployer")


def test_robot_federation_applies_the_allowlist_too(send: Send, idp: LocalIdP) -> None:
    """Quay 3.18 skips OIDC_ALLOWED_CLIENTS for robot federation; the middleware does not."""
    reply = send("/oauth2/federation/robot/token", basic("org+deployer", idp.token(client=OUTSIDER)))
    assert reply.status == 401
    assert reply.json["reason"] == "client_not_allowed"
    assert reply.seen == []


# -- app-only tokens (a service principal, no person) ----------------------------------------------


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_an_app_only_token_on_the_api_is_refused_and_pointed_at_robot_federation(
    send: Send, idp: LocalIdP, version: str
) -> None:
    """Quay would make a service principal a Quay user with a person's powers (or refuse it with
    "The e-mail address None is already associated..."): refused before Quay, saying what to use."""
    reply = send("/api/v1/user/", bearer(idp.token(version=version, client=CI_CLIENT)))
    assert (reply.status, reply.json["reason"], reply.json["error"]) == (
        401,
        "app_only_token",
        "invalid_token",
    )
    assert "/oauth2/federation/robot/token" in reply.json["error_description"]
    assert reply.seen == []
    event = only_event(reply)
    # The token was verified: the event carries its verified claims, not "claims_verified: false".
    assert (event["event"], event["reason"], event["ver"]) == (
        "oidc.token.rejected",
        "app_only_token",
        version,
    )
    assert "claims_verified" not in event and event["azp"] == CI_CLIENT


def test_an_app_only_token_at_docker_login_is_refused_in_the_registry_format(
    send: Send, idp: LocalIdP
) -> None:
    reply = send("/v2/auth", basic("$oauthtoken", idp.token(client=CI_CLIENT)), query="service=quay")
    assert reply.status == 401
    error = reply.json["errors"][0]
    assert (error["code"], error["detail"]["reason"]) == ("UNAUTHORIZED", "app_only_token")
    assert reply.seen == []


@pytest.mark.parametrize(
    "claims",
    [{"idtyp": "app", "scp": None}, {"idtyp": None, "scp": None}],
    ids=["idtyp-app", "no-idtyp-sub-equals-oid"],
)
def test_app_only_is_recognised_with_or_without_the_optional_idtyp_claim(
    send: Send, idp: LocalIdP, claims: dict[str, Any]
) -> None:
    token_claims = {**idp.claims(client=CI_CLIENT), **claims}
    reply = send("/api/v1/user/", bearer(idp.token({k: v for k, v in token_claims.items() if v is not None})))
    assert (reply.status, reply.json["reason"]) == (401, "app_only_token")


def test_without_idtyp_only_an_entra_token_with_sub_equal_to_oid_is_app_only(
    send: Send, idp: LocalIdP
) -> None:
    """Other providers (Azure AD B2C among them) may put the object id in every person's sub."""
    claims = {k: v for k, v in idp.claims(client=CI_CLIENT).items() if k not in ("idtyp", "tid")}
    assert send("/api/v1/user/", bearer(idp.token(claims))).status == 200


def test_the_login_callbacks_id_token_is_never_taken_for_an_app_only_token(idp: LocalIdP) -> None:
    from oidc_middleware.decision import check_token_use

    validator = TokenValidator(quay_config(idp))
    claims = {k: v for k, v in idp.claims(client=CI_CLIENT).items() if k != "idtyp"}
    principal = validator.validate(idp.token(claims))
    assert principal.app_only
    assert check_token_use("id_token", principal, validator.config) is None
    assert check_token_use("bearer", principal, validator.config) is not None


def test_a_delegated_token_whose_sub_differs_from_oid_is_a_person(send: Send, idp: LocalIdP) -> None:
    claims = idp.claims(client=CI_CLIENT, user=USER_OID)
    del claims["scp"]  # no scope, but a pairwise sub: still a person
    reply = send("/api/v1/user/", bearer(idp.token(claims)))
    assert reply.status == 200


def test_app_only_tokens_anywhere_accepts_them_on_every_path(
    make_sender: Callable[..., Send], idp: LocalIdP
) -> None:
    send = make_sender({**quay_config(idp), "OIDC_MIDDLEWARE_CONFIG": {"APP_ONLY_TOKENS": "anywhere"}})
    token = idp.token(client=CI_CLIENT)
    assert send("/api/v1/user/", bearer(token)).status == 200
    assert send("/v2/auth", basic("$oauthtoken", token)).status == 200
    assert send("/api/v1/user/", bearer(token)).seen[0]["principal"].app_only is True


# -- rejected ---------------------------------------------------------------------------------------


def test_api_rejection_is_rfc6750_with_exact_challenge_and_body(send: Send, idp: LocalIdP) -> None:
    reply = send(
        "/api/v1/user/",
        bearer(idp.token(audience="https://graph.microsoft.com", client=CI_CLIENT, user=USER_OID)),
    )
    description = "audience 'https://graph.microsoft.com' is not accepted by provider 'azure'"
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == (
        f'Bearer realm="quay.example.com", error="invalid_token", error_description="{description}"'
    )
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.json == {
        "error": "invalid_token",
        "error_description": description,
        "reason": "invalid_audience",
    }
    assert reply.seen == []  # the app was not called
    event = only_event(reply)
    assert (event["event"], event["reason"], event["log_level"]) == (
        "oidc.token.rejected",
        "invalid_audience",
        "warning",
    )
    assert event["claims_verified"] is False
    assert event["description"] == description


def test_registry_rejection_is_in_docker_format_pointing_at_the_token_endpoint(
    send: Send, idp: LocalIdP
) -> None:
    reply = send("/v2/org/app/manifests/latest", bearer(idp.token(client=OUTSIDER)))
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == (
        'Bearer realm="https://quay.example.com/v2/auth",service="quay.example.com"'
    )
    assert reply.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert reply.json == {
        "errors": [
            {
                "code": "UNAUTHORIZED",
                "message": f"client '{OUTSIDER}' is not in OIDC_ALLOWED_CLIENTS",
                "detail": {"reason": "client_not_allowed"},
            }
        ]
    }
    assert reply.seen == []


def test_docker_login_rejection_is_in_docker_format(send: Send, idp: LocalIdP) -> None:
    reply = send(
        "/v2/auth", basic("$oauthtoken", idp.token(client=CI_CLIENT, now=0, lifetime=60, user=USER_OID))
    )
    assert reply.status == 401
    assert reply.json["errors"][0]["detail"] == {"reason": "token_expired"}


def test_without_server_hostname_the_realm_comes_from_the_host_header(
    make_sender: Callable[..., Send], idp: LocalIdP
) -> None:
    config = quay_config(idp)
    del config["SERVER_HOSTNAME"]
    send = make_sender(config)
    reply = send("/v2/", bearer(idp.token(client=OUTSIDER)))
    assert reply.headers["WWW-Authenticate"] == 'Bearer realm="http://localhost/v2/auth",service="localhost"'


def test_keys_unavailable_is_503_with_retry_after(make_sender: Callable[..., Send], idp: LocalIdP) -> None:
    idp.failing = True
    send = make_sender(quay_config(idp))
    api = send("/api/v1/user/", bearer(idp.token(client=CI_CLIENT, user=USER_OID)))
    assert (api.status, api.headers["Retry-After"]) == (503, "5")
    assert api.json["error"] == "temporarily_unavailable"
    assert api.json["reason"] == "keys_unavailable"
    assert "WWW-Authenticate" not in api.headers
    registry = send("/v2/", bearer(idp.token(client=CI_CLIENT, user=USER_OID)))
    assert (registry.status, registry.headers["Retry-After"]) == (503, "5")
    assert registry.json["errors"][0]["code"] == "UNAVAILABLE"


def test_hidden_descriptions_leave_responses_but_stay_in_the_audit_log(
    make_sender: Callable[..., Send], idp: LocalIdP
) -> None:
    config = quay_config(idp)
    config["OIDC_MIDDLEWARE_CONFIG"] = {"HIDE_ERROR_DESCRIPTIONS": True}
    send = make_sender(config)
    api = send("/api/v1/user/", bearer(idp.token(client=OUTSIDER)))
    assert api.headers["WWW-Authenticate"] == 'Bearer realm="quay.example.com", error="invalid_token"'
    assert api.json == {"error": "invalid_token", "reason": "client_not_allowed"}
    registry = send("/v2/", bearer(idp.token(client=OUTSIDER)))
    assert registry.json["errors"][0]["message"] == "authentication required"
    assert OUTSIDER in only_event(registry)["description"]


def test_descriptions_are_made_safe_for_a_quoted_header(send: Send, idp: LocalIdP) -> None:
    claims = idp.claims(client=CI_CLIENT, user=USER_OID)
    claims["aud"] = 'evil", error="none\\ \r\n X-Injected: yes'
    reply = send("/api/v1/user/", bearer(idp.token(claims)))
    challenge = reply.headers["WWW-Authenticate"]
    description = challenge.split('error_description="', 1)[1]
    assert description.endswith('"')
    assert '"' not in description[:-1] and "\\" not in description and "\n" not in description
    assert "X-Injected" not in reply.headers


def test_unknown_issuer_reject_mode_refuses_foreign_jwts(
    make_sender: Callable[..., Send], idp: LocalIdP
) -> None:
    config = quay_config(idp)
    config["OIDC_MIDDLEWARE_CONFIG"] = {"UNKNOWN_ISSUER": "reject"}
    send = make_sender(config)
    reply = send("/v2/", bearer(quay_registry_token()))
    assert reply.status == 401
    assert reply.json["errors"][0]["detail"] == {"reason": "issuer_not_configured"}
    assert reply.seen == []


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        pytest.param(
            [("Authorization", "Bearer a.b.c"), ("Authorization", "Bearer d.e.f")], "", id="two-headers"
        ),
        pytest.param([("Authorization", "Bearer a.b.c")], "access_token=d.e.f", id="header-and-query"),
        pytest.param([("Authorization", "Bearer ")], "", id="empty-bearer"),
    ],
)
def test_more_than_one_credential_is_400_invalid_request(
    send: Send, headers: list[tuple[str, str]], query: str
) -> None:
    reply = send("/api/v1/user/", headers, query=query)
    assert reply.status == 400
    assert reply.headers["WWW-Authenticate"].startswith(
        'Bearer realm="quay.example.com", error="invalid_request"'
    )
    assert reply.json["error"] == "invalid_request"
    assert reply.seen == []
    assert only_event(reply)["reason"] == "invalid_request"


# -- passed through untouched -------------------------------------------------------------------------


def quay_registry_token() -> str:
    """A registry JWT as Quay mints it: RS256, iss 'quay', aud the hostname."""
    claims = {"iss": "quay", "aud": "quay.example.com", "sub": "alice", "exp": 4_000_000_000, "nbf": 0}
    return mint(claims, QUAY_KEY)


QUAY_KEY = SigningKey.rsa("quay-service-key")


@pytest.mark.parametrize(
    ("path", "headers", "event_reason"),
    [
        pytest.param("/api/v1/user/", [], None, id="no-credentials"),
        pytest.param(
            "/api/v1/user/", bearer("quay-oauth-token-3f9a0c7d"), "opaque_token", id="opaque-bearer"
        ),
        pytest.param("/api/v1/user/", basic("alice", "password"), None, id="basic-password-on-api"),
        pytest.param("/v2/auth", basic("alice", "password"), None, id="docker-login-with-password"),
        pytest.param(
            "/v2/auth", basic("$oauthtoken", "quay-oauth-token"), "opaque_token", id="docker-login-opaque"
        ),
        pytest.param(
            "/oauth2/federation/robot/token",
            basic("org+bot", "robot-password"),
            "opaque_token",
            id="robot-password",
        ),
        pytest.param("/v2/", bearer(quay_registry_token()), "issuer_not_configured", id="quay-registry-jwt"),
        pytest.param("/keys/service", bearer(quay_registry_token()), None, id="unprotected-path"),
        pytest.param("/secscan/notify", [("Authorization", "Bearer x.y.z")], None, id="clair-hs256-path"),
        pytest.param("/", [("Authorization", "Negotiate abc")], None, id="other-scheme"),
    ],
)
def test_requests_that_are_not_ours_pass_untouched_without_principal(
    send: Send, path: str, headers: list[tuple[str, str]], event_reason: str | None
) -> None:
    reply = send(path, headers)
    assert (reply.status, reply.body) == (200, b"app")
    [seen] = reply.seen
    assert seen["principal"] is None
    assert seen["authorization"] == (headers[0][1] if headers else None)
    token_events = [e for e in reply.events if e["event"].startswith("oidc.token.")]
    if event_reason is None:
        assert token_events == []
    else:
        assert [(e["event"], e["reason"]) for e in token_events] == [("oidc.token.passthrough", event_reason)]


def test_protected_paths_can_be_configured(make_sender: Callable[..., Send], idp: LocalIdP) -> None:
    config = quay_config(idp)
    config["OIDC_MIDDLEWARE_CONFIG"] = {"PROTECTED_PATHS": ["/api/v1/"]}
    send = make_sender(config)
    outsider = bearer(idp.token(client=OUTSIDER))
    assert send("/api/v1/user/", outsider).status == 401
    assert send("/v2/", outsider).status == 200  # no longer examined
    # The JWT-in-Basic routes of Quay are always examined.
    assert send("/v2/auth", basic("$oauthtoken", idp.token(client=OUTSIDER))).status == 401


def test_a_principal_smuggled_in_before_the_middleware_is_dropped(idp: LocalIdP) -> None:
    seen: list[dict[str, Any]] = []
    middleware = OIDCMiddleware(echo_wsgi(seen), quay_config(idp))
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/v1/user/", "oidc.principal": "forged"}
    middleware(environ, lambda status, headers: None)
    assert seen[0]["principal"] is None


# -- audit hygiene -------------------------------------------------------------------------------------


def test_no_event_ever_holds_a_token_a_signature_or_the_client_secret(
    send: Send, idp: LocalIdP, attacker_key: SigningKey
) -> None:
    tokens = [
        idp.token(client=CI_CLIENT, user=USER_OID),
        idp.token(client=OUTSIDER),
        idp.token(key=attacker_key, client=CI_CLIENT, user=USER_OID),
        quay_registry_token(),
        "quay-oauth-token-3f9a0c7d",
    ]
    everything = []
    for token in tokens:
        for path, headers in (("/api/v1/user/", bearer(token)), ("/v2/auth", basic("$oauthtoken", token))):
            everything.extend(send(path, headers).events)
    text = json.dumps(everything, default=str)
    assert len(everything) >= 10
    for token in tokens:
        assert token not in text
        for part in token.split(".")[1:]:
            assert part not in text
    assert SECRET not in text


def test_configure_json_logging_writes_one_json_line_per_decision_timestamp_first(idp: LocalIdP) -> None:
    stream = io.StringIO()
    configure_json_logging(stream)
    try:
        client = Client(OIDCMiddleware(echo_wsgi([]), quay_config(idp)))
        accepted = idp.token(client=CI_CLIENT, user=USER_OID)
        for _ in range(3):  # verified, verified and cached, answered from the cache
            client.get(
                "/api/v1/user/", headers=Headers(bearer(accepted)), environ_base={"REMOTE_ADDR": "10.0.0.9"}
            )
        client.get("/api/v1/user/", headers=Headers(bearer(idp.token(client=OUTSIDER))))
        structlog.get_logger("app").info("app.event", timestamp="not a time")
    finally:
        structlog.reset_defaults()
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [event["event"] for event in events] == [
        "oidc.keys.fetched",
        *["oidc.token.accepted"] * 3,
        "oidc.token.rejected",
        "app.event",
    ]
    first, rejected, other = events[1], events[4], events[5]
    assert other["timestamp"] != "not a time"  # written by the logger, never by the caller
    assert list(first)[:4] == ["timestamp", "level", "event", "method"]
    assert (first["event"], first["level"], first["remote_addr"]) == (
        "oidc.token.accepted",
        "info",
        "10.0.0.9",
    )
    expected = hashlib.sha256(accepted.encode()).hexdigest()[:16]
    assert [event["token_fingerprint"] for event in events[1:4]] == [expected] * 3
    assert first["aud"] == QUAY_API and first["on_behalf_of"] is True  # a CLI acting for a person
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first["timestamp"])
    assert (rejected["level"], rejected["reason"]) == ("warning", "client_not_allowed")


# -- ASGI specifics ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope_type", ["lifespan", "websocket"])
def test_asgi_lifespan_and_websocket_pass_through_untouched(idp: LocalIdP, scope_type: str) -> None:
    seen: list[dict[str, Any]] = []
    middleware = OIDCASGIMiddleware(echo_asgi(seen), quay_config(idp))
    scope = {
        "type": scope_type,
        "headers": bearer(idp.token(client=OUTSIDER)) and [(b"authorization", b"Bearer x.y.z")],
    }

    async def noop_receive() -> dict[str, Any]:
        return {}

    async def noop_send(message: dict[str, Any]) -> None:
        raise AssertionError("the middleware must not answer")

    asyncio.run(middleware(scope, noop_receive, noop_send))
    assert seen == [{"principal": None, "authorization": "Bearer x.y.z", "type": scope_type}]


class RecordingSession(requests.Session):
    """A real requests session that notes which thread each fetch ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[threading.Thread] = []

    def get(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.threads.append(threading.current_thread())
        return super().get(*args, **kwargs)


def test_asgi_never_fetches_keys_on_the_event_loop(idp: LocalIdP) -> None:
    session = RecordingSession()
    validator = TokenValidator(quay_config(idp), session=session)
    send = asgi_sender(validator.config, validator=validator)
    assert (
        send("/api/v1/user/", bearer(idp.token(client=CI_CLIENT, user=USER_OID))).status == 200
    )  # cold: fetches
    assert (
        send("/api/v1/user/", bearer(idp.token(client=CI_CLIENT, user=USER_OID))).status == 200
    )  # warm: on the loop
    assert len(session.threads) == 2  # discovery and keys, once
    assert all(thread is not threading.main_thread() for thread in session.threads)
    # The cold request went to a worker thread once; it is still one cache miss, not two.
    assert validator.stats()["token_cache"]["misses"] == 2


def test_one_middleware_cannot_get_two_configurations(idp: LocalIdP) -> None:
    validator = TokenValidator(quay_config(idp))
    other = quay_config(idp)
    other["OIDC_MIDDLEWARE_CONFIG"] = {"UNKNOWN_ISSUER": "reject"}
    with pytest.raises(ValueError, match=r"differs from validator\.config"):
        OIDCMiddleware(echo_wsgi([]), other, validator=validator)
    assert OIDCMiddleware(echo_wsgi([]), None, validator=validator).validator is validator
    assert OIDCASGIMiddleware(echo_asgi([]), validator.config, validator=validator).validator is validator


def test_prefetch_learns_the_issuers_of_providers_configured_without_one(idp: LocalIdP) -> None:
    validator = TokenValidator(quay_config(idp, OIDC_ISSUERS=None))
    assert validator.prefetch()["ready"] is True
    # Known now: an event loop can decide without a worker thread.
    principal = validator.validate(idp.token(client=CI_CLIENT, user=USER_OID), may_fetch=False)
    assert principal.issuer == idp.v2_issuer


# -- found in review -------------------------------------------------------------------------------


def quay_basic_parser(header: str) -> tuple[str, str] | None:
    """How Quay reads Basic credentials: split on spaces, a plain (lenient) b64decode."""
    parts = [part.strip() for part in header.split(" ") if part]
    if len(parts) != 2 or parts[0].lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(parts[1]).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


@pytest.mark.parametrize(
    "mangle",
    [lambda b64: b64[:4] + "!" + b64[4:], lambda b64: b64.rstrip("=") + "==*", lambda b64: " " + b64],
    ids=["stray-character", "junk-after-padding", "extra-space"],
)
def test_basic_credentials_quay_can_read_are_examined_too(send: Send, idp: LocalIdP, mangle: Any) -> None:
    token = idp.token(client=OUTSIDER)
    encoded = mangle(base64.b64encode(f"myorg+robot:{token}".encode()).decode())
    header = f"Basic {encoded}"
    assert quay_basic_parser(header) in (("myorg+robot", token), None)
    reply = send("/oauth2/federation/robot/token", [("Authorization", header)])
    if quay_basic_parser(header) is not None:  # Quay would read the token: so must the middleware
        assert reply.status == 401
        assert reply.json["reason"] == "client_not_allowed"
        assert reply.seen == []


def test_docker_login_is_examined_whatever_the_method(idp: LocalIdP) -> None:
    seen: list[dict[str, Any]] = []
    client = Client(OIDCMiddleware(echo_wsgi(seen), quay_config(idp)))
    credentials = basic("$oauthtoken", idp.token(client=OUTSIDER))
    for method in ("HEAD", "POST"):
        assert client.open("/v2/auth", method=method, headers=Headers(credentials)).status_code == 401
    assert seen == []


def test_a_forged_scheme_cannot_rewrite_the_registry_challenge(idp: LocalIdP) -> None:
    config = quay_config(idp)
    del config["SERVER_HOSTNAME"]
    client = Client(OIDCMiddleware(echo_wsgi([]), config))
    response = client.get(
        "/v2/",
        headers=Headers(bearer(idp.token(client=OUTSIDER))),
        environ_overrides={"wsgi.url_scheme": 'https://evil.example/v2/auth",service="x",x="'},
    )
    assert (
        response.headers["WWW-Authenticate"] == 'Bearer realm="https://localhost/v2/auth",service="localhost"'
    )


def test_the_principal_claims_are_read_only_all_the_way_down(send: Send, idp: LocalIdP) -> None:
    claims = idp.claims(client=CI_CLIENT, user=USER_OID)
    claims["groups"] = ["a", {"nested": ["b"]}]
    reply = send("/api/v1/user/", bearer(idp.token(claims)))
    principal = reply.seen[0]["principal"]
    assert principal.claims["groups"] == ("a", {"nested": ("b",)})
    with pytest.raises(TypeError):
        principal.claims["groups"][1]["nested"] += ("c",)  # type: ignore[index]


def test_passwords_in_basic_credentials_are_never_hashed_into_the_log(send: Send) -> None:
    reply = send("/oauth2/federation/robot/token", basic("org+bot", "weak-password"))
    event = only_event(reply)
    assert (event["reason"], "token_fingerprint" in event) == ("opaque_token", False)
