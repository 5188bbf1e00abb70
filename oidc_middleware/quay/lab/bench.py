"""Quay's own token handling next to ``install``, in process (run with Quay's Python by the lab):

    python -m oidc_middleware.quay.lab.bench WORKDIR     (cwd and PYTHONPATH: Quay's tree; QUAYCONF set)

Quay's app is driven through Flask's test client (no network between the client and Quay); the
Entra-shaped provider runs in this process on loopback and counts the key-set fetches. Quay
natively and Quay with ``install`` take turns, round by round (``remove`` and ``install`` again with
the same validator between rounds), so that both see the same machine. Prints one JSON object.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ...testing import LocalIdP, SigningKey
from . import quay_config
from .scenario import (
    ADMIN,
    CLI_CLIENT,
    ORG,
    ROBOT,
    STRANGER,
    app_token,
    basic,
    bearer,
    forged,
    provider_block,
    robot_entries,
    user_token,
)

ROUNDS = 15
REQUESTS = 40  # per round and variant
FORGED = 1000
EXCHANGES = 10  # robot federation exchanges per round and variant (Quay alone fetches twice each)


def main(workdir: Path) -> dict[str, Any]:
    idp = LocalIdP(tls=True)
    idp.start()
    # Quay's HTTP client (requests) trusts the provider's CA through the environment, read on each
    # request; the middleware through its own CA_BUNDLE in config.yaml.
    os.environ["REQUESTS_CA_BUNDLE"] = str(idp.ca_file)
    conf = Path(os.environ["QUAYCONF"])
    config = quay_config(
        Path.cwd(), workdir, 0, provider_block(idp), ca_file=idp.ca_file, SERVER_HOSTNAME="localhost"
    )
    (conf / "stack" / "config.yaml").write_text(yaml.safe_dump(config))

    from app import app as application  # type: ignore[import-not-found]  # reads config.yaml (TESTING true)

    application.config["TESTING"] = False
    import registry  # type: ignore[import-not-found]  # noqa: F401
    import web  # type: ignore[import-not-found]  # noqa: F401

    from ..integration import install, remove

    logging.disable(logging.CRITICAL)  # Quay's and ours: the log lines are not what is measured
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    client = application.test_client()
    token = user_token(idp, "2.0", CLI_CLIENT)
    jwks = f"/{idp.tenant}/discovery/v2.0/keys"

    def request(headers: dict[str, str], expected: int | None = 200) -> int:
        status: int = client.get("/api/v1/user/", headers=headers).status_code
        if expected is not None and status != expected:
            raise AssertionError(f"expected {expected}, got {status}")
        return status

    validator = install(application)
    validator.prefetch()
    request(bearer(token))  # creates the Quay user; verified twice: cached
    request(bearer(token))
    remove(application)
    request(bearer(token))  # Quay natively: its key cache is warm too
    app_module = sys.modules["app"]
    service = next(s for s in app_module.oauth_login.services if s.service_id() == "azure")
    native_decode = type(service).decode_user_jwt

    def as_installed(installed: bool) -> None:
        if installed and "oidc_middleware" not in application.extensions:
            install(application, validator=validator)
        elif not installed and "oidc_middleware" in application.extensions:
            remove(application)

    def valid(_: int) -> None:
        request(bearer(token))

    def decode(_: int) -> None:
        if "oidc_middleware" in application.extensions:
            service.decode_user_jwt(token)
        else:
            native_decode(service, token, options={"verify_nbf": False})

    results: dict[str, Any] = {
        "quay_version": _quay_version(),
        "rounds": ROUNDS,
        "requests_per_round": REQUESTS,
        "valid_request": _interleaved(as_installed, valid, REQUESTS),
        "decode": _interleaved(as_installed, decode, REQUESTS),
    }

    # 1,000 forged tokens, each naming a key the provider never published.
    attacker = SigningKey.rsa("unused")
    forged_results = {}
    for installed in (False, True):
        as_installed(installed)
        tokens = [
            forged(
                idp, SigningKey(f"kid-{uuid.uuid4().hex[:12]}", "RS256", attacker.private_key), user=STRANGER
            )
            for _ in range(FORGED)
        ]
        before = idp.hits[jwks]
        started = time.perf_counter()
        refused = {request(bearer(forged_token), expected=None) for forged_token in tokens}
        seconds = time.perf_counter() - started
        forged_results["install" if installed else "native"] = {
            "key_set_fetches": idp.hits[jwks] - before,
            "us_per_token": seconds / FORGED * 1e6,
            "statuses": sorted(refused),
        }
    results["forged_unknown_kid"] = forged_results

    # The provider stops answering; keys were fetched earlier.
    as_installed(False)
    request(bearer(token))
    idp.stop()
    statuses: dict[str, set[int]] = {"native": set(), "install": set()}

    def valid_while_down(_: int) -> None:
        mode = "install" if "oidc_middleware" in application.extensions else "native"
        statuses[mode].add(request(bearer(token), expected=None))

    results["provider_down"] = _interleaved(as_installed, valid_while_down, REQUESTS)
    results["provider_down"]["statuses"] = {mode: sorted(found) for mode, found in statuses.items()}
    idp.start()
    results["robot_exchange"] = _robot_exchanges(client, idp, as_installed)
    idp.close()
    return results


def _robot_exchanges(client: Any, idp: LocalIdP, as_installed: Callable[[bool], None]) -> dict[str, Any]:
    """Robot federation: the CI service principal's token for a robot token, natively and with
    install, interleaved; with the provider requests each exchange made."""
    as_installed(False)
    org, _, name = ROBOT.partition("+")
    client.put(f"/api/v1/organization/{org}/robots/{name}", json={}, headers=ADMIN)
    done = client.post(
        f"/api/v1/organization/{ORG}/robots/{name}/federation", json=robot_entries(idp), headers=ADMIN
    )
    if done.status_code != 200:
        raise AssertionError(f"federating the robot: {done.status_code} {done.get_data(as_text=True)[:300]}")
    headers = basic(ROBOT, app_token(idp, "2.0"))
    requests = {"native": 0, "install": 0}
    statuses: dict[str, set[int]] = {"native": set(), "install": set()}

    def one(_: int) -> None:
        mode = "install" if "oidc_middleware" in client.application.extensions else "native"
        before = sum(idp.hits.values())
        statuses[mode].add(client.get("/oauth2/federation/robot/token", headers=headers).status_code)
        requests[mode] += sum(idp.hits.values()) - before

    result = _interleaved(as_installed, one, EXCHANGES)
    for mode in ("native", "install"):
        result[mode]["provider_requests_per_exchange"] = requests[mode] / (ROUNDS * EXCHANGES)
        result[mode]["statuses"] = sorted(statuses[mode])
    return result


def _interleaved(
    as_installed: Callable[[bool], None], operation: Callable[[int], None], count: int
) -> dict[str, Any]:
    """Microseconds per operation, natively and with install: best round and median, interleaved."""
    samples: dict[str, list[float]] = {"native": [], "install": []}
    for round_number in range(ROUNDS):
        order = (False, True) if round_number % 2 == 0 else (True, False)
        for installed in order:
            as_installed(installed)
            started = time.perf_counter()
            for index in range(count):
                operation(index)
            samples["install" if installed else "native"].append(
                (time.perf_counter() - started) / count * 1e6
            )
    return {
        mode: {"best_us": min(values), "median_us": statistics.median(values)}
        for mode, values in samples.items()
    }


def _quay_version() -> str:
    from ..integration import detect

    return detect().line


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
