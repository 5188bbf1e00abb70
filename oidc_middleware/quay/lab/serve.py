"""Serve Quay's app on loopback, built as Quay's web.py and registry.py build it (run with Quay's
Python, cwd and PYTHONPATH Quay's tree, QUAYCONF the test's configuration directory).

OIDC_QUAY_MODE: ``alone`` (Quay as shipped), ``filter`` (only OIDCMiddleware in front of Quay's
WSGI app) or ``install`` (``oidc_middleware.quay.install(application)``, the two lines an
administrator adds right after ``from app import app as application``). OIDC_QUAY_TESTING: the
value of Quay's TESTING from then on (it must be true while ``app`` is imported, or Quay connects
to Redis). Audit events go, one JSON object per
line, to OIDC_QUAY_AUDIT_LOG. The file ``ready`` beside QUAYCONF says the server listens.
"""

from __future__ import annotations

import os
from pathlib import Path

from app import app as application

# What config.yaml says while importing app: true (false makes Quay connect to Redis); what the
# test asks for from here on, before install() as an administrator's start-up would have it.
application.config["TESTING"] = os.environ["OIDC_QUAY_TESTING"] == "true"
mode = os.environ["OIDC_QUAY_MODE"]
audit = open(os.environ["OIDC_QUAY_AUDIT_LOG"], "a", buffering=1)  # noqa: SIM115 (open while serving)

from oidc_middleware import OIDCMiddleware, configure_json_logging, load_config  # noqa: E402

configure_json_logging(audit)
# Right after `from app import app as application`, as in web.py and registry.py.
if mode == "install":
    from oidc_middleware.quay import install

    validator = install(application)
elif mode == "filter":
    application.wsgi_app = OIDCMiddleware(application.wsgi_app, load_config(application.config))
elif mode != "alone":
    raise SystemExit(f"unknown OIDC_QUAY_MODE {mode!r}")

# The rest of Quay's two entrypoints: one app serves /api, /oauth2, the web routes, /v1 and /v2.
import registry  # noqa: E402, F401
import web  # noqa: E402, F401
from werkzeug.serving import make_server  # noqa: E402

server = make_server("127.0.0.1", int(os.environ["OIDC_QUAY_PORT"]), application, threaded=True)
(Path(os.environ["QUAYCONF"]).parent / "ready").touch()
server.serve_forever()
