"""The administrator's commands: check a configuration, and explain the decision on one token.

Both narrate the same code the middleware runs: ``check-config`` is :func:`load_config` plus,
online, the validator's own discovery and key fetches; ``explain`` walks the pipeline's steps
(the functions :meth:`TokenValidator._verify` calls, in the same order) and, online, confirms its
verdict with :meth:`TokenValidator.validate` itself. Nothing here decides anything on its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from .claims import (
    authorized_party,
    check_audience,
    check_authorized_party,
    check_identity_claims,
    check_time,
    require_claims,
)
from .config import (
    ConfigSource,
    MiddlewareConfig,
    ProviderConfig,
    load_config,
    normalize_issuer,
    read_document,
)
from .errors import ISSUER_NOT_CONFIGURED, ConfigError, TokenRejected
from .jws import check_algorithm, check_signature, fingerprint, parse_compact, parse_json_object
from .keys import FetchNeeded
from .quay_settings import quay_settings_problems
from .validator import TokenValidator

TROUBLESHOOTING = "docs/troubleshooting.md"
SHOWN_CLAIMS = ("iss", "aud", "azp", "azpacr", "appid", "appidacr", "sub", "oid", "tid", "ver", "idtyp", "scp",
                "roles", "uti", "jti", "iat", "nbf", "exp")  # fmt: skip


def check_config(source: ConfigSource, *, online: bool, out: TextIO) -> int:
    """Print every problem (exit 1) or a summary of the providers (exit 0); online, fetch too."""
    config = _load(source, out)
    if config is None:
        return 1
    print(f"configuration is valid: {len(config.providers)} provider(s)", file=out)
    for provider in config.providers:
        _summary(provider, out)
    quay_problems = quay_settings_problems(read_document(source))
    if quay_problems:
        print(f"\nQuay's own settings have {len(quay_problems)} problem(s):", file=out)
        for problem in quay_problems:
            print(f"  - {problem}", file=out)
    if not online:
        print("\n(offline: discovery documents and keys not fetched; add --online to fetch them)", file=out)
        return 1 if quay_problems else 0
    print("\nonline checks:", file=out)
    validator = TokenValidator(config)
    health = validator.prefetch()["providers"]
    failures = 0
    for provider in config.providers:
        state = health[provider.id]
        discovered = state["discovered_issuer"]
        print(f"  {provider.id}:", file=out)
        if provider.jwks_uri is None or not provider.issuers:
            configured = _configured(provider, discovered)
            print(f"    discovery     {provider.discovery_url}", file=out)
            print(f"    issuer        {discovered or '(not reached)'}{configured}", file=out)
        if state["keys_loaded"]:
            print(
                f"    signing keys  {len(state['kids'])} usable: {', '.join(str(k) for k in state['kids'])}",
                file=out,
            )
        for reason in state["skipped_keys"]:
            print(f"    skipped key   {reason}", file=out)
        if state["last_error"] or not state["keys_loaded"]:
            failures += 1
            print(f"    PROBLEM       {state['last_error'] or 'no usable keys'}", file=out)
        else:
            print("    reachable     yes", file=out)
    return 1 if failures or quay_problems else 0


def explain_token(
    source: ConfigSource, token: str, *, online: bool, out: TextIO, clock: Callable[[], float] = time.time
) -> int:
    """Say, step by step, what the middleware decides for ``token`` and why. Exit 0 if accepted."""
    config = _load(source, out)
    if config is None:
        return 2
    token = token.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    validator = TokenValidator(config, clock=clock)
    print(
        f"token      fingerprint {fingerprint(token)}, {len(token)} bytes (the signature is never shown)",
        file=out,
    )
    steps = _Steps(out)
    try:
        jws = parse_compact(token, max_bytes=config.max_token_bytes)
        claims = parse_json_object(jws.payload, "payload")
    except TokenRejected as rejection:
        steps.failed("parse", rejection)
        return steps.verdict(config, validator, token, online)
    print(f"header     {json.dumps(dict(jws.header), sort_keys=True)}", file=out)
    print("claims", file=out)
    now = clock()
    for name in SHOWN_CLAIMS:
        if name in claims:
            print(f"  {name:<9}{_claim(name, claims[name], now)}", file=out)
    steps.ok("parse", "a strict compact JWS with JSON header and payload")
    try:
        keys = validator.provider_for(claims, may_fetch=online)
    except FetchNeeded:
        steps.skipped("issuer", "some providers take their issuer from discovery; run with --online")
        steps.incomplete = True
        return steps.verdict(config, validator, token, online)
    except TokenRejected as rejection:
        steps.failed("issuer", rejection)
        return steps.verdict(config, validator, token, online)
    provider = keys.provider
    steps.ok("issuer", f"matched provider {provider.id!r} ({provider.config_key})")
    try:
        alg, kid = check_algorithm(jws), jws.kid
    except TokenRejected as rejection:
        steps.failed("signature", rejection)
        return steps.verdict(config, validator, token, online)
    if online:
        try:
            key = check_signature(jws, keys)
            steps.ok("signature", f"key {key.kid!r} ({key.kty}) found; {alg} signature verifies")
        except TokenRejected as rejection:
            steps.failed("signature", rejection)
            return steps.verdict(config, validator, token, online)
    else:
        steps.skipped("signature", f"not checked offline ({alg}, kid {kid!r}); run with --online")
    checks: list[tuple[str, Callable[[], str]]] = [
        ("claims", lambda: _required(claims)),
        ("time", lambda: _time(claims, now, config)),
        ("audience", lambda: f"audience {check_audience(claims, provider)!r} accepted"),
        ("client", lambda: _client(claims, provider)),
        ("identity", lambda: _identity(claims)),
    ]
    for name, check in checks:
        try:
            steps.ok(name, check())
        except TokenRejected as rejection:
            steps.failed(name, rejection)
            break
    return steps.verdict(config, validator, token, online)


class _Steps:
    """Prints the steps as they are taken and the decision at the end."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.reason: str | None = None
        self.signature_checked = False
        self.incomplete = False  # a step could not be taken offline: no decision
        self._started = False

    def ok(self, name: str, detail: str) -> None:
        self.signature_checked |= name == "signature"
        self._line("ok  ", name, detail)

    def skipped(self, name: str, detail: str) -> None:
        self._line("skip", name, detail)

    def failed(self, name: str, rejection: TokenRejected) -> None:
        self.reason = rejection.reason
        self._line("FAIL", name, f"{rejection.reason}: {rejection.description}")

    def _line(self, mark: str, name: str, detail: str) -> None:
        if not self._started:
            print("steps", file=self.out)
            self._started = True
        print(f"  {mark}  {name:<10}{detail}", file=self.out)

    def verdict(self, config: MiddlewareConfig, validator: TokenValidator, token: str, online: bool) -> int:
        out = self.out
        if online:
            # The middleware's own answer, to be sure the narration above tells the truth.
            try:
                validator.validate(token)
                truth = "accepted"
            except TokenRejected as rejection:
                truth = rejection.reason
            if truth != (self.reason or "accepted"):
                print(f"  note: the validator itself answers {truth}", file=out)
                self.reason = None if truth == "accepted" else truth
        if self.reason is None and self.incomplete:
            print("decision   undetermined offline: run with --online", file=out)
            return 1
        if self.reason is None:
            caveat = (
                ""
                if self.signature_checked
                else " (if the signature verifies: run with --online to check it)"
            )
            print(f"decision   accepted{caveat}", file=out)
            return 0
        if self.reason == ISSUER_NOT_CONFIGURED and config.unknown_issuer == "pass":
            print("decision   issuer_not_configured: with UNKNOWN_ISSUER pass, the request reaches Quay "
                  "untouched and without a principal", file=out)  # fmt: skip
        else:
            print(f"decision   {self.reason}", file=out)
        print(f"read       {TROUBLESHOOTING}#{self.reason} (in the oidc_middleware documentation)", file=out)
        return 1


