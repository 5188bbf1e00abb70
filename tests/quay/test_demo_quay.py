"""oidc-middleware demo --quay: the real Quay 3.17.4 three ways, every cell as expected."""

from __future__ import annotations

import io
import json
from pathlib import Path

from oidc_middleware.quay.lab.demo import EXPECTED, EXPECTED_EXCHANGES, run


def test_the_quay_demo_prints_three_columns_and_every_cell_is_expected(quay_sources: Path) -> None:
    out = io.StringIO()
    assert run(out) == 0, out.getvalue()
    text = out.getvalue()
    table, events = text.split("audit events of the 'with install' column (oidc_middleware.audit, JSON):")
    assert "Quay alone" in table and "with the middleware as a filter" in table and "with install" in table
    for title in [*EXPECTED, *EXPECTED_EXCHANGES]:
        assert f"  {title}" in table
    assert "robot federation: buynlarge+ci" in table
    assert "401 Issuer /sts/{tid}/ not configured" not in table  # v1.0 is Quay's own issuer
    assert "401 Issuer /{tid}/v2.0 not configured" in table  # v2.0, before install
    lines = [json.loads(line) for line in events.splitlines() if line.startswith("{")]
    assert lines[0]["event"] == "oidc.quay.installed"
    assert {line["event"] for line in lines[1:]} == {
        "oidc.token.accepted",
        "oidc.token.rejected",
        "oidc.token.passthrough",
    }
    assert text.rstrip().splitlines()[-1].startswith("every cell was what the demo expected")
