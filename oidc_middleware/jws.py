"""Strict compact JWS: parsing, and the signature layer usable on its own (:func:`verify_jws`).

Parsing accepts exactly what RFC 7515 section 7.1 describes and nothing python-jose would also
let through: three segments of canonical unpadded base64url, a header and (for JWTs) a payload
that are UTF-8 JSON objects without duplicate member names, NaN or Infinity, within a size cap and
a nesting depth that cannot exhaust the stack. Signature checking never takes a key from the
token: the header members ``jku``, ``x5u``, ``jwk`` and ``x5c`` are ignored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, NamedTuple, Protocol

from . import base64url
from .config import SETTINGS
from .crypto import SUPPORTED_ALGORITHMS
from .errors import INVALID_SIGNATURE, MALFORMED_TOKEN, UNSUPPORTED_ALGORITHM, TokenRejected
from .jwk import Jwk, KeySet

DEFAULT_MAX_TOKEN_BYTES: Final[int] = SETTINGS["MAX_TOKEN_BYTES"].default
MAX_HEADER_CHARS: Final = 4096  # a JOSE header is a few hundred bytes; Entra's are under 300
MAX_JSON_DEPTH: Final = 16


class KeySource(Protocol):
    """Anything that picks the one key for a ``kid`` and ``alg``: a KeySet, a provider's keys."""

    def select(self, kid: str | None, alg: str) -> Jwk: ...