def _load(source: ConfigSource, out: TextIO) -> MiddlewareConfig | None:
    try:
        return load_config(source)
    except ConfigError as error:
        print(f"configuration has {len(error.problems)} problem(s):", file=out)
        for problem in error.problems:
            print(f"  - {problem}", file=out)
        return None


def _summary(provider: ProviderConfig, out: TextIO) -> None:
    allowed = "any client (no OIDC_ALLOWED_CLIENTS)" if provider.allowed_clients is None else (
        ", ".join(sorted(provider.allowed_clients)) or "none besides CLIENT_ID"
    )  # fmt: skip
    print(f"\n  {provider.id} ({provider.config_key})", file=out)
    print(f"    OIDC_SERVER       {provider.oidc_server}", file=out)
    print(f"    issuers           {', '.join(provider.issuers) or '(from the discovery document)'}", file=out)
    print(f"    audiences         {', '.join(provider.audiences)}", file=out)
    print(f"    allowed clients   {allowed}", file=out)
    if provider.jwks_uri:
        print(f"    OIDC_JWKS_URI     {provider.jwks_uri}", file=out)


def _configured(provider: ProviderConfig, discovered: str | None) -> str:
    if discovered is None:
        return ""
    if not provider.issuers:
        return " (used as the provider's issuer)"
    normal = normalize_issuer(discovered)
    configured = any(normalize_issuer(issuer) == normal for issuer in provider.issuers)
    return " (configured)" if configured else " (NOT configured)"


def _claim(name: str, value: Any, now: float) -> str:
    if name in ("iat", "nbf", "exp") and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            moment = datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        except (OverflowError, OSError, ValueError):
            return repr(value)
        return f"{moment} ({_relative(value - now)})"
    text = json.dumps(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _relative(seconds: float) -> str:
    minutes = abs(seconds) / 60
    amount = (
        f"{abs(seconds):.0f} s"
        if minutes < 2
        else f"{minutes:.0f} min"
        if minutes < 120
        else f"{minutes / 60:.1f} h"
    )
    return f"in {amount}" if seconds > 0 else f"{amount} ago"


def _required(claims: dict[str, Any]) -> str:
    require_claims(claims)
    return "exp and sub present"


def _identity(claims: dict[str, Any]) -> str:
    check_identity_claims(claims)
    return "oid, tid, ver, scp and roles, where present, have their types"


def _time(claims: dict[str, Any], now: float, config: MiddlewareConfig) -> str:
    expires = check_time(claims, now, config.leeway_seconds)
    return f"valid; expires {_relative(expires - now)} (leeway {config.leeway_seconds} s)"


def _client(claims: dict[str, Any], provider: ProviderConfig) -> str:
    party = authorized_party(claims)
    audience = check_audience(claims, provider)
    check_authorized_party(party, audience, provider)
    if provider.allowed_clients is None:
        return f"authorized party {party!r}; no OIDC_ALLOWED_CLIENTS, so any client is allowed"
    if party is None:
        return "no authorized party, and the token is addressed to CLIENT_ID (Quay itself)"
    return f"authorized party {party!r} is allowed"
