"""External test vectors (Project Wycheproof, RFC 7520) run through the signature layer.

Every vector of every file used here is run, and nothing is skipped. Where this project answers
differently from a vector's ``result`` on purpose, an expectation below says so and says why. Any
other disagreement is a failing test. The files and their origin are described in
tests/vectors/README.md.

The deliberate differences, all of them:

* HMAC (HS256/384/512) and ``none`` are never accepted, whatever a vector says. The verifier only
  ever holds a provider's published keys. Accepting HMAC would let a public key be used as a shared
  secret (the classic RS256 -> HS256 key-confusion attack; RFC 8725 sections 2.1, 3.1 and 3.2).
* A JWK's ``alg`` binds the key to that one algorithm (RFC 8725 section 3.1). Wycheproof's copies of
  two RFC 7520 keys carry an ``alg`` that does not match the token (see POLICY below).
* Only canonical unpadded base64url is accepted (RFC 7515 section 2). Wycheproof marks two HS256
  tokens with a stray ``?`` as valid (tcIds 372, 373); they are malformed here.
* Keys the policy refuses (see KEY_REFUSED) are dropped from the key set, so their tokens find no
  key. Where Wycheproof expects the whole key set to be rejected, the outcome is the same.
* ``acceptable`` vectors get an explicit decision (see ACCEPTABLE).
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from oidc_middleware import (
    INVALID_SIGNATURE,
    MALFORMED_TOKEN,
    UNKNOWN_KEY,
    UNSUPPORTED_ALGORITHM,
    TokenRejected,
    verify_jws,
)
from oidc_middleware.crypto import Verifier
from oidc_middleware.jwk import KeySet, parse_jwk

VECTORS: Final = Path(__file__).parent / "vectors"
WYCHEPROOF: Final = VECTORS / "wycheproof"
COOKBOOK: Final = VECTORS / "jose-cookbook"

# The algorithms this project accepts; every other ``alg`` must be refused as unsupported.
ACCEPTED_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)

JWS_FILES: Final = ("json_web_signature_test.json", "json_web_key_test.json")

# Signature-level files and the JWS algorithm each one is.
SIGNATURE_FILES: Final = {
    "rsa_signature_2048_sha256_test.json": "RS256",
    "rsa_signature_3072_sha256_test.json": "RS256",
    "rsa_signature_4096_sha256_test.json": "RS256",
    "rsa_pss_2048_sha256_mgf1_32_test.json": "PS256",
    # Same key and vectors as the file above. The key is published as an RSASSA-PSS key with its
    # parameters (SHA-256, MGF1-SHA-256, salt 32), and those are exactly PS256, so it is run too
    # (test_pss_groups_are_exactly_ps256 checks the parameters).
    "rsa_pss_2048_sha256_mgf1_32_params_test.json": "PS256",
    "ecdsa_secp256r1_sha256_p1363_test.json": "ES256",
    "ecdsa_secp384r1_sha384_p1363_test.json": "ES384",
    "ecdsa_secp521r1_sha512_p1363_test.json": "ES512",
}
# ES256 with ASN.1 DER signatures. JWS uses raw r||s (RFC 7518 section 3.4), so every one must fail.
DER_FILE: Final = "ecdsa_secp256r1_sha256_test.json"

# What each file holds: (vectors, valid, invalid, acceptable). Pins the copies in tests/vectors.
VECTOR_COUNTS: Final = {
    "json_web_signature_test.json": (401, 46, 355, 0),
    "json_web_key_test.json": (26, 5, 21, 0),
    "rsa_signature_2048_sha256_test.json": (259, 9, 249, 1),
    "rsa_signature_3072_sha256_test.json": (259, 8, 250, 1),
    "rsa_signature_4096_sha256_test.json": (258, 7, 250, 1),
    "rsa_pss_2048_sha256_mgf1_32_test.json": (108, 63, 45, 0),
    "rsa_pss_2048_sha256_mgf1_32_params_test.json": (108, 63, 45, 0),
    "ecdsa_secp256r1_sha256_p1363_test.json": (262, 173, 89, 0),
    "ecdsa_secp384r1_sha384_p1363_test.json": (280, 193, 87, 0),
    "ecdsa_secp521r1_sha512_p1363_test.json": (318, 231, 87, 0),
    "ecdsa_secp256r1_sha256_test.json": (484, 174, 310, 0),
}


@dataclass(frozen=True)
class Expected:
    """What verify_jws must do with one token."""

    verifies: bool
    reason: str | None = None  # TokenRejected.reason when it must not verify
    why: str = ""  # required whenever this differs from the vector's ``result``


def refused(reason: str, why: str = "") -> Expected:
    return Expected(verifies=False, reason=reason, why=why)


VERIFIES: Final = Expected(verifies=True)


# ---------------------------------------------------------------------------------------------
# Whole-token vectors: json_web_signature_test.json and json_web_key_test.json
# ---------------------------------------------------------------------------------------------

# Vectors (by Wycheproof comment) that are not a compact JWS in canonical base64url at all: wrong
# number of segments, no header, JSON serialization, or characters outside the base64url alphabet
# (and non-zero unused bits). They are refused as malformed before anything else is looked at,
# including an HS256 header, because nothing in a token that does not parse can be trusted.
NOT_A_COMPACT_JWS: Final = frozenset(
    {
        "rejectsMissingSignatureAndSeparator",
        "rejectsMissingPayloadAndSeparator",
        "rejectsMissingHeader",
        "rejectsMissingHeaderAndSeparator",
        "rejectsMissingHeaderAndSignature",
        "rejectsMissingHeaderSignatureAndSeparator",
        "rejectsMissingHeaderSignatureAndSeparators",
        "rejectsEmptyString",
        "rejectsExtraEmptyComponent",
        "rejectsExtraComponent",
        "rejectsValidJsonSerialization",
        "rejectsSpacesInMac",
        "rejectsInvalidCharacterInsertedInMac",
        "rejects0ReplacedbyInvalidCharacter",
        "rejectsInvalidCharacters",
        "spacesInHeader",
        "invalidCharactersInHeader",
        "spacesInPayload",
        "invalidCharactersInPayload",
        "InvalidCharacterInPayload",
        "InvalidCharacterInsertedInHeader",  # tcId 372, "valid" in Wycheproof
        "InvalidCharacterInsertedInPayload",  # tcId 373, "valid" in Wycheproof
        "ModifiedUnusedBitsInPayload",
        "MacOfIncorrectlyEncodedMessage",
    }
)

_BOUND_TO_PS256 = "PS384 token, but the key is published with alg PS256 and so bound to PS256"

# Per-vector expectations that the general rules in expected_for_jws do not give:
# (file, tcId) -> (the vector's comment, as a check that the entry names the intended vector; expectation).
POLICY: Final[dict[tuple[str, int], tuple[str, Expected]]] = {
    # Wycheproof changes the header by changing its kid, so no key matches.
    ("json_web_signature_test.json", 25): ("rejectsModifiedHeader", refused(UNKNOWN_KEY)),
    ("json_web_signature_test.json", 40): ("rejectsModifiedHeader", refused(UNKNOWN_KEY)),
    # RFC 7520 figures whose keys Wycheproof republished with an `alg` that does not fit. RFC 7520's
    # own keys (jose-cookbook, tested below) have no `alg`, and with those the same tokens verify
    # (test_rfc7520_vectors_verify_without_the_mislabelled_alg).
    ("json_web_signature_test.json", 346): ("Figure20", refused(INVALID_SIGNATURE, _BOUND_TO_PS256)),
    ("json_web_signature_test.json", 350): ("Figure20", refused(INVALID_SIGNATURE, _BOUND_TO_PS256)),
    # Figure 27 (tcIds 347, 351), whose key has alg 'ES521', is in KEY_REFUSED.
}

# Vectors whose only key the policy drops from the key set, so the token finds no key
# (unknown_key): (file, tcId) -> (the vector's comment; what is wrong with the key).
KEY_REFUSED: Final[dict[tuple[str, int], tuple[str, str]]] = {
    ("json_web_signature_test.json", 347): ("Figure27", "alg 'ES521' is no JWS algorithm (ES512 is meant)"),
    ("json_web_signature_test.json", 351): ("Figure27", "alg 'ES521' is no JWS algorithm (ES512 is meant)"),
    ("json_web_signature_test.json", 353): ("rejectWrongUse", "RSA key with use 'enc'"),
    ("json_web_signature_test.json", 354): ("rejectWrongUse", "EC key with use 'enc'"),
    ("json_web_signature_test.json", 355): ("rejectWrongKeyOps", "RSA key whose key_ops lack 'verify'"),
    ("json_web_signature_test.json", 356): ("rejectWrongKeyOps", "EC key whose key_ops lack 'verify'"),
    ("json_web_key_test.json", 6): ("rejectsWrongUse", "use 'enc', alg RSA1_5"),
    ("json_web_key_test.json", 7): ("rejectsKeyWithRocaVulnerability", "ROCA modulus (CVE-2017-15361)"),
    ("json_web_key_test.json", 8): ("rejects1024bitRsaKey", "RSA modulus of 1024 bits"),
    ("json_web_key_test.json", 9): ("rejectsPublicExponent1", "RSA public exponent 1"),
    ("json_web_key_test.json", 19): ("mismatchedAlgAndCurve", "alg ES521 on a P-256 key"),
    ("json_web_key_test.json", 20): ("mismatchedAlgAndCurve", "alg ES224 on a P-256 key"),
    ("json_web_key_test.json", 21): ("rejectsModifiedKey", "use 'enc'"),
    ("json_web_key_test.json", 22): ("rejectsModifiedKey", "point not on P-256"),
    ("json_web_key_test.json", 23): ("rejectsModifiedKey", "alg ES256 on a P-384 key"),
    ("json_web_key_test.json", 24): ("rejectsModifiedKey", "kty RSA with EC members"),
}


@dataclass(frozen=True)
class JwsVector:
    file: str
    tc_id: int
    comment: str
    result: str
    token: str
    jwks: dict[str, Any]


def load_wycheproof(name: str) -> dict[str, Any]:
    return json.loads((WYCHEPROOF / name).read_text(encoding="utf-8"))


def group_jwks(group: dict[str, Any]) -> dict[str, Any]:
    """The group's public key(s) as a JWKS; the private key only when nothing public is given."""
    key = group.get("public", group["private"])
    return key if "keys" in key else {"keys": [key]}


