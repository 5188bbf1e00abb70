"""Canonical unpadded base64url: one encoding per byte string, everything else refused."""

from __future__ import annotations

import os

import pytest

from oidc_middleware.base64url import decode, encode


@pytest.mark.parametrize("size", range(0, 40))
def test_every_length_round_trips(size: int) -> None:
    data = os.urandom(size)
    assert decode(encode(data)) == data


@pytest.mark.parametrize(
    "text",
    [
        "QQ==",  # padding
        "QQ=",
        "+/8",  # the standard alphabet's characters
        "_/8",
        "QUJD+A",
        "QUJD/A",
        "QUJ",  # 'J' carries a set bit that no byte string encodes
        "QR",  # the same for a two-character group
        "Q",  # a length no byte string has
        "QUJD\nQQ",  # whitespace
        "QUJD QQ",
        "QUJDé",  # not ASCII
        "QU!D",
        "QUJD=QQ",  # padding inside
    ],
)
def test_non_canonical_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        decode(text)


def test_the_url_safe_characters_decode() -> None:
    assert decode("-_8") == b"\xfb\xff"
    assert encode(b"\xfb\xff") == "-_8"
