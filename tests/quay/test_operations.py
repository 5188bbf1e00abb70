"""Running the middleware inside a real Quay as operators do: the proxy and CA bundle Quay's own
HTTP client uses, Quay's pinned prometheus_client and its pushgateway, and a rollback that keeps
Quay working. Quay 3.15.7, 3.17.4 and 3.18.0 unless a test says otherwise."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from oidc_middleware.quay import lab as harness
from oidc_middleware.quay.lab.scenario import (
    CLI_CLIENT,
    basic,
    bearer,
    get,
    id_token,
    logged_in,
    provider_block,
    user_token,
    web_login,
)
from oidc_middleware.testing import LocalIdP


@pytest.fixture
def own_entra() -> Iterator[LocalIdP]:
    """A provider of this test's own, over https: its port is the one the proxy rules name."""
    with LocalIdP(tls=True) as idp:
        yield idp


def _serve(quay: harness.QuayInstall, workdir: Path, idp: LocalIdP, **options: Any) -> harness.QuayServer:
    return harness.start_server(quay, workdir, provider_block(idp), mode="install", testing=False, **options)


def _works(server: harness.QuayServer, idp: LocalIdP) -> dict[str, Any]:
    """A person's v2.0 token on the API and at docker login (the middleware fetched the keys), and
    the web UI login (Quay's own client exchanged the code at the provider)."""
    token = user_token(idp, "2.0", CLI_CLIENT)
    api = get(server, "/api/v1/user/", headers=bearer(token))
    login = get(server, f"/v2/auth?service=127.0.0.1:{server.port}", headers=basic("$oauthtoken", token))
    _, back = web_login(server, idp, id_token(idp))
    return {"api": api.status_code, "docker_login": login.status_code, "web_login": logged_in(back)}


EVERYTHING_WORKS = {"api": 200, "docker_login": 200, "web_login": True}


def test_the_middleware_and_quay_reach_the_provider_through_the_environments_proxy(
    quay: harness.QuayInstall, own_entra: LocalIdP, tmp_path: Path
) -> None:
    """The Quay Operator gives Quay's pods the cluster's proxy in HTTPS_PROXY/NO_PROXY. With the
    direct route to the provider refused, both Quay's own client and the middleware go through a
    real forward proxy (Debian's tinyproxy), set in the environment only."""
    proxy = harness.start_tinyproxy(tmp_path)
    try:
        with harness.only_through(own_entra.port):
            with pytest.raises(requests.ConnectionError):
                requests.get(own_entra.jwks_uri, verify=own_entra.ca_file, timeout=5)  # refused
            environment = {"HTTPS_PROXY": proxy.url, "REQUESTS_CA_BUNDLE": str(own_entra.ca_file)}
            server = _serve(quay, tmp_path / "quay", own_entra, environment=environment)
            try:
                assert _works(server, own_entra) == EVERYTHING_WORKS
            finally:
                server.stop()
        assert f"127.0.0.1:{own_entra.port}" in proxy.tunnels()
    finally:
        proxy.stop()


def test_a_provider_ca_added_through_extra_ca_certs_is_trusted_by_quay_and_the_middleware(
    quay: harness.QuayInstall, own_entra: LocalIdP, tmp_path: Path
) -> None:
    """The CA goes where an administrator puts it (extra_ca_certs), Quay's own certs_install.sh
    appends it to certifi's bundle, and no CA setting is given to either Quay or the middleware."""
    assert own_entra.ca_file is not None
    overlay = harness.install_extra_ca_certs(quay, tmp_path, own_entra.ca_file)
    patched = (overlay / "certifi" / "cacert.pem").read_text()
    assert Path(own_entra.ca_file).read_text().strip() in patched
    server = _serve(quay, tmp_path / "quay", own_entra, overlay=overlay)
    try:
        assert _works(server, own_entra) == EVERYTHING_WORKS
    finally:
        server.stop()


PUSH = r"""
import importlib.metadata, json, threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from prometheus_client import REGISTRY, push_to_gateway
from oidc_middleware import TokenValidator
from oidc_middleware.prometheus import register

issuer = "https://login.microsoftonline.com/0b9f3c1e-5a2d-4d8e-9c7b-1f2e3d4c5b6a/v2.0"
validator = TokenValidator({"AZURE_LOGIN_CONFIG": {"OIDC_SERVER": issuer + "/", "CLIENT_ID": "quay",
                                                   "CLIENT_SECRET": "s", "OIDC_ISSUERS": [issuer]}})
register(validator)  # on prometheus_client's default registry, which Quay pushes
pushed = []

class Gateway(BaseHTTPRequestHandler):
    def do_PUT(self):
        pushed.append((self.command, self.path, self.rfile.read(int(self.headers["Content-Length"])).decode()))
        self.send_response(200)
        self.end_headers()
    do_POST = do_PUT
    def log_message(self, *args):
        pass

gateway = HTTPServer(("127.0.0.1", 0), Gateway)
threading.Thread(target=gateway.serve_forever, daemon=True).start()
# As Quay's util/metrics/prometheus.py ThreadPusher does every 30 s.
push_to_gateway(f"127.0.0.1:{gateway.server_port}", job="quay", registry=REGISTRY,
                grouping_key={"host": "quay-pod", "process_name": "web:application", "pid": "7"})
method, path, body = pushed[0]
print(json.dumps({"prometheus_client": importlib.metadata.version("prometheus_client"), "method": method,
                  "path": path, "ours": sorted({line.split("{")[0].split(" ")[0] for line in body.splitlines()
                                                if line.startswith("oidc_middleware")})}))
"""