def jws_vectors(name: str) -> list[JwsVector]:
    return [
        JwsVector(name, test["tcId"], test["comment"], test["result"], test["jws"], group_jwks(group))
        for group in load_wycheproof(name)["testGroups"]
        for test in group["tests"]
    ]


JWS_VECTORS: Final = [vector for name in JWS_FILES for vector in jws_vectors(name)]


def header_alg(token: str) -> str:
    """The header's alg, decoded leniently: used only to classify tokens that do parse."""
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["alg"])


def expected_for_jws(vector: JwsVector) -> Expected:
    """The project's answer for one whole-token vector, rule by rule, in the order checks apply."""
    if vector.comment in NOT_A_COMPACT_JWS:
        why = "not canonical compact base64url; Wycheproof lets lenient decoders pass it"
        return refused(MALFORMED_TOKEN, why if vector.result == "valid" else "")
    alg = header_alg(vector.token)
    if alg not in ACCEPTED_ALGORITHMS:
        # HS*, none, NONE: refused on the header alone. A compact JWS may have an empty signature
        # (RFC 7515 7.1; an unsecured JWS always has one), so that is no reason to call the alg
        # check anything but unsupported_algorithm.
        why = f"{alg} is never accepted: no HMAC, no unsigned tokens" if vector.result == "valid" else ""
        return refused(UNSUPPORTED_ALGORITHM, why)
    if vector.comment == "rejectsMissingSignature":
        # An accepted alg with an empty signature: nothing to verify, refused while parsing.
        return refused(MALFORMED_TOKEN)
    if (vector.file, vector.tc_id) in KEY_REFUSED:
        comment, wrong = KEY_REFUSED[vector.file, vector.tc_id]
        assert vector.comment == comment, f"KEY_REFUSED entry for tcId {vector.tc_id} names another vector"
        return refused(UNKNOWN_KEY, f"key dropped by policy: {wrong}")
    if (vector.file, vector.tc_id) in POLICY:
        comment, expected = POLICY[vector.file, vector.tc_id]
        assert vector.comment == comment, f"POLICY entry for tcId {vector.tc_id} names another vector"
        return expected
    if vector.result == "valid":
        return VERIFIES
    if vector.result == "invalid":
        return refused(INVALID_SIGNATURE)
    raise AssertionError(f"{vector.file} tcId {vector.tc_id} is {vector.result!r}: decide it in POLICY")


