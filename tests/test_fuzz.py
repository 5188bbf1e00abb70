"""Hostile input through the WSGI middleware: thousands of mutations of a valid token.

Never a 500, never an exception out of the middleware, and never a principal for a token whose
header or payload differs from the one the provider signed. The mutations are seeded, so a
failure is reproducible; the count is printed for the record.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import pytest
from conftest import CI_CLIENT, USER_OID, quay_config
from structlog.testing import capture_logs

from oidc_middleware import OIDCMiddleware, TokenValidator
from oidc_middleware.base64url import decode, encode
from oidc_middleware.testing import LocalIdP

MUTATIONS = 20000
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \t\x00é€"


def text_mutation(rng: random.Random, token: str) -> str:
    chars = list(token)
    for _ in range(rng.randint(1, 4)):
        position = rng.randrange(len(chars) + 1)
        action = rng.choice(("replace", "insert", "delete", "swap"))
        if action == "replace" and position < len(chars):
            chars[position] = rng.choice(ALPHABET)
        elif action == "insert":
            chars.insert(position, rng.choice(ALPHABET))
        elif action == "delete" and position < len(chars):
            del chars[position]
        elif action == "swap" and len(chars) > 2:
            other = rng.randrange(len(chars))
            chars[position % len(chars)], chars[other] = chars[other], chars[position % len(chars)]
    return "".join(chars)


HOSTILE_VALUES: list[Any] = [
    None, True, False, 0, -1, 10**30, 1e308, "", "x" * 5000, [], {}, [[[[[]]]]], {"a": {"b": {"c": {}}}},
    "1790003600", ["api://quay-api"], "api://quay-api ", "API://QUAY-API", "none", "HS256", "RS256 ",
]  # fmt: skip


def json_mutation(rng: random.Random, token: str) -> str:
    """Change the header or payload JSON, re-encode it properly, keep the original signature."""
    segments = token.split(".")
    which = rng.choice((0, 1))
    document = json.loads(decode(segments[which]))
    action = rng.choice(("set", "delete", "add"))
    names = sorted(document)
    if action == "set" and names:
        document[rng.choice(names)] = rng.choice(HOSTILE_VALUES)
    elif action == "delete" and names:
        del document[rng.choice(names)]
    else:
        document[rng.choice(("crit", "jku", "jwk", "x5u", "nonce", "zip", "extra"))] = rng.choice(
            HOSTILE_VALUES
        )
    segments[which] = encode(json.dumps(document).encode())
    return ".".join(segments)


def signature_mutation(rng: random.Random, token: str) -> str:
    head, body, signature = token.split(".")
    raw = bytearray(decode(signature))
    action = rng.choice(("flip", "truncate", "extend", "zero"))
    if action == "flip":
        raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    elif action == "truncate":
        del raw[rng.randrange(len(raw)) :]
    elif action == "extend":
        raw += bytes([rng.randrange(256)])
    else:
        raw = bytearray(len(raw))
    return f"{head}.{body}.{encode(bytes(raw))}"


def call(middleware: OIDCMiddleware, path: str, authorization: str) -> tuple[str, Any]:
    seen: list[Any] = []
    statuses: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ.get("oidc.principal"))
        start_response("200 OK", [])
        return [b""]

    middleware.app = app
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "HTTP_HOST": "quay.example.com",
               "wsgi.url_scheme": "https", "REMOTE_ADDR": "203.0.113.9", "HTTP_AUTHORIZATION": authorization}  # fmt: skip
    b"".join(middleware(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    return statuses[0], (seen[0] if seen else None)


def test_thousands_of_mutations_never_crash_and_never_yield_a_principal(
    idp: LocalIdP, capsys: pytest.CaptureFixture[str]
) -> None:
    middleware = OIDCMiddleware(lambda e, s: [], quay_config(idp))
    original = idp.token(client=CI_CLIENT, user=USER_OID, lifetime=24 * 3600)
    signed_part = original.rsplit(".", 1)[0]
    status, principal = call(middleware, "/api/v1/user/", f"Bearer {original}")
    assert status == "200 OK" and principal is not None  # the unmutated token is accepted
    rng = random.Random(20261128)
    mutators = (text_mutation, json_mutation, signature_mutation)
    outcomes: dict[str, int] = {}
    tried = 0
    with capture_logs() as events:
        while tried < MUTATIONS:
            mutated = rng.choice(mutators)(rng, original)
            if mutated == original:
                continue
            tried += 1
            if tried % 4 == 0:
                pair = base64.b64encode(f"$oauthtoken:{mutated}".encode("utf-8", "replace")).decode()
                status, principal = call(middleware, "/v2/auth", f"Basic {pair}")
            else:
                status, principal = call(middleware, "/api/v1/user/", f"Bearer {mutated}")
            assert status.split()[0] in {"200", "400", "401"}, (status, mutated)
            if principal is not None:
                # Only a change outside what the signature covers could still be accepted.
                assert mutated.strip().rsplit(".", 1)[0] == signed_part, mutated
            outcomes[status] = outcomes.get(status, 0) + 1
    assert not [e for e in events if e["event"] == "oidc.token.internal_error"]
    reasons = sorted({e.get("reason") for e in events if e["event"] == "oidc.token.rejected"})
    with capsys.disabled():
        print(f"\n  fuzz: {tried} mutations, responses {outcomes}, rejection reasons {reasons}")
    assert tried == MUTATIONS
    assert {"malformed_token", "invalid_signature"} <= set(reasons)


def test_an_unexpected_error_in_validation_fails_closed_and_is_logged(idp: LocalIdP) -> None:
    class Broken(TokenValidator):  # stands in for a bug: nothing real raises this
        def validate(self, token: str, *, may_fetch: bool = True, count: bool = True) -> Any:
            raise RuntimeError("a bug")

    middleware = OIDCMiddleware(lambda e, s: [], quay_config(idp), validator=Broken(quay_config(idp)))
    with capture_logs() as events:
        status, principal = call(middleware, "/api/v1/user/", f"Bearer {idp.token(client=CI_CLIENT)}")
    assert status == "401 Unauthorized"
    assert principal is None
    [error] = [e for e in events if e["event"] == "oidc.token.internal_error"]
    assert error["error_type"] == "RuntimeError"
    assert error["log_level"] == "error"
