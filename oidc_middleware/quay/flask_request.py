"""The WSGI environ of the request Quay is serving, for the audit events of Quay's own calls."""

from __future__ import annotations

import sys
from typing import Any


def current_environ() -> dict[str, Any] | None:
    """The environ of Flask's current request (the dict the middleware saw), None outside one."""
    flask = sys.modules.get("flask")
    if flask is None or not flask.has_request_context():
        return None
    environ: dict[str, Any] = flask.request.environ
    return environ
