#!/bin/sh
# The one build step of a Quay image with oidc-middleware (see Containerfile beside this file), and
# exactly what the project's Quay lab runs to make its "image" from a Quay tree and virtualenv:
# install the wheel into the Python that runs Quay's gunicorn, then add the two lines of
# oidc_middleware.quay.install to Quay's own web.py and registry.py of this very image.
#
#   QUAYDIR      Quay's tree (in Quay's image: /quay-registry, the default)
#   QUAY_PYTHON  the interpreter of Quay's gunicorn (default: python3 beside gunicorn on PATH)
#   arguments    the wheel to install (and any pip option, such as --no-index --find-links DIR)
set -eu
QUAYDIR="${QUAYDIR:-/quay-registry}"
if [ -z "${QUAY_PYTHON:-}" ]; then
    GUNICORN="$(command -v gunicorn || true)"
    if [ -z "$GUNICORN" ]; then
        echo "no gunicorn on PATH: set QUAY_PYTHON to the interpreter of Quay's gunicorn" >&2
        exit 2
    fi
    QUAY_PYTHON="$(dirname "$GUNICORN")/python3"
fi
"$QUAY_PYTHON" -m pip install --no-cache-dir --disable-pip-version-check "$@"
# Refuses (exit 2) a web.py or registry.py without Quay's anchor line or with a hand-made install
# line; a second run changes nothing.
"$QUAY_PYTHON" -m oidc_middleware.cli quay patch "$QUAYDIR"
