"""The derived image's build step (examples/quay-image/install-oidc-middleware.sh, the one RUN of
the Containerfile) on the real Quay trees: it patches Quay's own entrypoints of each version, and
a second run changes nothing. Quay runs from such a patched tree in test_deployed.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

from oidc_middleware.quay import lab as harness
from oidc_middleware.quay.patch import ANCHOR, LINES


def test_the_image_step_patches_quays_own_entrypoints_once(
    quay: harness.QuayInstall, project_wheel: Path, tmp_path: Path
) -> None:
    tree = harness.build_image(quay, project_wheel, tmp_path)
    for name in ("web.py", "registry.py"):
        original = (quay.tree / name).read_text().splitlines()
        patched = (tree / name).read_text().splitlines()
        anchor = patched.index(ANCHOR)
        assert patched[anchor + 1 : anchor + 3] == list(LINES)
        assert patched[: anchor + 1] + patched[anchor + 3 :] == original
    again = subprocess.run(
        ["sh", str(harness.IMAGE_STEP), str(project_wheel)],
        env={**harness.clean_environment(), "QUAYDIR": str(tree), "QUAY_PYTHON": str(quay.python)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already has the two lines; unchanged") == 2