def short_name(file: str) -> str:
    return file.removesuffix(".json").removesuffix("_test")


def vector_id(file: str, tc_id: int, comment: str) -> str:
    return f"{short_name(file)}-tc{tc_id}-{re.sub(r'[^A-Za-z0-9_+=^-]+', '_', comment).strip('_')}"


@pytest.mark.parametrize(
    "vector", JWS_VECTORS, ids=[vector_id(v.file, v.tc_id, v.comment) for v in JWS_VECTORS]
)
def test_wycheproof_jws(vector: JwsVector) -> None:
    expected = expected_for_jws(vector)
    if expected.verifies != (vector.result == "valid"):
        assert expected.why, "a departure from the vector's result must say why"
    if expected.verifies:
        header, _payload = verify_jws(vector.token, vector.jwks)
        assert header["alg"] == header_alg(vector.token)
        return
    # Anything but TokenRejected escaping verify_jws fails here too.
    with pytest.raises(TokenRejected) as rejection:
        verify_jws(vector.token, vector.jwks)
    observed = rejection.value
    assert observed.reason == expected.reason, f"{expected.why or expected.reason}; got {observed!r}"


REFUSED_KEY_VECTORS: Final = [v for v in JWS_VECTORS if (v.file, v.tc_id) in KEY_REFUSED]


