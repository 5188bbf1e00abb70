"""``oidc-middleware quay patch QUAY_DIR``: the two lines of :func:`install` in Quay's own
``web.py`` and ``registry.py``, right after ``from app import app as application``, so that a
derived image carries Quay's entrypoints of its own version, never copies from another.

* idempotent: a file that already has the lines is left as it is, and said so;
* refuses, with one line and exit status 2, a file without the anchor line or one that holds an
  ``install`` line this command did not write (someone's hand edit: look at it first);
* ``--check`` reports and writes nothing (exit 0 when both files have the lines, 1 when a patch
  would change them, 2 when it would refuse).

A file is replaced whole (written beside it, then renamed), keeping its mode.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

ANCHOR: Final = "from app import app as application"
LINES: Final = (
    "from oidc_middleware.quay import install  # added by oidc-middleware quay patch",
    "validator = install(application)",
)
ENTRYPOINTS: Final = ("web.py", "registry.py")


class Refused(Exception):
    """The file cannot be patched safely; the message says why, in one line."""


@dataclass(frozen=True)
class Outcome:
    path: Path
    changed: bool  # True: patched (or, with --check, would be)
    text: str  # the file's new text


def patched(path: Path) -> Outcome:
    """What patching ``path`` gives, without writing; :class:`Refused` when it must not be."""
    try:
        with open(path, encoding="utf-8", newline="") as source:  # line endings kept as they are
            text = source.read()
    except (OSError, UnicodeDecodeError) as problem:
        raise Refused(f"{path}: cannot read it ({getattr(problem, 'strerror', None) or problem})") from None
    lines = text.splitlines(keepends=True)
    # At the top level only: an indented anchor (inside an if or try) would need indented lines.
    anchors = [index for index, line in enumerate(lines) if line.rstrip("\r\n") == ANCHOR]
    if len(anchors) != 1:
        found = "no" if not anchors else f"{len(anchors)}"
        raise Refused(f"{path}: {found} unindented line '{ANCHOR}'; not a Quay entrypoint this command knows")
    after = anchors[0] + 1
    ours = [line.rstrip("\r\n") for line in lines[after : after + len(LINES)]]
    if ours == list(LINES):
        others = lines[:after] + lines[after + len(LINES) :]
        if _mentions_install(others):
            raise Refused(f"{path}: holds an install line besides this command's; remove it first")
        return Outcome(path, False, text)
    if _mentions_install(lines):
        raise Refused(f"{path}: holds an install line that this command did not write; remove it first")
    anchor = lines[anchors[0]]
    ending = anchor[len(ANCHOR) :] or ("\r\n" if "\r\n" in text else "\n")  # the file's own
    lines[anchors[0]] = ANCHOR + ending
    inserted = [line + ending for line in LINES]
    return Outcome(path, True, "".join(lines[:after] + inserted + lines[after:]))


def _mentions_install(lines: list[str]) -> bool:
    return any("oidc_middleware" in line or "install(application" in line for line in lines)


def run(quay_dir: str, *, check: bool, out: TextIO) -> int:
    """Patch (or, with ``check``, inspect) both entrypoints of the Quay tree ``quay_dir``."""
    root = Path(quay_dir)
    outcomes = []
    for name in ENTRYPOINTS:
        try:
            outcomes.append(patched((root / name).resolve()))  # a symlink's target is patched
        except Refused as refused:
            print(f"refused: {refused}", file=out)
            return 2
    for outcome in outcomes:
        if not outcome.changed:
            print(f"{outcome.path}: already has the two lines; unchanged", file=out)
        elif check:
            print(f"{outcome.path}: would add the two lines after '{ANCHOR}'", file=out)
        else:
            _replace(outcome.path, outcome.text)
            print(f"{outcome.path}: added the two lines after '{ANCHOR}'", file=out)
    return 1 if check and any(outcome.changed for outcome in outcomes) else 0


def _replace(path: Path, text: str) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
