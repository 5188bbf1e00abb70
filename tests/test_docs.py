"""The docs cannot drift from the code: every reason code and every configuration key is documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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

    from oidc_middleware.config import load_config
    from oidc_middleware.quay_settings import quay_settings_problems

    text = (ROOT / "docs" / "entra.md").read_text()
    blocks = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    examples = [block for block in blocks if isinstance(block, dict) and "AZURE_LOGIN_CONFIG" in block]
    assert len(examples) == 3
    for example in examples:
        assert load_config(example).providers[0].id == "azure"
        assert quay_settings_problems(example) == []


def _config_blocks() -> list[tuple[str, dict[str, Any]]]:
    """Every YAML block of README.md and docs/ holding a *_LOGIN_CONFIG, and examples/config.yaml."""
    import re

    import yaml

    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, block in enumerate(re.findall(r"```ya?ml\n(.*?)```", path.read_text(), re.S)):
            document = yaml.safe_load(block)
            if isinstance(document, dict) and any(str(key).endswith("_LOGIN_CONFIG") for key in document):
                found.append((f"{path.name} block {number}", document))
    found.append(("examples/config.yaml", yaml.safe_load((ROOT / "examples" / "config.yaml").read_text())))
    return found


def test_every_configuration_in_the_docs_and_examples_passes_check_config() -> None:
    """What Quay's own start-up refuses (config-tool's required fields, 3.18's empty lists) is in
    no example. Blocks that set TESTING are whole configurations and have no problem at all; the
    others show a few settings, and may leave TESTING to the rest of the file."""
    from oidc_middleware.config import load_config
    from oidc_middleware.quay_settings import quay_settings_problems

    blocks = _config_blocks()
    assert len(blocks) >= 15
    for where, document in blocks:
        load_config(document)
        problems = quay_settings_problems(document)
        if "TESTING" not in document:
            problems = [problem for problem in problems if not problem.startswith("TESTING:")]
        assert problems == [], where


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lowercase, punctuation but '-' and '_' dropped,
    spaces made '-'."""
    import re

    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_every_relative_link_and_anchor_in_the_docs_exists() -> None:
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "tests" / "e2e" / "README.md"]
    anchors = {}
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # no headings in code blocks
        anchors[page.resolve()] = {
            _anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")
        }
    dead = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto: ...
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page.resolve()
            if not resolved.exists():
                dead.append(f"{page.name}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors.get(resolved, set()):
                dead.append(f"{page.name}: {target} (no such heading)")
    assert dead == []