@pytest.mark.parametrize(
    "vector", REFUSED_KEY_VECTORS, ids=[vector_id(v.file, v.tc_id, v.comment) for v in REFUSED_KEY_VECTORS]
)
def test_refused_keys_are_dropped_from_the_key_set(vector: JwsVector) -> None:
    keys, skipped = KeySet.from_jwks(vector.jwks)
    assert len(keys) == 0, KEY_REFUSED[vector.file, vector.tc_id][1]
    assert len(skipped) == len(vector.jwks["keys"]) == 1


@pytest.mark.parametrize("tc_id", [346, 347, 350, 351])
def test_rfc7520_vectors_verify_without_the_mislabelled_alg(tc_id: int) -> None:
    """Figures 20 and 27 are refused only because of the key's alg, not because of the signature."""
    vector = next(v for v in JWS_VECTORS if v.file == JWS_FILES[0] and v.tc_id == tc_id)
    unbound = {"keys": [{k: v for k, v in key.items() if k != "alg"} for key in vector.jwks["keys"]]}
    verify_jws(vector.token, unbound)


# ---------------------------------------------------------------------------------------------
# Single-signature vectors: Jwk.verifier.verify(alg, msg, sig)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    comment: str
    accept: bool
    why: str


_MISSING_NULL = Decision(
    "Missing NULL in the ASN encoding",
    accept=False,
    why="RS256 signers always encode the SHA-256 DigestInfo with its NULL parameters. The verifier "
    "compares against that single encoding (RFC 8017 9.2), so a second accepted encoding of "
    "the same signature would only add malleability.",
)
# Wycheproof "acceptable" vectors, where either answer is allowed: our decision for each.
ACCEPTABLE: Final[dict[tuple[str, int], Decision]] = {
    ("rsa_signature_2048_sha256_test.json", 8): _MISSING_NULL,
    ("rsa_signature_3072_sha256_test.json", 8): _MISSING_NULL,
    ("rsa_signature_4096_sha256_test.json", 8): _MISSING_NULL,
}

