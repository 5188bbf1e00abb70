"""Serve Quay's app on loopback, built as Quay's web.py and registry.py build it (run with Quay's
Python, cwd and PYTHONPATH Quay's tree, QUAYCONF the test's configuration directory).

OIDC_QUAY_MODE: ``alone`` (Quay as shipped), ``filter`` (only OIDCMiddleware in front of Quay's
WSGI app) or ``install`` (``oidc_middleware.quay.install(application)``, the two lines an
administrator adds). OIDC_QUAY_TESTING: the value of Quay's TESTING while serving (it must be
true while ``app`` is imported, or Quay connects to Redis). Audit events go, one JSON object per
line, to OIDC_QUAY_AUDIT_LOG. The file ``ready`` beside QUAYCONF says the server listens.
"""

from __future__ import annotations

import os
from pathlib import Path

import registry  # noqa: F401  (Quay's registry entrypoint: /v1 and /v2 on the same app)
import web  # noqa: F401  (Quay's web entrypoint: /api, /oauth2 and the web routes)
from app import app as application
from werkzeug.serving import make_server

from oidc_middleware import OIDCMiddleware, configure_json_logging, load_config

mode = os.environ["OIDC_QUAY_MODE"]
audit = open(os.environ["OIDC_QUAY_AUDIT_LOG"], "a", buffering=1)  # noqa: SIM115 (open while serving)
configure_json_logging(audit)
if mode == "install":
    from oidc_middleware.quay import install

    validator = install(application)
elif mode == "filter":
    application.wsgi_app = OIDCMiddleware(application.wsgi_app, load_config(application.config))
elif mode != "alone":
    raise SystemExit(f"unknown OIDC_QUAY_MODE {mode!r}")
application.config["TESTING"] = os.environ["OIDC_QUAY_TESTING"] == "true"

server = make_server("127.0.0.1", int(os.environ["OIDC_QUAY_PORT"]), application, threaded=True)
(Path(os.environ["QUAYCONF"]).parent / "ready").touch()
server.serve_forever()
