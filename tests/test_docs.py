"""The docs cannot drift from the code: every reason code and every configuration key is documented."""

from __future__ import annotations

from pathlib import Path

from oidc_middleware import REASONS
from oidc_middleware.config import SETTINGS

ROOT = Path(__file__).resolve().parent.parent


def test_every_reason_code_has_a_troubleshooting_section() -> None:
    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    headings = {line[3:].strip() for line in text.splitlines() if line.startswith("## ")}
    missing = sorted((REASONS | {"invalid_request", "opaque_token"}) - headings)
    assert missing == []


def test_every_configuration_key_has_a_reference_entry() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    keys = set(SETTINGS) | {
        "OIDC_SERVER", "CLIENT_ID", "CLIENT_SECRET", "OIDC_ISSUER", "OIDC_ISSUERS", "OIDC_AUDIENCES",
        "OIDC_ALLOWED_CLIENTS", "OIDC_JWKS_URI", "SERVER_HOSTNAME", "PREFERRED_URL_SCHEME", "OIDC_MIDDLEWARE_CONFIG",
    }  # fmt: skip
    assert sorted(key for key in keys if f"`{key}`" not in text) == []
