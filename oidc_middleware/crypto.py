"""The one place where python-jose and cryptography check a signature.

Everything around it (parsing, key selection, policy) is ours and strict; this module only turns
key numbers into key objects, once per JWK, and answers "does this signature verify under this
key and this algorithm". python-jose does RS* and ES*; it has no PS*, so those go to
cryptography directly. Keeping both here means python-jose can be replaced in one file.

python-jose silently falls back to pure-Python ``rsa``/``ecdsa`` backends (10-30x slower, and not
the code anyone audited) when cryptography cannot be imported: importing this module refuses that.
"""

from __future__ import annotations

from typing import Final, Union

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from jose import backends as _jose_backends
    from jose.backends.cryptography_backend import CryptographyECKey, CryptographyRSAKey
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "oidc_middleware needs python-jose with its cryptography backend "
        "(pip install 'python-jose[cryptography]>=3.5'); refusing the pure-Python backends"
    ) from exc

if _jose_backends.RSAKey is not CryptographyRSAKey or _jose_backends.ECKey is not CryptographyECKey:
    raise ImportError("python-jose is not using its cryptography backend; refusing to start")

PublicKey = Union[rsa.RSAPublicKey, ec.EllipticCurvePublicKey]

_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}

RSA_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
# JWS ES* algorithms and the one curve each is defined for (RFC 7518 section 3.4).
EC_ALGORITHMS: Final[dict[str, str]] = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
SUPPORTED_ALGORITHMS: Final = RSA_ALGORITHMS | frozenset(EC_ALGORITHMS)

_CURVES: Final[dict[str, ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
# Bytes of one coordinate (and of r or s in a JWS ECDSA signature) per curve.
CURVE_SIZES: Final[dict[str, int]] = {"P-256": 32, "P-384": 48, "P-521": 66}


def rsa_public_key(n: int, e: int) -> rsa.RSAPublicKey:
    """Build an RSA public key from its numbers; ValueError when cryptography refuses them."""
    return rsa.RSAPublicNumbers(e, n).public_key()


def ec_public_key(crv: str, x: int, y: int) -> ec.EllipticCurvePublicKey:
    """Build an EC public key; ValueError when the point is not on the curve."""
    return ec.EllipticCurvePublicNumbers(x, y, _CURVES[crv]).public_key()


class Verifier:
    """Checks signatures for one public key, for the algorithms the key fits.

    Built once per JWK when a key set is loaded, so no per-token key construction happens.
    """

    __slots__ = ("_jose", "_key", "_size")

    def __init__(self, key: PublicKey, algorithms: frozenset[str]) -> None:
        self._key = key
        if isinstance(key, rsa.RSAPublicKey):
            self._size = (key.key_size + 7) // 8
            self._jose = {alg: CryptographyRSAKey(key, alg) for alg in algorithms if alg.startswith("RS")}
        else:
            self._size = 2 * CURVE_SIZES[_curve_name(key)]
            self._jose = {alg: CryptographyECKey(key, alg) for alg in algorithms}

    def verify(self, alg: str, signing_input: bytes, signature: bytes) -> bool:
        """True when ``signature`` is valid for ``signing_input`` under ``alg`` and this key.

        The caller has already decided that this key may be used with ``alg``.
        """
        # RFC 7518 3.3 and 3.4: an RSA signature is exactly the modulus length; an ECDSA one is
        # r||s, each left-padded to the curve size. Anything else (DER, truncated, padded) fails.
        if len(signature) != self._size:
            return False
        if alg.startswith("PS"):
            return _verify_pss(self._key, alg, signing_input, signature)
        jose_key = self._jose.get(alg)
        return bool(jose_key is not None and jose_key.verify(signing_input, signature))


def _verify_pss(key: PublicKey, alg: str, signing_input: bytes, signature: bytes) -> bool:
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    digest = _HASHES[alg[2:]]()
    # RFC 7518 3.5: MGF1 with the same hash, salt as long as the hash output.
    pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
    try:
        key.verify(signature, signing_input, pss, digest)
    except InvalidSignature:
        return False
    return True


def _curve_name(key: ec.EllipticCurvePublicKey) -> str:
    for name, curve in _CURVES.items():
        if curve.name == key.curve.name:
            return name
    raise ValueError(f"unsupported curve {key.curve.name}")
