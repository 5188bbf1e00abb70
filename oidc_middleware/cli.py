"""The ``oidc-middleware`` command.

oidc-middleware check-config CONFIG [--online]        validate a Quay config.yaml
oidc-middleware explain --config CONFIG [--online] [TOKEN | -]
                                                      what the middleware decides for a token, and why
oidc-middleware demo                                  the example app behind the middleware, over HTTP
oidc-middleware demo --quay                           the real Quay 3.17.4 alone, with the middleware, with install
oidc-middleware quay patch QUAY_DIR [--check]         add install's two lines to Quay's web.py and registry.py
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="oidc-middleware",
        description="OIDC bearer-token validation for Red Hat Quay: check a configuration, explain a decision, run the demo.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check-config",
        help="validate a Quay config.yaml; --online fetches keys too",
        epilog="Exit status: 0 valid (and, with --online, every provider reachable with usable keys), 1 otherwise.",
    )
    check.add_argument("config", help="path of Quay's config.yaml")
    check.add_argument("--online", action="store_true", help="fetch discovery documents and keys")
    explain = commands.add_parser(
        "explain",
        help="say step by step what the middleware decides for a token",
        epilog="Exit status: 0 accepted (offline: every check but the signature passed; use --online "
        "before trusting it), 1 refused, 2 the configuration could not be loaded.",
    )
    explain.add_argument("--config", required=True, help="path of Quay's config.yaml")
    explain.add_argument("--online", action="store_true", help="fetch keys and check the signature too")
    explain.add_argument(
        "token", nargs="?", default="-", help="the token, or - (default) to read it from stdin"
    )
    demo = commands.add_parser(
        "demo",
        help="the example app behind the middleware, over real HTTP; --quay: the real Quay three ways",
        epilog="Exit status: 0 every answer was the expected one, 1 otherwise, 2 (--quay) no Quay source.",
    )
    demo.add_argument(
        "--quay",
        action="store_true",
        help="the real Quay 3.17.4 (from OIDC_QUAY_SOURCES or ../shared/quay; needs a checkout of this "
        "project) alone, with the middleware as a filter and with install, side by side",
    )
    quay = commands.add_parser("quay", help="work on a Quay tree (for a derived image)")
    quay_commands = quay.add_subparsers(dest="quay_command", required=True)
    patch = quay_commands.add_parser(
        "patch",
        help="add the two lines of oidc_middleware.quay.install to Quay's web.py and registry.py",
        epilog="Exit status: 0 patched or already patched; with --check 0 already patched, 1 would "
        "change; 2 refused (no 'from app import app as application' line, or an install line this "
        "command did not write).",
    )
    patch.add_argument("quay_dir", help="Quay's tree (in Quay's image: /quay-registry)")
    patch.add_argument("--check", action="store_true", help="report what would change, write nothing")
    arguments = parser.parse_args(argv)
    if arguments.command == "quay":
        from .quay.patch import run as run_patch

        return run_patch(arguments.quay_dir, check=arguments.check, out=sys.stdout)
    if arguments.command == "demo":
        if arguments.quay:
            from .quay.lab.demo import run as run_quay

            return run_quay()
        from .demo import run

        return run()
    _quiet_logs()
    from .admin import check_config, explain_token

    if arguments.command == "check-config":
        return check_config(arguments.config, online=arguments.online, out=sys.stdout)
    token = sys.stdin.read() if arguments.token == "-" else arguments.token
    return explain_token(arguments.config, token, online=arguments.online, out=sys.stdout)


def _quiet_logs() -> None:
    """The commands report problems themselves; key events would only repeat them."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
