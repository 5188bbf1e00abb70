"""Start, drive and stop the Entra-shaped OpenID provider (provider.mjs) from Python.

The provider is oidc-provider (Node.js) on a free 127.0.0.1 port; the tenant's applications,
APIs and users are in directory.json, which both sides read. Tokens are obtained over HTTP from
its token endpoints, as a real client would: nothing here mints or signs anything.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

E2E_DIR = Path(__file__).resolve().parent
PROVIDER_SCRIPT = E2E_DIR / "provider.mjs"
NODE_MODULES = E2E_DIR / "node_modules"
DIRECTORY: dict[str, Any] = json.loads((E2E_DIR / "directory.json").read_text(encoding="utf-8"))

TENANT: str = DIRECTORY["tenant"]
QUAY_API = "api://quay-api"  # Quay's App ID URI: the resource OBO and CI tokens are asked for
DEVELOPER_HUB_API = "api://developer-hub"  # the middle tier's own API (users sign in to it)
OTHER_API = "api://billing-api"  # another API of the tenant
OUTSIDER_API = "api://outsider-portal"
QUAY_CLIENT_ID: str = DIRECTORY["apis"][QUAY_API]["appId"]
RHDH_CLIENT: str = DIRECTORY["apis"][DEVELOPER_HUB_API]["appId"]  # Red Hat Developer Hub
OUTSIDER: str = DIRECTORY["apis"][OUTSIDER_API]["appId"]  # an app nobody allowed
CI_CLIENT = "9a8b7c6d-0000-4000-8000-0000000000c1"  # a CI service principal
SHORT_LIVED_CLIENT = "5407a11e-0000-4000-8000-00000000005c"  # a CI client whose tokens live 3 s
USER = "alice@contoso.example"
USER_OID: str = DIRECTORY["users"][USER]["objectId"]
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"

# serve(quay_config) -> base URL of the Quay-shaped app behind the middleware
QuayFactory = Callable[[dict[str, Any]], str]

STARTUP_TIMEOUT_SECONDS = 30.0
REQUIRED_ENV = "OIDC_E2E_REQUIRED"


def e2e_required() -> bool:
    """True where the end-to-end tests must run (CI): a missing toolchain is then an error."""
    return os.environ.get(REQUIRED_ENV, "").strip().lower() in ("1", "true", "yes")


def missing_toolchain() -> str | None:
    """Why the provider cannot run here, or None."""
    if shutil.which("node") is None:
        return "node (Node.js 20 or later) is not on PATH; install it to run the end-to-end tests"
    if not (NODE_MODULES / "oidc-provider" / "package.json").is_file():
        return (
            f"{NODE_MODULES} has no oidc-provider; run `npm ci --no-audit --no-fund` in tests/e2e "
            "(`make test` does it when npm is installed)"
        )
    return None


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified: for looking at what the provider issued."""
    return _segment(token, 1)


def header_of(token: str) -> dict[str, Any]:
    return _segment(token, 0)


