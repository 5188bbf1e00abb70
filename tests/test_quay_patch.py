"""oidc-middleware quay patch: the two lines of install in Quay's web.py and registry.py, once,
right after Quay's own import of its app; refusals in one line with exit status 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_admin import run

from oidc_middleware.quay.patch import LINES

WEB = """import os
import logging

from app import app as application
from endpoints.web import web

application.register_blueprint(web)
"""


def tree(tmp_path: Path, web: str = WEB, registry: str | None = None) -> Path:
    (tmp_path / "web.py").write_text(web)
    (tmp_path / "registry.py").write_text(registry if registry is not None else WEB.replace("web", "v2"))
    return tmp_path


def test_the_two_lines_go_right_after_the_app_import_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    quay = tree(tmp_path)
    (quay / "web.py").chmod(0o640)
    first = run("quay", "patch", str(quay))
    assert first.returncode == 0, first.stdout
    assert first.stdout.count("added the two lines after 'from app import app as application'") == 2
    lines = (quay / "web.py").read_text().splitlines()
    anchor = lines.index("from app import app as application")
    assert lines[anchor + 1 : anchor + 3] == list(LINES)
    assert (quay / "web.py").read_text().replace("\n".join(LINES) + "\n", "") == WEB  # nothing else
    assert os.stat(quay / "web.py").st_mode & 0o777 == 0o640
    before = {name: (quay / name).read_text() for name in ("web.py", "registry.py")}
    second = run("quay", "patch", str(quay))
    assert second.returncode == 0
    assert second.stdout.count("already has the two lines; unchanged") == 2
    assert {name: (quay / name).read_text() for name in before} == before


def test_check_reports_without_writing(tmp_path: Path) -> None:
    quay = tree(tmp_path)
    checked = run("quay", "patch", "--check", str(quay))
    assert (checked.returncode, checked.stdout.count("would add the two lines")) == (1, 2)
    assert (quay / "web.py").read_text() == WEB
    assert run("quay", "patch", str(quay)).returncode == 0
    assert run("quay", "patch", "--check", str(quay)).returncode == 0


@pytest.mark.parametrize(
    ("web", "says"),
    [
        (WEB.replace("from app import app as application\n", "from app import app\n"),
         "no unindented line 'from app import app as application'"),
        (WEB + "from app import app as application\n", "2 unindented line 'from app import app as application'"),
        (WEB.replace("from app import app as application\n", "try:\n    from app import app as application\nexcept ImportError:\n    raise\n"),
         "no unindented line"),
        (WEB.replace("from endpoints.web", "from oidc_middleware.quay import install\nvalidator = install(application)\nfrom endpoints.web"),
         "holds an install line that this command did not write"),
    ],
    ids=["no-anchor", "two-anchors", "an-indented-anchor", "a-hand-made-install-line"],
)  # fmt: skip
def test_refusals_are_one_line_with_status_2_and_change_nothing(tmp_path: Path, web: str, says: str) -> None:
    quay = tree(tmp_path, web)
    for arguments in (("quay", "patch"), ("quay", "patch", "--check")):
        refused = run(*arguments, str(quay))
        assert refused.returncode == 2
        assert refused.stdout.splitlines() == [refused.stdout.strip()] and says in refused.stdout
    assert (quay / "web.py").read_text() == web
    assert "oidc_middleware" not in (quay / "registry.py").read_text()  # all or nothing


def test_a_missing_entrypoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "web.py").write_text(WEB)
    refused = run("quay", "patch", str(tmp_path))
    assert refused.returncode == 2 and "registry.py: cannot read it" in refused.stdout


def test_an_anchor_that_ends_the_file(tmp_path: Path) -> None:
    quay = tree(tmp_path, "from app import app as application", "from app import app as application\n")
    assert run("quay", "patch", str(quay)).returncode == 0
    assert (quay / "web.py").read_text() == "from app import app as application\n" + "\n".join(LINES) + "\n"


def test_crlf_line_endings_are_kept_and_a_symlinks_target_is_patched(tmp_path: Path) -> None:
    target = tmp_path / "real-web.py"
    target.write_bytes(WEB.replace("\n", "\r\n").encode())
    (tmp_path / "web.py").symlink_to(target)
    (tmp_path / "registry.py").write_text(WEB)
    assert run("quay", "patch", str(tmp_path)).returncode == 0
    assert (tmp_path / "web.py").is_symlink()
    patched = target.read_bytes().decode()
    assert "\r\n".join(LINES) + "\r\n" in patched and "\n" not in patched.replace("\r\n", "")
    assert run("quay", "patch", str(tmp_path)).stdout.count("already has the two lines") == 2