class CompactJWS(NamedTuple):
    """A parsed, not yet verified, compact JWS. Its repr never shows the signature."""

    header: Mapping[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        return str(self.header["alg"])

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None

    def __repr__(self) -> str:
        return f"CompactJWS(alg={self.alg!r}, kid={self.kid!r}, payload_bytes={len(self.payload)})"


def parse_compact(token: str, *, max_bytes: int = DEFAULT_MAX_TOKEN_BYTES) -> CompactJWS:
    """Split and decode a compact JWS, or raise TokenRejected(malformed_token)."""
    if not isinstance(token, str):
        raise _malformed("token is not a string")
    if len(token) > max_bytes:
        raise _malformed(f"token is {len(token)} bytes, more than the limit of {max_bytes}")
    segments = token.split(".")
    if len(segments) != 3:
        kind = " (a JWE, not a JWS)" if len(segments) == 5 else ""
        raise _malformed(f"token has {len(segments)} segment(s){kind}; a compact JWS has 3")
    header_b64, payload_b64, signature_b64 = segments
    if not header_b64:
        raise _malformed("token has an empty header")
    if len(header_b64) > MAX_HEADER_CHARS:
        raise _malformed(f"token header is longer than {MAX_HEADER_CHARS} characters")
    header = _HEADERS.get(header_b64) or _parse_header(header_b64)
    signature = _decode(signature_b64, "signature")
    payload = _decode(payload_b64, "payload")
    signing_input = token[: len(header_b64) + 1 + len(payload_b64)].encode("ascii")
    return CompactJWS(header=header, payload=payload, signing_input=signing_input, signature=signature)


# A provider's tokens share a handful of headers (one per signing key): parsed and checked once,
# kept read-only. Shared by all threads without a lock: single dict operations are atomic, and a header lost to a
# concurrent clear() is simply parsed again.
_HEADERS: dict[str, Mapping[str, Any]] = {}
_MAX_HEADERS: Final = 256


def _parse_header(encoded: str) -> Mapping[str, Any]:
    """Decode and check a JOSE header, and remember it read-only for the next tokens."""
    header = parse_json_object(_decode(encoded, "header"), "header")
    if not isinstance(header.get("alg"), str):
        raise _malformed("header has no 'alg' string")
    if "kid" in header and not isinstance(header["kid"], str):
        raise _malformed("header 'kid' is not a string")
    # RFC 7515 4.1.11: extensions listed in 'crit' must be understood; we understand none.
    if "crit" in header:
        raise _malformed("header has 'crit' extensions, none of which are supported")
    if len(_HEADERS) >= _MAX_HEADERS:
        _HEADERS.clear()
    frozen = _HEADERS[encoded] = MappingProxyType(header)
    return frozen


def check_algorithm(jws: CompactJWS) -> str:
    """The token's ``alg`` when it is one we accept; TokenRejected(unsupported_algorithm) if not.

    RFC 8725 3.1 and 3.2: the accepted algorithms are ours, never the token's; no 'none', no HMAC
    (a public key must never become a shared secret).
    """
    alg = jws.alg
    if alg not in SUPPORTED_ALGORITHMS:
        raise TokenRejected(UNSUPPORTED_ALGORITHM, f"algorithm {alg[:16]!r} is not accepted")
    return alg


def check_signature(jws: CompactJWS, keys: KeySource) -> Jwk:
    """Verify ``jws`` with the one key the policy selects from ``keys``; return that key."""
    alg = check_algorithm(jws)
    if not jws.signature:
        # Checked after the algorithm, so that an unsigned 'alg: none' token is named for what it is.
        raise _malformed("token has an empty signature")
    key = keys.select(jws.kid, alg)
    if not key.verifier.verify(alg, jws.signing_input, jws.signature):
        hint = ""
        if "nonce" in jws.header:
            hint = " (a header 'nonce' marks a Microsoft Graph token, which only Graph can verify)"
        raise TokenRejected(INVALID_SIGNATURE, f"signature does not verify{hint}")
    return key


def verify_jws(token: str, jwks: KeySet | Mapping[str, Any]) -> tuple[dict[str, Any], bytes]:
    """Verify a compact JWS against a key set; return its header and payload bytes.

    ``jwks`` is a JWKS document (``{"keys": [...]}``) or a :class:`KeySet`. Raises
    :class:`TokenRejected` for any token that does not verify; keys the policy refuses (short
    RSA, wrong curve, ``use: enc``...) are simply not in the set.
    """
    jws = parse_compact(token)
    keys = jwks if isinstance(jwks, KeySet) else KeySet.from_jwks(jwks)[0]
    check_signature(jws, keys)
    return dict(jws.header), jws.payload


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Decode UTF-8 JSON that must be an object; TokenRejected(malformed_token) otherwise."""
    try:
        value = _DECODER.decode(data.decode("utf-8"))
    except RecursionError:
        raise _malformed(f"{what} JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        # ValueError covers invalid JSON, duplicate names, NaN/Infinity and 4300+ digit integers.
        raise _malformed(f"{what} is not valid JSON: {str(exc)[:80]}") from None
    if not isinstance(value, dict):
        raise _malformed(f"{what} is not a JSON object")
    # Depth is at most the number of opening brackets: walk the value only when that could be much.
    if data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH and _depth(value) > MAX_JSON_DEPTH:
        raise _malformed(f"{what} JSON is nested deeper than {MAX_JSON_DEPTH}")
    return value


def fingerprint(token: str | bytes) -> str:
    """A short, stable name for a token in logs: never the token, never reversible.

    The first 16 hex digits of its SHA-256 (for a well-formed token, of :func:`token_digest`).
    """
    data = token.encode("utf-8", "replace") if isinstance(token, str) else token
    return hashlib.sha256(data).hexdigest()[:16]


def token_digest(token: str) -> bytes:
    """The SHA-256 of a token: the verified-token cache's proof of identity, and its fingerprint."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _decode(segment: str, what: str) -> bytes:
    try:
        return base64url.decode(segment)
    except ValueError:
        raise _malformed(f"{what} is not canonical unpadded base64url") from None


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    # RFC 7515 5.2: duplicate member names must be rejected or the last one used; we reject.
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


def refuse_constant(name: str) -> Any:
    """For ``json``'s ``parse_constant``: NaN and Infinity are not JSON (RFC 8259)."""
    raise ValueError(f"{name} is not JSON")


# One decoder for all tokens (json.loads with options builds a new one per call).
_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates, parse_constant=refuse_constant
)


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        children: Any = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return level - 1
    return max((_depth(child, level + 1) for child in children), default=level)


def _malformed(description: str) -> TokenRejected:
    return TokenRejected(MALFORMED_TOKEN, description)
