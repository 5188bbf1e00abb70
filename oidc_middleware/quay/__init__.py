"""Everything that knows Quay: the integration (:func:`install`) and, apart, the lab that runs the
real Quay.

* ``integration``: :func:`install` and :func:`remove`, the two lines in Quay's ``web.py`` and
  ``registry.py`` that hand Quay's own OIDC decisions to the validator; :func:`detect` reads the
  installed Quay's shape from its code. It connects ``robot_federation`` (Quay's robot token
  exchange) and ``first_login`` (Quay's first login of a person, without races).
* ``patch``: ``oidc-middleware quay patch``, the two lines written into a Quay tree at image build.
* ``lab`` (a subpackage, test equipment: nothing above imports it): Quay's source trees installed
  into cached virtualenvs and served on loopback, its Entra-shaped tenant, ``demo --quay`` and the
  Quay benchmark; it installs Debian packages and needs a checkout of this project.

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
