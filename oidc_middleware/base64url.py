"""Strict base64url without padding (RFC 7515 section 2 and appendix C).

python-jose accepts ``=`` padding, ``+``/``/`` and trailing junk; a token that is not in the one
canonical encoding is malformed here. Canonical also means the unused low bits of the last
character are zero, so exactly one string encodes each byte sequence.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

# To the standard alphabet, which binascii decodes: '-' and '_' become '+' and '/', while '+', '/'
# and '=' (not base64url, or padding) become '!', which strict decoding refuses in the same pass.
_TO_STANDARD: Final = bytes.maketrans(b"-_+/=", b"+/!!!")
_PADDING: Final = (b"", b"", b"==", b"=")  # by the length of the final group
_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_VALUE: Final = {char: index for index, char in enumerate(_ALPHABET)}
# Low bits of the last character that carry no data, by the length of the final group.
_UNUSED_BITS_MASK: Final = {2: 0b1111, 3: 0b11}


def decode(text: str) -> bytes:
    """Decode canonical unpadded base64url; ValueError for anything else."""
    remainder = len(text) % 4
    if remainder == 1:
        raise ValueError("not canonical base64url")
    if remainder and _VALUE.get(text[-1], 0) & _UNUSED_BITS_MASK[remainder]:
        raise ValueError("not canonical base64url (non-zero unused bits)")
    try:
        # strict_mode refuses every character outside the alphabet, whitespace included.
        standard = text.encode("ascii").translate(_TO_STANDARD) + _PADDING[remainder]
        return binascii.a2b_base64(standard, strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not canonical base64url") from exc


def encode(data: bytes) -> str:
    """Encode bytes as unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
