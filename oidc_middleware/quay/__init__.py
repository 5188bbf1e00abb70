"""Everything that knows Quay: the integration (:func:`install`) and the lab that runs the real Quay.

* ``integration``: :func:`install` and :func:`remove`, the two lines in Quay's ``web.py`` and
  ``registry.py`` that hand Quay's own OIDC decisions to the validator; :func:`detect` reads the
  installed Quay's shape from its code.
* ``lab``: Quay's source trees installed into cached virtualenvs and served on loopback, for the
  tests, ``oidc-middleware demo --quay`` and the benchmark (needs a checkout of this project).
* ``serve`` and ``build_database``: run with Quay's own Python, inside Quay's tree, by the lab.

Importing this package imports none of Quay's code; ``install`` reads it when it runs.
"""

from __future__ import annotations

from .integration import (
    EXTENSION,
    SUPPORTED,
    Installation,
    QuayShape,
    UnsupportedQuay,
    detect,
    install,
    quay_exception,
    remove,
)

__all__ = [
    "EXTENSION",
    "SUPPORTED",
    "Installation",
    "QuayShape",
    "UnsupportedQuay",
    "detect",
    "install",
    "quay_exception",
    "remove",
]
