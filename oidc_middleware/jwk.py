"""JSON Web Key sets: which published keys may be used, and which key a token gets.

A key set is parsed once per fetch. Each key is checked against a strict policy and skipped, with
a reason, when it fails; one bad key never spoils the others. Key objects are built here, once per
JWK, never per token. Selection follows RFC 8725 section 3.1: the algorithm must be one the key
is bound to, and the key is named by ``kid``; nothing in the token (``jku``, ``x5u``, ``jwk``,
``x5c``) is ever used to find or build a key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from . import base64url
from .crypto import (
    CURVE_SIZES,
    EC_ALGORITHMS,
    RSA_ALGORITHMS,
    PublicKey,
    Verifier,
    ec_public_key,
    rsa_public_key,
)
from .errors import INVALID_SIGNATURE, UNKNOWN_KEY, TokenRejected

MIN_RSA_BITS: Final = 2048
MAX_RSA_BITS: Final = 16384
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_ES_FOR_CURVE: Final = {curve: alg for alg, curve in EC_ALGORITHMS.items()}


@dataclass(frozen=True, eq=False)
class Jwk:
    """One usable public signing key."""

    kid: str | None
    kty: str
    algorithms: frozenset[str]
    verifier: Verifier
    # Names this exact key (kid, algorithms and public numbers): equal across refetches of the
    # same key, different for any other key.
    fingerprint: str

    def __repr__(self) -> str:
        return f"Jwk(kid={self.kid!r}, kty={self.kty!r}, algorithms={sorted(self.algorithms)})"


class KeySet:
    """The usable keys of one provider, indexed by ``kid``."""

    def __init__(self, keys: Iterable[Jwk] = ()) -> None:
        self.keys: tuple[Jwk, ...] = tuple(keys)
        self._by_kid = {key.kid: key for key in self.keys if key.kid is not None}
        self.fingerprints = frozenset(key.fingerprint for key in self.keys)

    @classmethod
    def from_jwks(cls, document: Any) -> tuple[KeySet, list[str]]:
        """Parse a JWKS document; return the usable keys and why each other key was skipped.

        ValueError when the document itself is not a JWKS (not an object with a ``keys`` list).
        """
        if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
            raise ValueError("not a JWK set: expected an object with a 'keys' list")
        usable: list[Jwk] = []
        skipped: list[str] = []
        for index, entry in enumerate(document["keys"]):
            try:
                usable.append(parse_jwk(entry))
            except (ValueError, TypeError) as exc:
                kid = entry.get("kid") if isinstance(entry, Mapping) else None
                skipped.append(f"key {index} (kid {_short(kid)}): {exc}")
        # Two keys under one kid make the choice ambiguous (an attacker who can add a key to a
        # set could shadow the real one): neither is used.
        counts: dict[str, int] = {}
        for key in usable:
            if key.kid is not None:
                counts[key.kid] = counts.get(key.kid, 0) + 1
        duplicated = {kid for kid, count in counts.items() if count > 1}
        for kid in sorted(duplicated):
            skipped.append(f"kid {_short(kid)}: published by {counts[kid]} keys; none is used")
        return cls(key for key in usable if key.kid not in duplicated), skipped

    def __contains__(self, kid: object) -> bool:
        return kid in self._by_kid

    def __len__(self) -> int:
        return len(self.keys)

    def select(self, kid: str | None, alg: str) -> Jwk:
        """The key that must verify a token with this ``kid`` and ``alg``, or TokenRejected."""
        if kid is not None:
            key = self._by_kid.get(kid)
            if key is None:
                raise TokenRejected(UNKNOWN_KEY, f"no signing key with kid {_short(kid)}")
            if alg not in key.algorithms:
                raise TokenRejected(
                    INVALID_SIGNATURE, f"key {_short(kid)} ({key.kty}) is not usable with {alg}"
                )
            return key
        # Without a kid, trying every key would turn one token into many verifications; only an
        # unambiguous choice is made.
        fitting = [key for key in self.keys if alg in key.algorithms]
        if len(fitting) != 1:
            raise TokenRejected(UNKNOWN_KEY, f"token has no kid and {len(fitting)} published keys fit {alg}")
        return fitting[0]


def parse_jwk(entry: Any) -> Jwk:
    """Check one JWK against the policy and build its key; ValueError says why it is unusable."""
    if not isinstance(entry, Mapping):
        raise ValueError("not an object")
    kid = entry.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ValueError("kid is not a string")
    use = entry.get("use")
    if use is not None and use != "sig":
        raise ValueError(f"use is {_short(use)}, not 'sig'")
    key_ops = entry.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise ValueError("key_ops does not allow 'verify'")
    if _PRIVATE_MEMBERS.intersection(entry):
        raise ValueError("carries private or symmetric key material")
    kty = entry.get("kty")
    key: PublicKey
    if kty == "RSA":
        key, allowed = _rsa_key(entry), RSA_ALGORITHMS
    elif kty == "EC":
        key, curve = _ec_key(entry)
        allowed = frozenset({_ES_FOR_CURVE[curve]})
    else:
        raise ValueError(f"unsupported kty {_short(kty)}")
    alg = entry.get("alg")
    if alg is not None and not isinstance(alg, str):
        raise ValueError("alg is not a string")
    if alg is not None:
        # RFC 8725 3.1: a key is bound to one algorithm when its publisher says so.
        if alg not in allowed:
            raise ValueError(f"alg {_short(alg)} does not fit this {kty} key or is not allowed")
        allowed = frozenset({alg})
    members = ("n", "e") if kty == "RSA" else ("crv", "x", "y")
    identity = json.dumps([kid, sorted(allowed), [entry.get(m) for m in members]]).encode()
    return Jwk(
        kid=kid,
        kty=kty,
        algorithms=allowed,
        verifier=Verifier(key, allowed),
        fingerprint=hashlib.sha256(identity).hexdigest(),
    )


def _rsa_key(entry: Mapping[str, Any]) -> PublicKey:
    n = _uint(entry, "n")
    e = _uint(entry, "e")
    bits = n.bit_length()
    if bits < MIN_RSA_BITS:
        raise ValueError(f"RSA modulus of {bits} bits is shorter than {MIN_RSA_BITS}")
    if bits > MAX_RSA_BITS:
        raise ValueError(f"RSA modulus of {bits} bits is longer than {MAX_RSA_BITS}")
    if e < 3 or e % 2 == 0 or e.bit_length() > 64:
        raise ValueError("RSA public exponent is not an odd number between 3 and 2**64")
    if is_roca_modulus(n):
        raise ValueError("RSA modulus has the ROCA fingerprint (CVE-2017-15361)")
    return rsa_public_key(n, e)


def _ec_key(entry: Mapping[str, Any]) -> tuple[PublicKey, str]:
    curve = entry.get("crv")
    if not isinstance(curve, str) or curve not in CURVE_SIZES:
        raise ValueError(f"unsupported crv {_short(curve)}")
    size = CURVE_SIZES[curve]
    coordinates = []
    for member in ("x", "y"):
        raw = _bytes(entry, member)
        # RFC 7518 6.2.1.2: each coordinate is the full size of the curve.
        if len(raw) != size:
            raise ValueError(f"{member} is {len(raw)} bytes, {curve} needs {size}")
        coordinates.append(int.from_bytes(raw, "big"))
    return ec_public_key(curve, coordinates[0], coordinates[1]), curve


def _bytes(entry: Mapping[str, Any], member: str) -> bytes:
    value = entry.get(member)
    if not isinstance(value, str):
        raise ValueError(f"{member} is missing or not a string")
    return base64url.decode(value)


def _uint(entry: Mapping[str, Any], member: str) -> int:
    raw = _bytes(entry, member)
    if not raw:
        raise ValueError(f"{member} is empty")
    return int.from_bytes(raw, "big")


# ROCA (CVE-2017-15361): moduli made by the vulnerable Infineon library are congruent, modulo
# each of these small primes, to a power of 65537. A random modulus passes all of them with a
# probability far below 2**-100, so the test has no practical false positives.
_ROCA_PRIMES: Final = (
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
    101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
)  # fmt: skip


def _powers_of_65537(prime: int) -> frozenset[int]:
    powers, value = set(), 1
    while value not in powers:
        powers.add(value)
        value = value * 65537 % prime
    return frozenset(powers)


_ROCA_SUBGROUPS: Final = tuple((p, _powers_of_65537(p)) for p in _ROCA_PRIMES)


def is_roca_modulus(n: int) -> bool:
    """True when ``n`` has the fingerprint of a ROCA-vulnerable key."""
    return all(n % prime in powers for prime, powers in _ROCA_SUBGROUPS)


def _short(value: object, limit: int = 64) -> str:
    """A quoted, length-limited rendering of an untrusted value for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