def _segment(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


class ProviderStartError(RuntimeError):
    pass


@dataclass
class EntraShapedProvider:
    """A running provider.mjs: its URLs, and its token endpoints as the tenant's apps use them."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    session: requests.Session
    startup_seconds: float

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1_issuer(self) -> str:
        return f"{self.origin}/{TENANT}/"

    @property
    def v2_issuer(self) -> str:
        return f"{self.origin}/{TENANT}/v2.0"

    def issuer(self, version: str) -> str:
        return self.v1_issuer if version == "1.0" else self.v2_issuer

    def oidc_server(self, version: str) -> str:
        """Quay's OIDC_SERVER for this issuer: discovery is OIDC_SERVER + .well-known/..."""
        issuer = self.issuer(version)
        return issuer if issuer.endswith("/") else issuer + "/"

    def jwks(self, version: str = "2.0") -> dict[str, Any]:
        discovery = self._get(self.oidc_server(version) + ".well-known/openid-configuration")
        return self._get(discovery["jwks_uri"])

    # --- tokens, over HTTP ---------------------------------------------------------------------

    def client_credentials(self, client: str, *, version: str, resource: str = QUAY_API) -> str:
        """An app-only token (service principal), as CI automation gets one."""
        return self._token(client, version, grant_type="client_credentials", resource=resource)

    def user_token(self, client: str = RHDH_CLIENT, *, version: str, resource: str | None = None) -> str:
        """The signed-in user's token for the app ``client`` (its own API unless ``resource``)."""
        own_api = next(uri for uri, api in DIRECTORY["apis"].items() if api["appId"] == client)
        return self._token(
            client,
            version,
            grant_type="password",
            username=USER,
            password=DIRECTORY["users"][USER]["password"],
            resource=resource or own_api,
        )

    def on_behalf_of(self, user_token: str, client: str = RHDH_CLIENT, *, version: str, scope: str) -> str:
        """The middle tier ``client`` trades the user's token for one addressed to Quay's API.

        ``scope`` in Entra v2's form: ``api://quay-api/repo:read`` or ``api://quay-api/.default``.
        """
        return self._token(
            client,
            version,
            grant_type=JWT_BEARER,
            requested_token_use="on_behalf_of",
            assertion=user_token,
            scope=scope,
        )

    def token_response(self, client: str, version: str, **form: str) -> requests.Response:
        secret = DIRECTORY["apps"][client]["secret"]
        return self.session.post(
            self.oidc_server(version) + "token", data=form, auth=(client, secret), timeout=10
        )

    def rotate_keys(self, *, retire_previous: bool = False) -> dict[str, Any]:
        """A new signing key, listed first in the JWKS; returns {kid, kids}."""
        params = {"retire": "previous"} if retire_previous else {}
        reply = self.session.post(f"{self.origin}/_test/rotate-keys", params=params, timeout=10)
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        return result

    def _token(self, client: str, version: str, **form: str) -> str:
        reply = self.token_response(client, version, **form)
        if reply.status_code != 200:
            raise AssertionError(
                f"token request {form['grant_type']} failed: {reply.status_code} {reply.text}"
            )
        token: str = reply.json()["access_token"]
        return token

    def _get(self, url: str) -> dict[str, Any]:
        reply = self.session.get(url, timeout=10)
        reply.raise_for_status()
        document: dict[str, Any] = reply.json()
        return document

    # --- lifecycle -----------------------------------------------------------------------------

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_provider(log_dir: Path, session: requests.Session) -> EntraShapedProvider:
    """Start provider.mjs on a free loopback port and wait until both issuers answer discovery.

    node binds port 0 (so no other process can take the port between choosing and binding it)
    and prints {"ready": true, "port": N, ...}; then both discovery documents are polled.
    """
    node = shutil.which("node")
    if node is None:
        raise ProviderStartError("node is not on PATH")
    log_path = log_dir / "provider.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [node, str(PROVIDER_SCRIPT), "--port", "0"],
            cwd=E2E_DIR,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    provider = EntraShapedProvider(process, 0, log_path, session, startup_seconds=0.0)
    try:
        provider.port = _wait_for_port(provider, started)
        _wait_for_discovery(provider, started)
    except ProviderStartError as error:
        provider.stop()
        raise ProviderStartError(
            f"the Entra-shaped provider did not start: {error}\n--- {log_path} ---\n{provider.log_tail()}"
        ) from None
    provider.startup_seconds = time.monotonic() - started
    return provider


def _check_alive(provider: EntraShapedProvider, started: float, waiting_for: str) -> None:
    if provider.process.poll() is not None:
        raise ProviderStartError(f"node exited with status {provider.process.returncode}")
    if time.monotonic() - started > STARTUP_TIMEOUT_SECONDS:
        raise ProviderStartError(f"no {waiting_for} after {STARTUP_TIMEOUT_SECONDS:.0f} s")


def _wait_for_port(provider: EntraShapedProvider, started: float) -> int:
    while True:
        for line in provider.log_tail(chars=1 << 20).splitlines():
            if line.startswith('{"ready":true'):
                port: int = json.loads(line)["port"]
                return port
        _check_alive(provider, started, "ready line")
        time.sleep(0.02)


def _wait_for_discovery(provider: EntraShapedProvider, started: float) -> None:
    pending = [provider.oidc_server(v) + ".well-known/openid-configuration" for v in ("1.0", "2.0")]
    while pending:
        _check_alive(provider, started, "discovery document")
        try:
            reply = provider.session.get(pending[0], timeout=2)
        except requests.RequestException:
            time.sleep(0.05)
            continue
        if reply.status_code != 200:
            raise ProviderStartError(f"discovery answered HTTP {reply.status_code}: {reply.text[:300]}")
        pending.pop(0)


def quay_config(
    provider: EntraShapedProvider,
    *,
    server_version: str = "2.0",
    allowed_clients: tuple[str, ...] = (RHDH_CLIENT, CI_CLIENT),
    middleware: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Quay's config.yaml (as a mapping) for this tenant: v1 and v2 issuers side by side."""
    config: dict[str, Any] = {
        "SERVER_HOSTNAME": "quay.example.com",
        "FEATURE_DIRECT_LOGIN": False,
        "AZURE_LOGIN_CONFIG": {
            "SERVICE_NAME": "Microsoft Entra ID (loopback oidc-provider)",
            "OIDC_SERVER": provider.oidc_server(server_version),
            "CLIENT_ID": QUAY_CLIENT_ID,
            "CLIENT_SECRET": "never-log-this-secret",
            "LOGIN_SCOPES": ["openid", "email"],
            "OIDC_ISSUERS": [provider.v1_issuer, provider.v2_issuer],
            "OIDC_AUDIENCES": [QUAY_API],
            "OIDC_ALLOWED_CLIENTS": list(allowed_clients),
        },
    }
    if middleware is not None:
        config["OIDC_MIDDLEWARE_CONFIG"] = middleware
    return config