def test_the_collector_works_with_quays_pinned_prometheus_client_and_is_pushed_as_quay_pushes(
    quay: harness.QuayInstall, tmp_path: Path
) -> None:
    done = subprocess.run(
        [str(quay.python), "-c", PUSH],
        cwd=tmp_path,
        env=harness.clean_environment(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "prometheus_client": "0.7.1",  # Quay's pin, unchanged
        "method": "PUT",
        "path": "/metrics/job/quay/host/quay-pod/pid/7/process_name/web%3Aapplication",
        "ours": [
            "oidc_middleware_decisions_total",
            "oidc_middleware_key_fetches_total",
            "oidc_middleware_keys_usable",
            "oidc_middleware_token_cache_lookups_total",
        ],
    }


def test_rolling_back_keeps_v1_tokens_working_when_oidc_issuer_stays(
    quay_sources: Path, project_wheel: Path, entra: LocalIdP, tmp_path: Path
) -> None:
    """Quay 3.17.4 with the recommended migration config (v2.0 OIDC_SERVER, both issuers in
    OIDC_ISSUERS, OIDC_ISSUER kept on v1.0): with install both versions work; with the two lines
    removed, stock Quay still takes v1.0 tokens. Without OIDC_ISSUER, the rollback breaks them."""
    quay = harness.ensure_installed("3.17.4", quay_sources, project_wheel)
    recommended = {**provider_block(entra), "OIDC_SERVER": entra.v2_server}
    assert recommended["OIDC_ISSUER"] == entra.v1_issuer
    without_issuer = {key: value for key, value in recommended.items() if key != "OIDC_ISSUER"}
    v1, v2 = user_token(entra, "1.0", CLI_CLIENT), user_token(entra, "2.0", CLI_CLIENT)
    answers = {}
    for name, block, mode in (
        ("install", recommended, "install"),
        ("lines removed", recommended, "alone"),
        ("lines removed, no OIDC_ISSUER", without_issuer, "alone"),
    ):
        server = harness.start_server(
            quay, tmp_path / name.replace(" ", "-").replace(",", ""), block, mode=mode, testing=False,
            ca_file=entra.ca_file,
        )  # fmt: skip
        try:
            answers[name] = tuple(
                get(server, "/api/v1/user/", headers=bearer(t)).status_code for t in (v1, v2)
            )
        finally:
            server.stop()
    assert answers == {
        "install": (200, 200),
        "lines removed": (200, 401),
        "lines removed, no OIDC_ISSUER": (401, 200),
    }


def _log_recipes() -> list[tuple[str, str]]:
    """Every shell block of README.md and docs/ that reads Quay's log (quay.log) with jq."""
    import re

    root = Path(__file__).resolve().parents[2]
    recipes = []
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for block in re.findall(r"```sh\n(.*?)```", path.read_text(), re.S):
            if "quay.log" in block and "jq " in block:
                recipes.append((path.name, block))
    return recipes


def test_every_log_recipe_in_the_docs_reads_quays_log_as_supervisord_writes_it(
    quay_sources: Path, project_wheel: Path, entra: LocalIdP, tmp_path: Path
) -> None:
    """Quay 3.17.4's app with install as the program gunicorn-web of supervisord with Quay's own
    stdout listener: every line it writes is prefixed. Each recipe of the docs, run as written
    with Debian's jq on that log, finds the events it looks for."""
    from oidc_middleware.quay.lab.scenario import DEVHUB_CLIENT, STRANGER_CLIENT
    from oidc_middleware.testing import mint

    harness.ensure_command("jq", "jq", tmp_path)
    quay = harness.ensure_installed("3.17.4", quay_sources, project_wheel)
    server = harness.start_supervised(quay, tmp_path / "quay", provider_block(entra), ca_file=entra.ca_file)
    v1 = user_token(entra, "1.0", CLI_CLIENT)
    foreign = mint({**entra.claims("1.0", client=CLI_CLIENT), "iss": "https://sts.windows.net/other-tenant/"},
                   entra.keys[0])  # fmt: skip
    try:
        for token in (v1, user_token(entra, "2.0", CLI_CLIENT), user_token(entra, "2.0", DEVHUB_CLIENT),
                      user_token(entra, "2.0", STRANGER_CLIENT), foreign):  # fmt: skip
            get(server, "/api/v1/user/", headers=bearer(token))
    finally:
        server.stop()
    log = server.output.read_text()
    events = [line for line in log.splitlines() if '"event": "oidc.token.' in line]
    assert len(events) == 5 and all(line.startswith("gunicorn-web stdout | {") for line in events)
    (tmp_path / "quay.log").write_text(log)
    (tmp_path / "token.txt").write_text(v1)
    recipes = _log_recipes()
    assert len(recipes) >= 6
    outputs = {}
    for where, recipe in recipes:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", recipe], cwd=tmp_path, capture_output=True,
                              text=True, check=False, timeout=60)  # fmt: skip
        assert done.returncode == 0, (where, recipe, done.stderr)
        assert done.stdout.strip(), (where, recipe)  # every recipe finds what it looks for
        outputs[recipe] = done.stdout
    everything = "\n".join(outputs.values())
    assert "1 1.0" in everything and "2 2.0" in everything  # accepted tokens by version
    assert "client_not_allowed" in everything and DEVHUB_CLIENT in everything
    assert '"event":"oidc.token.passthrough"' in everything  # the unconfigured v1.0 issuer
    # Without the sub(), the same recipes would find nothing in this log.
    plain = subprocess.run(["jq", "-R", "-r", 'fromjson? | select(.event == "oidc.token.accepted") | .ver'],
                           input=log, capture_output=True, text=True, check=True)  # fmt: skip
    assert plain.stdout == ""
