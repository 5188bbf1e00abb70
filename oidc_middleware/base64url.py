"""Strict base64url without padding (RFC 7515 section 2 and appendix C).

python-jose accepts ``=`` padding, ``+``/``/`` and trailing junk; a token that is not in the one
canonical encoding is malformed here. Canonical also means the unused low bits of the last
character are zero, so exactly one string encodes each byte sequence.
"""

from __future__ import annotations

import base64
import binascii
import re

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def decode(text: str) -> bytes:
    """Decode canonical unpadded base64url; ValueError for anything else."""
    if not _ALPHABET.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not canonical base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:  # pragma: no cover - the checks above leave nothing for it
        raise ValueError("not canonical base64url") from exc
    if encode(data) != text:
        raise ValueError("not canonical base64url (non-zero unused bits)")
    return data


def encode(data: bytes) -> str:
    """Encode bytes as unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_uint(text: str) -> int:
    """Decode a JWK base64urlUInt (RFC 7518 section 2) to an int."""
    data = decode(text)
    if not data:
        raise ValueError("empty integer")
    return int.from_bytes(data, "big")
