"""What Quay alone answers and what it answers with ``install``, row by row, per version.

The expected statuses below are the table in docs/quay-integration.md: every cell is measured
here against the real Quay. Set OIDC_QUAY_REPORT to a directory to also get the table with each
answer's user or message, as Markdown.
"""

from __future__ import annotations

import os
from pathlib import Path

from oidc_middleware.quay import lab as harness
from oidc_middleware.quay.lab.scenario import ask, rows
from oidc_middleware.testing import LocalIdP, SigningKey

# Expected statuses per Quay line: (alone with TESTING true, alone with TESTING false, install).
# A refused web login is Quay's error page (400) on 3.15 and a redirect to /oauth-error (302) after.
BEFORE_3_18 = {
    "v1.0 token (appid allowed)": (200, 200, 200),
    "v2.0 token (azp allowed)": (401, 401, 200),
    "OBO token from Developer Hub": (401, 401, 200),
    "audience of another API (Graph)": (200, 200, 401),
    "v2.0 azp not allowed": (401, 401, 401),
    "v1.0 appid not allowed": (200, 200, 401),
    "expired (v1.0)": (200, 401, 401),
    "forged signature (v1.0)": (200, 401, 401),
    "Quay's own OAuth token": (200, 200, 200),
    "no credentials": (401, 401, 401),
    "docker login, v2.0 token": (401, 401, 200),
    "docker login, v1.0 token": (200, 200, 200),
}
EXPECTED = {
    "3.15": {**BEFORE_3_18, "web login, v2.0 ID token": (400, 400, 200)},
    "3.17": {**BEFORE_3_18, "web login, v2.0 ID token": (302, 302, 200)},
    "3.18": {
        "v1.0 token (appid allowed)": (200, 200, 200),
        "v2.0 token (azp allowed)": (200, 200, 200),
        "OBO token from Developer Hub": (200, 200, 200),
        "audience of another API (Graph)": (200, 401, 401),
        "v2.0 azp not allowed": (401, 401, 401),
        "v1.0 appid not allowed": (200, 200, 401),
        "expired (v1.0)": (200, 401, 401),
        "forged signature (v1.0)": (200, 401, 401),
        "Quay's own OAuth token": (200, 200, 200),
        "no credentials": (401, 401, 401),
        "docker login, v2.0 token": (200, 200, 200),
        "docker login, v1.0 token": (200, 200, 200),
        "web login, v2.0 ID token": (200, 200, 200),
    },
}


def test_quay_alone_and_with_install_row_by_row(
    quay: harness.QuayInstall,
    alone: harness.QuayServer,
    alone_strict: harness.QuayServer,
    installed: harness.QuayServer,
    entra: LocalIdP,
    attacker_key: SigningKey,
) -> None:
    table = {}
    for row in rows():
        credential = row.credential(entra, attacker_key)
        table[row.title] = tuple(
            ask(server, entra, row.kind, credential) for server in (alone, alone_strict, installed)
        )
    report = os.environ.get("OIDC_QUAY_REPORT")
    if report:
        lines = [
            f"| {row} | " + " | ".join(f"{status} {detail}" for status, detail in cells) + " |"
            for row, cells in table.items()
        ]
        Path(report).mkdir(parents=True, exist_ok=True)
        (Path(report) / f"table-{quay.version}.md").write_text("\n".join(lines) + "\n")
    statuses = {row: tuple(status for status, _ in cells) for row, cells in table.items()}
    assert statuses == EXPECTED[quay.line], table
