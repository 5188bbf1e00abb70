"""The ``oidc-middleware`` command.

``oidc-middleware demo`` runs the example Quay-shaped app behind the middleware against an
Entra-shaped provider on loopback, sends real HTTP requests and prints each decision and the audit
events. Exit status 0 when every request got the expected status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oidc-middleware", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="the example Quay-shaped app behind the middleware, over real HTTP")
    arguments = parser.parse_args(argv)
    if arguments.command == "demo":
        from .demo import run

        return run()
    return 2  # pragma: no cover - argparse refuses unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
