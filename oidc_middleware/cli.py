"""The ``oidc-middleware`` command.

``oidc-middleware demo`` starts an Entra-shaped identity provider on loopback (v1.0 and v2.0
issuers of one tenant, one key set), builds a Quay ``config.yaml`` for it, and runs the tokens a
Quay deployment meets through :class:`TokenValidator`, printing each decision. Exit status 0 when
every decision is the expected one.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from .errors import TokenRejected
from .testing import LocalIdP, SigningKey
from .validator import TokenValidator

QUAY_CLIENT_ID = "5f0c9a1e-0000-4000-8000-00000000c1a1"
RHDH_CLIENT = "2b7e4c3d-0000-4000-8000-0000000d0b0b"
CI_CLIENT = "9a8b7c6d-0000-4000-8000-0000000000c1"
OUTSIDER = "0dd0dd0d-0000-4000-8000-0000000bad00"
USER = "6e5d4c3b-0000-4000-8000-00000000a11c"


@dataclass(frozen=True)
class Scenario:
    title: str
    expected: str  # "accepted" or a reason code
    token: Callable[[LocalIdP], str]


def _scenarios(attacker: SigningKey) -> list[Scenario]:
    def expired(idp: LocalIdP) -> str:
        return idp.token(version="2.0", client=CI_CLIENT, now=time.time() - 7200)

    return [
        Scenario("v1.0 app-only token of a CI service principal", "accepted",
                 lambda idp: idp.token(version="1.0", client=CI_CLIENT)),
        Scenario("v2.0 app-only token of the same principal", "accepted",
                 lambda idp: idp.token(version="2.0", client=CI_CLIENT)),
        Scenario("v2.0 On-Behalf-Of token from Developer Hub", "accepted",
                 lambda idp: idp.token(version="2.0", client=RHDH_CLIENT, user=USER)),
        Scenario("v1.0 On-Behalf-Of token from Developer Hub", "accepted",
                 lambda idp: idp.token(version="1.0", client=RHDH_CLIENT, user=USER)),
        Scenario("v1.0 token of an app not in OIDC_ALLOWED_CLIENTS", "client_not_allowed",
                 lambda idp: idp.token(version="1.0", client=OUTSIDER)),
        Scenario("v2.0 token of an app not in OIDC_ALLOWED_CLIENTS", "client_not_allowed",
                 lambda idp: idp.token(version="2.0", client=OUTSIDER)),
        Scenario("token for Microsoft Graph, not for Quay", "invalid_audience",
                 lambda idp: idp.token(audience="https://graph.microsoft.com", client=CI_CLIENT)),
        Scenario("token expired an hour ago", "token_expired", expired),
        Scenario("token signed by an attacker's key under Entra's kid", "invalid_signature",
                 lambda idp: idp.token(key=attacker, client=CI_CLIENT)),
        Scenario("token with alg 'none'", "unsupported_algorithm",
                 lambda idp: idp.token(header={"alg": "none"}, client=CI_CLIENT)),
        Scenario("token from another tenant", "issuer_not_configured",
                 lambda idp: idp.token({**idp.claims(client=CI_CLIENT),
                                        "iss": "https://sts.windows.net/another-tenant/"})),
        Scenario("token with a kid the tenant never published", "unknown_key",
                 lambda idp: idp.token(header={"kid": "forged"}, client=CI_CLIENT)),
        Scenario("not a JWT at all", "malformed_token", lambda idp: "opaque-access-token"),
    ]  # fmt: skip


def demo() -> int:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    scenarios = _scenarios(SigningKey.rsa("entra-key-1"))
    with LocalIdP(keys=[SigningKey.rsa("entra-key-1")]) as idp:
        config = {
            "AZURE_LOGIN_CONFIG": {
                "OIDC_SERVER": idp.v2_server,
                "CLIENT_ID": QUAY_CLIENT_ID,
                "CLIENT_SECRET": "not-shown-anywhere",
                "OIDC_ISSUERS": [idp.v1_issuer, idp.v2_issuer],
                "OIDC_AUDIENCES": ["api://quay-api"],
                "OIDC_ALLOWED_CLIENTS": [RHDH_CLIENT, CI_CLIENT],
            }
        }
        print(f"Entra-shaped tenant on {idp.base_url} (one key set, two issuers)")
        print(f"  v1.0 issuer  {idp.v1_issuer}")
        print(f"  v2.0 issuer  {idp.v2_issuer}")
        print(
            "AZURE_LOGIN_CONFIG: OIDC_AUDIENCES [api://quay-api], OIDC_ALLOWED_CLIENTS [Developer Hub, CI]\n"
        )
        validator = TokenValidator(config)
        failures = 0
        print(f"    {'token':<52} {'decision':<22} detail")
        for scenario in scenarios:
            try:
                principal = validator.validate(scenario.token(idp))
            except TokenRejected as rejection:
                decision, detail = rejection.reason, rejection.description
            else:
                decision = "accepted"
                user = (principal.object_id or "")[:8]
                kind = f"on behalf of user {user}..." if principal.on_behalf_of else "app-only"
                detail = (
                    f"ver {principal.token_version}, azp {(principal.authorized_party or '')[:8]}..., {kind}"
                )
                detail += f", scopes {' '.join(principal.scopes)}" if principal.scopes else ""
                detail += f", roles {' '.join(principal.roles)}" if principal.roles else ""
            mark = "ok " if decision == scenario.expected else "BAD"
            failures += decision != scenario.expected
            print(f"{mark} {scenario.title:<52} {decision:<22} {detail[:90]}")
        fetches = sum(count for path, count in idp.hits.items() if path.endswith("/keys"))
        print(
            f"\nkey set fetched {fetches} time(s) for {len(scenarios)} tokens: keys are cached, "
            f"and an unknown kid refetches at most once per {validator.config.jwks_min_refresh_seconds} s"
        )
    if failures:
        print(f"{failures} decision(s) differ from the expected ones", file=sys.stderr)
        return 1
    print("every decision is the expected one")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oidc-middleware", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="validate Entra-shaped tokens from a loopback provider")
    arguments = parser.parse_args(argv)
    if arguments.command == "demo":
        return demo()
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
