"""TokenValidator.validate: Entra v1/v2 tokens, On-Behalf-Of, and one row per rejection reason."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import pickle
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import CI_CLIENT, OUTSIDER, QUAY_API, QUAY_CLIENT_ID, RHDH_CLIENT, USER_OID, quay_config
from cryptography.hazmat.primitives import serialization
from freezegun import freeze_time

from oidc_middleware import REASONS, Principal, TokenRejected, TokenValidator
from oidc_middleware.base64url import encode as b64
from oidc_middleware.errors import APP_ONLY_TOKEN, ROBOT_REASONS
from oidc_middleware.testing import LocalIdP, SigningKey, mint

NOW = 1_790_000_000  # 2026-09-21T12:53:20Z


def at(timestamp: float) -> datetime:
    """freezegun takes datetimes, not Unix times."""
    return datetime.fromtimestamp(timestamp, tz=UTC)


def reject(validator: TokenValidator, token: str) -> TokenRejected:
    with pytest.raises(TokenRejected) as caught:
        validator.validate(token)
    return caught.value


def unsigned(header: dict[str, Any], claims: dict[str, Any] | bytes, signature: bytes = b"sig") -> str:
    body = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    return f"{b64(json.dumps(header).encode())}.{b64(body)}.{b64(signature)}"


# -- accepted tokens ---------------------------------------------------------------------------


def test_v1_client_credentials_token_is_accepted_with_appid_as_authorized_party(
    validator: TokenValidator, idp: LocalIdP
) -> None:
    principal = validator.validate(idp.token(version="1.0", client=CI_CLIENT, roles=["Repo.Push"]))
    assert principal.provider == "azure"
    assert principal.issuer == idp.v1_issuer
    assert principal.token_version == "1.0"
    assert principal.authorized_party == CI_CLIENT
    assert principal.audience == QUAY_API
    assert principal.roles == ("Repo.Push",)
    assert principal.scopes == ()
    assert principal.subject == principal.object_id
    assert principal.tenant_id == idp.tenant
    assert principal.on_behalf_of is False


def test_v2_client_credentials_token_is_accepted_with_azp_as_authorized_party(
    validator: TokenValidator, idp: LocalIdP
) -> None:
    principal = validator.validate(idp.token(version="2.0", client=CI_CLIENT))
    assert (principal.issuer, principal.token_version, principal.authorized_party) == (
        idp.v2_issuer,
        "2.0",
        CI_CLIENT,
    )


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_on_behalf_of_token_from_developer_hub_is_accepted_with_delegated_scopes(
    validator: TokenValidator, idp: LocalIdP, version: str
) -> None:
    token = idp.token(version=version, client=RHDH_CLIENT, user=USER_OID, scopes="repo:read repo:write")
    principal = validator.validate(token)
    assert principal.on_behalf_of is True
    assert principal.scopes == ("repo:read", "repo:write")
    assert principal.object_id == USER_OID
    assert principal.authorized_party == RHDH_CLIENT
    assert principal.audience == QUAY_API


def test_an_id_token_issued_to_quay_itself_is_accepted_and_not_on_behalf_of(
    validator: TokenValidator, idp: LocalIdP
) -> None:
    claims = idp.claims(audience=QUAY_CLIENT_ID, client=QUAY_CLIENT_ID, user=USER_OID)
    principal = validator.validate(idp.token(claims))
    assert principal.audience == QUAY_CLIENT_ID
    assert principal.on_behalf_of is False


def test_a_token_naming_no_party_passes_the_allowlist_only_when_addressed_to_quay(
    validator: TokenValidator, idp: LocalIdP
) -> None:
    to_quay = idp.claims(audience=QUAY_CLIENT_ID)
    del to_quay["azp"]
    assert validator.validate(idp.token(to_quay)).authorized_party is None
    to_api = idp.claims(audience=QUAY_API)
    del to_api["azp"]
    assert reject(validator, idp.token(to_api)).reason == "client_not_allowed"


def test_without_an_allowlist_any_client_is_accepted(idp: LocalIdP) -> None:
    validator = TokenValidator(quay_config(idp, OIDC_ALLOWED_CLIENTS=None))
    assert validator.validate(idp.token(client=OUTSIDER)).authorized_party == OUTSIDER


def test_audience_lists_are_accepted_when_one_entry_matches(validator: TokenValidator, idp: LocalIdP) -> None:
    claims = idp.claims(client=CI_CLIENT)
    claims["aud"] = ["https://graph.microsoft.com", QUAY_API]
    assert validator.validate(idp.token(claims)).audience == QUAY_API


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: SigningKey.ec("ec-1", curve="P-256"),
        lambda: SigningKey.ec("ec-3", curve="P-384"),
        lambda: SigningKey.rsa("ps-1", alg="PS256"),
        lambda: SigningKey.rsa("rs512", alg="RS512"),
    ],
    ids=["ES256", "ES384", "PS256", "RS512"],
)
def test_other_asymmetric_algorithms_are_accepted(idp: LocalIdP, make_key: Callable[[], SigningKey]) -> None:
    key = make_key()
    idp.keys.append(key)
    validator = TokenValidator(quay_config(idp))
    assert validator.validate(idp.token(key=key, client=CI_CLIENT)).provider == "azure"


def test_the_principal_is_frozen_and_its_claims_read_only(validator: TokenValidator, idp: LocalIdP) -> None:
    token = idp.token(client=CI_CLIENT)
    principal = validator.validate(token)
    with pytest.raises(AttributeError):
        principal.subject = "someone else"  # type: ignore[misc]
    with pytest.raises(TypeError):
        principal.claims["sub"] = "someone else"  # type: ignore[index]
    assert principal.claims["tid"] == idp.tenant
    assert token not in repr(principal)
    assert token.split(".")[2] not in repr(principal)
    assert isinstance(principal, Principal)


def test_principals_of_one_token_are_equal_and_name_it_by_its_id(
    validator: TokenValidator, idp: LocalIdP
) -> None:
    claims = idp.claims(client=CI_CLIENT)
    claims["jti"] = "not-the-uti"
    token = idp.token(claims)
    uncached = TokenValidator(validator.config)
    first, second = validator.validate(token), uncached.validate(token)
    assert first is not second and first == second and hash(first) == hash(second)
    assert first != validator.validate(idp.token(client=CI_CLIENT, lifetime=60))  # another exp
    assert first.token_id == claims["uti"]  # Entra's uti before jti
    assert first.expires_at.timestamp() == claims["exp"] and first.expires_at.tzinfo is not None
    assert f"subject={claims['sub']!r}" in repr(first) and claims["uti"] not in repr(first)


def test_a_principal_survives_pickling_and_copying(validator: TokenValidator, idp: LocalIdP) -> None:
    principal = validator.validate(idp.token(client=CI_CLIENT, roles=["Repo.Push"]))
    fresh = pickle.loads(pickle.dumps(principal))
    assert principal.claims["roles"] == ("Repo.Push",)  # the claims view now exists...
    for copied in (
        fresh,
        pickle.loads(pickle.dumps(principal)),
        copy.deepcopy(principal),
    ):  # ...and is rebuilt
        assert copied == principal and copied.claims == principal.claims
        assert copied.authorized_party == principal.authorized_party


def test_a_blank_scope_claim_is_no_delegation(validator: TokenValidator, idp: LocalIdP) -> None:
    claims = idp.claims(client=RHDH_CLIENT, user=USER_OID, scopes="repo:read")
    claims["scp"] = " "
    principal = validator.validate(idp.token(claims))
    assert (principal.scopes, principal.on_behalf_of) == ((), False)


def test_nested_claims_are_read_only_too(validator: TokenValidator, idp: LocalIdP) -> None:
    claims = idp.claims(client=CI_CLIENT)
    claims["cnf"] = {"jkt": "x", "list": [1, {"a": 2}]}
    principal = validator.validate(idp.token(claims))
    assert principal.claims["cnf"]["list"][1]["a"] == 2
    with pytest.raises(TypeError):
        principal.claims["cnf"]["jkt"] = "y"  # type: ignore[index]
    with pytest.raises(AttributeError):
        principal.claims["cnf"]["list"].append(3)  # a tuple
    assert principal.claims is principal.claims  # built once, then shared


# -- issuer lookup -----------------------------------------------------------------------------


def test_one_trailing_slash_is_ignored_on_either_side(validator: TokenValidator, idp: LocalIdP) -> None:
    v1 = idp.claims(version="1.0", client=CI_CLIENT)
    v1["iss"] = idp.v1_issuer.rstrip("/")  # configured with a slash, token without
    v2 = idp.claims(version="2.0", client=CI_CLIENT)
    v2["iss"] = idp.v2_issuer + "/"  # configured without, token with
    assert validator.validate(idp.token(v1)).provider == "azure"
    assert validator.validate(idp.token(v2)).provider == "azure"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda iss: iss + "//",
        lambda iss: iss.upper(),
        lambda iss: iss + "/evil",
        lambda iss: iss[:-1],
        lambda iss: iss.replace("http://", "https://"),
        lambda iss: " " + iss,
    ],
    ids=["two-slashes", "case-folded", "prefix-match", "substring", "other-scheme", "leading-space"],
)
def test_issuers_match_exactly_never_by_prefix_substring_or_case(
    validator: TokenValidator, idp: LocalIdP, mangle: Callable[[str], str]
) -> None:
    claims = idp.claims(client=CI_CLIENT)
    claims["iss"] = mangle(idp.v2_issuer)
    assert reject(validator, idp.token(claims)).reason == "issuer_not_configured"


def test_a_non_string_issuer_is_malformed(validator: TokenValidator, idp: LocalIdP) -> None:
    claims = idp.claims()
    claims["iss"] = [idp.v2_issuer]
    assert reject(validator, idp.token(claims)).reason == "malformed_token"


def test_issuer_comes_from_discovery_when_not_configured(idp: LocalIdP) -> None:
    validator = TokenValidator(quay_config(idp, OIDC_ISSUERS=None))
    assert validator.validate(idp.token(client=CI_CLIENT)).issuer == idp.v2_issuer
    # The v1 issuer is not the discovered one, so it is not accepted.
    assert reject(validator, idp.token(version="1.0", client=CI_CLIENT)).reason == "issuer_not_configured"


def test_a_discovered_issuer_that_is_not_configured_makes_the_keys_unavailable(idp: LocalIdP) -> None:
    # OIDC_SERVER points at the v1 discovery document but only the v2 issuer is configured.
    validator = TokenValidator(quay_config(idp, OIDC_SERVER=idp.v1_server, OIDC_ISSUERS=[idp.v2_issuer]))
    rejection = reject(validator, idp.token(client=CI_CLIENT))
    assert rejection.reason == "keys_unavailable"
    assert rejection.status_code == 503
    assert "names issuer" in rejection.description
    assert idp.v1_issuer in rejection.description


def test_keys_belong_to_their_provider(idp: LocalIdP, attacker_key: SigningKey) -> None:
    """A token claiming provider A's issuer is never checked with provider B's keys."""
    with LocalIdP(tenant="bbbbbbbb-0000-4000-8000-000000000002", keys=[SigningKey.rsa("other-key")]) as other:
        config = quay_config(idp)
        config["OTHER_LOGIN_CONFIG"] = {
            "OIDC_SERVER": other.v2_server,
            "CLIENT_ID": QUAY_CLIENT_ID,
            "OIDC_ISSUERS": [other.v2_issuer],
            "OIDC_AUDIENCES": [QUAY_API],
        }
        validator = TokenValidator(config)
        assert validator.validate(other.token(client=CI_CLIENT)).provider == "other"
        # Signed with B's key, claiming A's issuer: A does not know that kid.
        forged = mint(idp.claims(client=CI_CLIENT), other.keys[0])
        rejection = reject(validator, forged)
        assert (rejection.reason, rejection.provider) == ("unknown_key", "azure")


# -- key selection -----------------------------------------------------------------------------


def test_a_token_without_kid_is_checked_only_when_one_key_fits(
    idp: LocalIdP, trusted_key: SigningKey
) -> None:
    validator = TokenValidator(quay_config(idp))
    no_kid = idp.token(header={"kid": None}, client=CI_CLIENT)
    assert validator.validate(no_kid).provider == "azure"
    idp.rotate()  # two RSA keys now fit RS256
    crowded = TokenValidator(quay_config(idp))
    rejection = reject(crowded, no_kid)
    assert rejection.reason == "unknown_key"
    assert "no kid and 2 published keys fit RS256" in rejection.description


def test_a_key_is_used_only_with_an_algorithm_it_fits(idp: LocalIdP, ec_key: SigningKey) -> None:
    idp.keys.append(ec_key)
    validator = TokenValidator(quay_config(idp))
    # An RSA kid with an ES256 header: the key type does not fit the algorithm.
    confused = idp.token(key=ec_key, header={"kid": "entra-key-1"}, client=CI_CLIENT)
    assert reject(validator, confused).reason == "invalid_signature"
    # A P-256 key with an ES384 header: the curve does not fit.
    curve = idp.token(key=ec_key, header={"alg": "ES384"}, client=CI_CLIENT)
    assert reject(validator, curve).reason == "invalid_signature"


def test_a_jwk_alg_binds_the_key_to_that_algorithm(idp: LocalIdP) -> None:
    key = SigningKey.rsa("bound", alg="RS256")
    idp.keys = [key]
    idp.extra_jwks = []
    original = idp.jwks
    idp.jwks = lambda: {"keys": [key.public_jwk(alg="RS512")]}  # type: ignore[method-assign]
    try:
        validator = TokenValidator(quay_config(idp))
        assert reject(validator, idp.token(client=CI_CLIENT)).reason == "invalid_signature"
    finally:
        idp.jwks = original  # type: ignore[method-assign]


def test_keys_named_in_the_token_header_are_never_used(
    validator: TokenValidator, idp: LocalIdP, attacker_key: SigningKey
) -> None:
    embedded = attacker_key.public_jwk()
    token = idp.token(
        key=attacker_key,
        header={"kid": "attacker", "jwk": embedded, "jku": idp.jwks_uri, "x5u": idp.jwks_uri},
        client=CI_CLIENT,
    )
    assert reject(validator, token).reason == "unknown_key"


def test_hmac_signed_with_the_public_key_is_refused(
    validator: TokenValidator, idp: LocalIdP, trusted_key: SigningKey
) -> None:
    """The classic algorithm-confusion forgery that python-jose accepts with algorithms=None."""
    pem = trusted_key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "kid": "entra-key-1", "typ": "JWT"}).encode())
    payload = b64(json.dumps(idp.claims(client=CI_CLIENT)).encode())
    mac = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert reject(validator, f"{header}.{payload}.{b64(mac)}").reason == "unsupported_algorithm"


# -- one row per rejection reason -----------------------------------------------------------------


def _rows() -> list[Any]:
    def expired(idp: LocalIdP, key: SigningKey) -> str:
        return idp.token(client=CI_CLIENT, now=time.time() - 3600 - 61)

    def claims_without(name: str) -> Callable[[LocalIdP, SigningKey], str]:
        def build(idp: LocalIdP, key: SigningKey) -> str:
            claims = idp.claims(client=CI_CLIENT)
            del claims[name]
            return idp.token(claims)

        return build

    def with_claims(**changes: Any) -> Callable[[LocalIdP, SigningKey], str]:
        def build(idp: LocalIdP, key: SigningKey) -> str:
            claims = idp.claims(client=CI_CLIENT)
            claims.update(changes)
            return idp.token(claims)

        return build

    def keys_down(idp: LocalIdP, key: SigningKey) -> str:
        idp.failing = True
        return idp.token(client=CI_CLIENT)

    row = pytest.param
    return [
        row(lambda idp, key: "not-a-jwt", "malformed_token", 401, id="malformed_token"),
        row(
            with_claims(iss="https://sts.windows.net/someone-else/"),
            "issuer_not_configured",
            401,
            id="issuer_not_configured",
        ),
        row(
            lambda idp, key: idp.token(header={"alg": "none"}, client=CI_CLIENT),
            "unsupported_algorithm",
            401,
            id="unsupported_algorithm",
        ),
        row(
            lambda idp, key: idp.token(header={"kid": "no-such-kid"}, client=CI_CLIENT),
            "unknown_key",
            401,
            id="unknown_key",
        ),
        row(
            lambda idp, key: idp.token(key=key, client=CI_CLIENT),
            "invalid_signature",
            401,
            id="invalid_signature",
        ),
        row(expired, "token_expired", 401, id="token_expired"),
        # nbf taken when the token is built: the table is built at collection, maybe minutes before.
        row(
            lambda idp, key: with_claims(nbf=time.time() + 600)(idp, key),
            "token_not_yet_valid",
            401,
            id="token_not_yet_valid",
        ),
        row(claims_without("exp"), "missing_claim", 401, id="missing_claim-exp"),
        row(claims_without("sub"), "missing_claim", 401, id="missing_claim-sub"),
        row(with_claims(aud="https://graph.microsoft.com"), "invalid_audience", 401, id="invalid_audience"),
        row(
            lambda idp, key: idp.token(client=OUTSIDER), "client_not_allowed", 401, id="client_not_allowed-v2"
        ),
        row(
            lambda idp, key: idp.token(version="1.0", client=OUTSIDER),
            "client_not_allowed",
            401,
            id="client_not_allowed-v1-appid",
        ),
        row(keys_down, "keys_unavailable", 503, id="keys_unavailable"),
    ]


@pytest.mark.parametrize(("build", "reason", "status"), _rows())
def test_rejection_reasons(
    idp: LocalIdP,
    attacker_key: SigningKey,
    build: Callable[[LocalIdP, SigningKey], str],
    reason: str,
    status: int,
) -> None:
    validator = TokenValidator(quay_config(idp))
    token = build(idp, attacker_key)
    rejection = reject(validator, token)
    error = "temporarily_unavailable" if status == 503 else "invalid_token"
    assert (rejection.reason, rejection.status_code, rejection.error) == (reason, status, error)
    assert rejection.description
    # Never the token, nor its signature, in anything a log or a client could see.
    for shown in (rejection.description, str(rejection), repr(rejection)):
        assert token not in shown
        if token.count(".") == 2:
            assert token.split(".")[2] not in shown


def test_the_table_covers_every_reason_code_of_the_validator() -> None:
    """Every reason but those decided after a token was accepted: where it is used
    (app_only_token, decision.py) and what a robot takes (quay/robot_federation.py)."""
    assert {row.values[1] for row in _rows()} == REASONS - ROBOT_REASONS - {APP_ONLY_TOKEN}


# -- time ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(0, True), (3600 + 59, True), (3600 + 61, False)],
    ids=["fresh", "expired-within-leeway", "expired-past-leeway"],
)
def test_expiry_allows_the_configured_leeway(
    validator: TokenValidator, idp: LocalIdP, offset: int, accepted: bool
) -> None:
    token = idp.token(client=CI_CLIENT, now=NOW)
    validator.validate(idp.token(client=CI_CLIENT))  # fetch keys at real time
    with freeze_time(at(NOW + offset), tick=False):
        if accepted:
            assert validator.validate(token).expires_at.timestamp() == NOW + 3600
        else:
            assert reject(validator, token).reason == "token_expired"


def test_iat_or_nbf_beyond_the_leeway_is_not_yet_valid(validator: TokenValidator, idp: LocalIdP) -> None:
    with freeze_time(at(time.time()), tick=False):
        now = time.time()
        for name, value, accepted in (
            ("iat", now + 59, True),
            ("iat", now + 61, False),
            ("nbf", now + 59, True),
            ("nbf", now + 61, False),
        ):
            claims = idp.claims(client=CI_CLIENT, now=now)
            claims[name] = value
            if accepted:
                validator.validate(idp.token(claims))
            else:
                assert reject(validator, idp.token(claims)).reason == "token_not_yet_valid"


@pytest.mark.parametrize(
    "raw_exp",
    ['"1790003600"', "true", "null", "1e400", "-1", "[1790003600]", "1" * 40],
    ids=["string", "boolean", "null", "huge-float", "negative", "list", "huge-int"],
)
def test_non_numeric_or_absurd_times_are_malformed(
    validator: TokenValidator, idp: LocalIdP, raw_exp: str
) -> None:
    claims = idp.claims(client=CI_CLIENT)
    text = json.dumps(claims).replace(f'"exp": {claims["exp"]}', f'"exp": {raw_exp}').encode()
    token = mint_raw(idp, text)
    assert reject(validator, token).reason == "malformed_token"


def mint_raw(idp: LocalIdP, payload: bytes, header: dict[str, Any] | None = None) -> str:
    """Sign raw payload bytes (for JSON that json.dumps would never write)."""
    key = idp.keys[0]
    fields = {"typ": "JWT", "alg": key.alg, "kid": key.kid, **(header or {})}
    signing_input = f"{b64(json.dumps(fields).encode())}.{b64(payload)}"
    return f"{signing_input}.{b64(key.sign(signing_input.encode()))}"


# -- hostile and odd input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b'{"sub": "a", "sub": "b"}',
        b'{"exp": NaN}',
        b'{"exp": Infinity}',
        b"[1, 2, 3]",
        b"\xff\xfe not utf-8",
        b"{" + b'"a":[' * 5000 + b"]" * 5000 + b"}",
        b'{"a":' * 20 + b"1" + b"}" * 20,
        b"",
    ],
    ids=[
        "duplicate-member",
        "nan",
        "infinity",
        "not-an-object",
        "not-utf8",
        "deep-nesting",
        "nesting-past-limit",
        "empty",
    ],
)
def test_hostile_json_in_a_validly_signed_payload_is_malformed(
    validator: TokenValidator, idp: LocalIdP, payload: bytes
) -> None:
    validator.config  # noqa: B018 - the validator fixture must exist before the IdP is used
    token = mint_raw(idp, payload)
    if len(token) > validator.config.max_token_bytes:
        token = mint_raw(idp, payload[:4000])
    assert reject(validator, token).reason == "malformed_token"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "a.b.c.d",
        "a.b.c.d.e",
        "eyJhbGciOiJSUzI1NiJ9..",
        "eyJhbGciOiJSUzI1NiJ9.e30=.c2ln",
        "eyJhbGciOiJSUzI1NiJ9.e30.c2l+",
        "eyJhbGciOiJSUzI1NiJ9.e30.c2ln!",
        "eyJhbGciOiJSUzI1NiJ9.e30.c2l",  # non-zero unused bits in the last character
        " eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
        "x" * 20000,
    ],
    ids=[
        "empty",
        "two-segments",
        "four-segments",
        "jwe",
        "empty-signature",
        "padding",
        "plus",
        "junk",
        "unused-bits",
        "leading-space",
        "oversized",
    ],
)
def test_structurally_broken_tokens_are_malformed(validator: TokenValidator, token: str) -> None:
    assert reject(validator, token).reason == "malformed_token"


def test_header_problems_are_malformed(validator: TokenValidator, idp: LocalIdP) -> None:
    claims = idp.claims(client=CI_CLIENT)
    for header in (
        {"alg": "RS256", "crit": ["exp"]},
        {"alg": 256},
        {"typ": "JWT"},
        {"alg": "RS256", "kid": 7},
    ):
        token = unsigned(header, claims)
        assert reject(validator, token).reason == "malformed_token", header
        # Checked headers are remembered; a refused one must never be.
        assert reject(validator, token).reason == "malformed_token", header


def test_a_microsoft_graph_token_gets_a_clean_rejection_that_says_why(
    validator: TokenValidator, idp: LocalIdP
) -> None:
    claims = idp.claims(audience="https://graph.microsoft.com", client=CI_CLIENT)
    graph = idp.token(claims, header={"nonce": "AQABAAAAAAD"})
    # Graph signs the SHA-256 of the nonce, not the nonce: emulate that by tampering.
    head, body, signature = graph.split(".")
    tampered = f"{head}.{body}.{signature[:-4]}AAAA"
    rejection = reject(validator, tampered)
    assert rejection.reason == "invalid_signature"
    assert "Microsoft Graph" in rejection.description


def test_non_string_identity_claims_are_malformed(validator: TokenValidator, idp: LocalIdP) -> None:
    for name, value in (
        ("sub", 12),
        ("azp", ["x"]),
        ("oid", 5),
        ("scp", {"a": 1}),
        ("roles", "x y" and 3),
        ("aud", 3),
    ):
        claims = idp.claims(client=CI_CLIENT)
        claims[name] = value
        assert reject(validator, idp.token(claims)).reason == "malformed_token", name


def test_rejections_name_the_provider_once_the_issuer_is_known(
    validator: TokenValidator, idp: LocalIdP
) -> None:
    assert reject(validator, idp.token(client=OUTSIDER)).provider == "azure"
    assert reject(validator, "garbage").provider is None
