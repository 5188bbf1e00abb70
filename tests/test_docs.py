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


def test_the_entra_configuration_examples_pass_check_config() -> None:
    """docs/entra.md promises its three examples load and pass check-config (TESTING: false too)."""
    import re

    import yaml

    from oidc_middleware.config import load_config, quay_settings_problems

    text = (ROOT / "docs" / "entra.md").read_text()
    blocks = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    examples = [block for block in blocks if isinstance(block, dict) and "AZURE_LOGIN_CONFIG" in block]
    assert len(examples) == 3
    for example in examples:
        assert load_config(example).providers[0].id == "azure"
        assert quay_settings_problems(example) == []