_CURVES: Final = {"secp256r1": ("P-256", 32), "secp384r1": ("P-384", 48), "secp521r1": ("P-521", 66)}


@dataclass(frozen=True)
class SignatureVector:
    file: str
    alg: str
    tc_id: int
    comment: str
    result: str
    msg: bytes
    sig: bytes
    jwk_json: str  # JSON text, so that the vector is hashable and its key can be built once


def b64url_uint(value: int, length: int | None = None) -> str:
    raw = value.to_bytes(length or max(1, (value.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def group_jwk(group: dict[str, Any], alg: str) -> dict[str, Any]:
    """The group's public key as a JWK: the one Wycheproof gives, else one built from its numbers."""
    jwk = group.get("publicKeyJwk") or group.get("keyJwk")
    if jwk is not None:
        return dict(jwk)
    numbers = group["publicKey"]
    if "modulus" in numbers:  # RSA; the PSS "_params" file has no JWK
        n, e = int(numbers["modulus"], 16), int(numbers["publicExponent"], 16)
        return {"kty": "RSA", "alg": alg, "n": b64url_uint(n), "e": b64url_uint(e)}
    crv, size = _CURVES[numbers["curve"]]
    x, y = int(numbers["wx"], 16), int(numbers["wy"], 16)
    return {"kty": "EC", "crv": crv, "x": b64url_uint(x, size), "y": b64url_uint(y, size)}


def signature_vectors(name: str, alg: str) -> list[SignatureVector]:
    vectors = []
    for group in load_wycheproof(name)["testGroups"]:
        jwk_json = json.dumps(group_jwk(group, alg), sort_keys=True)
        for test in group["tests"]:
            vectors.append(
                SignatureVector(
                    name,
                    alg,
                    test["tcId"],
                    test["comment"],
                    test["result"],
                    bytes.fromhex(test["msg"]),
                    bytes.fromhex(test["sig"]),
                    jwk_json,
                )
            )
    return vectors


@cache
def verifier_for(jwk_json: str, alg: str) -> Verifier:
    """The key's verifier. No key in these files is refused by our policy (RSA moduli are 2048 bits
    or more with e = 3 or 65537, and every EC point is on its curve). A refusal would make parse_jwk
    raise here and fail every vector of the group, loudly."""
    key = parse_jwk(json.loads(jwk_json))
    assert alg in key.algorithms
    return key.verifier


SIGNATURE_VECTORS: Final = [v for name, alg in SIGNATURE_FILES.items() for v in signature_vectors(name, alg)]
DER_VECTORS: Final = signature_vectors(DER_FILE, "ES256")


def expected_signature_result(vector: SignatureVector) -> bool:
    if vector.result == "acceptable":
        decision = ACCEPTABLE[vector.file, vector.tc_id]
        assert vector.comment == decision.comment, f"ACCEPTABLE entry for tcId {vector.tc_id} names another"
        return decision.accept
    return vector.result == "valid"


@pytest.mark.parametrize(
    "vector", SIGNATURE_VECTORS, ids=[vector_id(v.file, v.tc_id, v.comment) for v in SIGNATURE_VECTORS]
)
def test_wycheproof_signature(vector: SignatureVector) -> None:
    verifier = verifier_for(vector.jwk_json, vector.alg)
    assert verifier.verify(vector.alg, vector.msg, vector.sig) is expected_signature_result(vector)


@pytest.mark.parametrize(
    "vector", DER_VECTORS, ids=[vector_id(v.file, v.tc_id, v.comment) for v in DER_VECTORS]
)
def test_der_ecdsa_signatures_never_verify_as_jws(vector: SignatureVector) -> None:
    """A JWS ES256 signature is r||s, 64 bytes; DER is never accepted, not even a valid one."""
    verifier = verifier_for(vector.jwk_json, "ES256")
    assert verifier.verify("ES256", vector.msg, vector.sig) is False
    if vector.result == "valid":
        # The same signature in JWS format does verify, so the failure above is about format only.
        r, s = decode_dss_signature(vector.sig)
        assert verifier.verify("ES256", vector.msg, r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@pytest.mark.parametrize(
    "name", ["rsa_pss_2048_sha256_mgf1_32_test.json", "rsa_pss_2048_sha256_mgf1_32_params_test.json"]
)
def test_pss_groups_are_exactly_ps256(name: str) -> None:
    """PS256 is RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (RFC 7518 3.5)."""
    for group in load_wycheproof(name)["testGroups"]:
        parameters = (group["sha"], group["mgf"], group["mgfSha"], group["sLen"])
        assert parameters == ("SHA-256", "MGF1", "SHA-256", 32)


# ---------------------------------------------------------------------------------------------
# RFC 7520 section 4 (jose-cookbook)
# ---------------------------------------------------------------------------------------------

_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth"})

# Every compact JWS the cookbook holds: its `output.compact`, and each signer's
# `sig-input` + "." + `sig` where that is a different token. For 4.1 to 4.4 they are the same token.
COOKBOOK_COMPACT: Final[dict[str, Expected]] = {
    "4_1 output.compact": VERIFIES,  # RS256
    "4_2 output.compact": VERIFIES,  # PS384: the salt is random, but the stored signature verifies
    "4_3 output.compact": VERIFIES,  # ES512: the ECDSA nonce is random too; likewise
    "4_4 output.compact": refused(UNSUPPORTED_ALGORITHM),  # HS256
    "4_5 output.compact": refused(UNSUPPORTED_ALGORITHM),  # HS256, detached: empty payload segment
    "4_5 signing": refused(UNSUPPORTED_ALGORITHM),  # the same, payload attached
    "4_6 signing": refused(UNSUPPORTED_ALGORITHM),  # protected header {"alg":"HS256"}
    "4_7 signing": refused(MALFORMED_TOKEN),  # nothing protected: empty header segment
    # RS256, kid only in the unprotected header. The RSA and EC keys share one kid, so the policy
    # drops both: the token finds no key (test_cookbook_4_8_rsa_signer_with_its_key_alone verifies).
    "4_8 signing[0]": refused(UNKNOWN_KEY),
    "4_8 signing[1]": refused(MALFORMED_TOKEN),  # ES512 with an unprotected header only: empty header
    "4_8 signing[2]": refused(UNSUPPORTED_ALGORITHM),  # HS256
}


def load_cookbook() -> dict[str, dict[str, Any]]:
    return {
        path.name.split(".")[0]: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(COOKBOOK.glob("4_*.json"))
    }


COOKBOOK_EXAMPLES: Final = load_cookbook()


def cookbook_jwks(example: dict[str, Any]) -> dict[str, Any]:
    """The example's keys as a provider would publish them: private halves removed. An HMAC key has
    no public half, so it is handed over as it is, secret and all, and is still never used."""
    keys = example["input"]["key"]
    keys = keys if isinstance(keys, list) else [keys]
    return {
        "keys": [
            k if k["kty"] == "oct" else {m: v for m, v in k.items() if m not in _PRIVATE_MEMBERS}
            for k in keys
        ]
    }


def cookbook_compact_tokens() -> dict[str, tuple[str, dict[str, Any]]]:
    tokens: dict[str, tuple[str, dict[str, Any]]] = {}
    for section, example in COOKBOOK_EXAMPLES.items():
        compact = example["output"].get("compact")
        if compact is not None:
            tokens[f"{section} output.compact"] = (compact, example)
        signers = example["signing"]
        for index, signer in enumerate(signers if isinstance(signers, list) else [signers]):
            token = f"{signer['sig-input']}.{signer['sig']}"
            if token != compact:
                label = f"{section} signing[{index}]" if isinstance(signers, list) else f"{section} signing"
                tokens[label] = (token, example)
    return tokens


COOKBOOK_TOKENS: Final = cookbook_compact_tokens()


def test_every_cookbook_compact_token_has_an_expectation() -> None:
    assert set(COOKBOOK_TOKENS) == set(COOKBOOK_COMPACT)


@pytest.mark.parametrize("label", sorted(COOKBOOK_COMPACT))
def test_cookbook_compact(label: str) -> None:
    token, example = COOKBOOK_TOKENS[label]
    expected = COOKBOOK_COMPACT[label]
    if expected.verifies:
        header, payload = verify_jws(token, cookbook_jwks(example))
        assert header == example["signing"]["protected"]
        assert payload == example["input"]["payload"].encode("utf-8")
        return
    with pytest.raises(TokenRejected) as rejection:
        verify_jws(token, cookbook_jwks(example))
    assert rejection.value.reason == expected.reason


COOKBOOK_JSON_FORMS: Final = [
    (f"{section} output.{form}", example["output"][form], cookbook_jwks(example))
    for section, example in COOKBOOK_EXAMPLES.items()
    for form in ("json", "json_flat")
    if form in example["output"]
]


@pytest.mark.parametrize(
    ("label", "serialization", "jwks"), COOKBOOK_JSON_FORMS, ids=[f[0] for f in COOKBOOK_JSON_FORMS]
)
def test_cookbook_json_serializations_are_malformed(label: str, serialization: Any, jwks: Any) -> None:
    """Only compact serialization is verified; a JSON serialization is no bearer token."""
    with pytest.raises(TokenRejected) as rejection:
        verify_jws(json.dumps(serialization), jwks)
    assert rejection.value.reason == MALFORMED_TOKEN


def test_cookbook_4_8_rsa_signer_with_its_key_alone() -> None:
    token, example = COOKBOOK_TOKENS["4_8 signing[0]"]
    rsa_only = {"keys": [k for k in cookbook_jwks(example)["keys"] if k["kty"] == "RSA"]}
    header, payload = verify_jws(token, rsa_only)
    assert header == {"alg": "RS256"}
    assert payload == example["input"]["payload"].encode("utf-8")


# ---------------------------------------------------------------------------------------------
# Inventory: every vector of every file is run, and the tables above name real vectors
# ---------------------------------------------------------------------------------------------


def vector_counts() -> dict[str, tuple[int, int, int, int]]:
    """Per Wycheproof file run here: (vectors, valid, invalid, acceptable). Prints nothing."""
    by_file: dict[str, Counter[str]] = {}
    for vector in [*JWS_VECTORS, *SIGNATURE_VECTORS, *DER_VECTORS]:
        by_file.setdefault(vector.file, Counter())[vector.result] += 1
    return {file: (sum(c.values()), c["valid"], c["invalid"], c["acceptable"]) for file, c in by_file.items()}


def test_every_vector_is_run() -> None:
    counts = vector_counts()
    assert counts == VECTOR_COUNTS
    for file, (total, *_) in counts.items():
        assert load_wycheproof(file)["numberOfTests"] == total, file


def test_policy_tables_name_real_vectors() -> None:
    jws_ids = {(v.file, v.tc_id): v.comment for v in JWS_VECTORS}
    for table in (POLICY, KEY_REFUSED):
        assert {key: entry[0] for key, entry in table.items()} == {key: jws_ids.get(key) for key in table}
    assert set(jws_ids.values()) >= NOT_A_COMPACT_JWS
    acceptable = {(v.file, v.tc_id): v.comment for v in SIGNATURE_VECTORS if v.result == "acceptable"}
    assert acceptable == {key: decision.comment for key, decision in ACCEPTABLE.items()}
