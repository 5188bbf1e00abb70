"""Quay's real process model: web.py with the two lines under gunicorn with Quay's own
conf/gunicorn_web.py (gevent workers, preload_app, monkey.patch_all() first), 2 workers, Redis,
validator.prefetch() in post_worker_init; then an identity-provider outage and a key rotation."""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from oidc_middleware.quay import lab as harness
from oidc_middleware.quay.lab.scenario import (
    CLI_CLIENT,
    DEVHUB_CLIENT,
    QUAY_OAUTH_TOKEN,
    STRANGER,
    STRANGER_CLIENT,
    bearer,
    provider_block,
    user_claims,
    user_token,
)
from oidc_middleware.testing import LocalIdP

VERSION = "3.17.4"
WORKERS = 2
REQUESTS = 400
CLIENTS = 8
# The documented bound for a rotated key (docs/quay-integration.md): one refetch interval, and the
# back-off after the failed fetches of the outage, both set small here so the test stays short.
SETTINGS = {"JWKS_MIN_REFRESH_SECONDS": 2, "FETCH_BACKOFF_MAX_SECONDS": 2}
ROTATION_BOUND_SECONDS = 2 + 2 + 5  # refetch interval + back-off + the fetch itself, at most


@pytest.fixture(scope="module")
def gunicorn_quay(
    quay_sources: Path, project_wheel: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[harness.QuayServer, LocalIdP, harness.Redis]]:
    install = harness.ensure_installed(VERSION, quay_sources, project_wheel)
    workdir = tmp_path_factory.mktemp("quay-gunicorn")
    with LocalIdP(tls=True) as idp:
        redis = harness.start_redis(workdir)
        try:
            extra = {"OIDC_MIDDLEWARE_CONFIG": SETTINGS}
            server = harness.start_gunicorn(
                install,
                workdir,
                provider_block(idp),
                redis,
                wheel=project_wheel,
                workers=WORKERS,
                extra_config=extra,
                ca_file=idp.ca_file,
            )
            try:
                yield server, idp, redis
            finally:
                server.stop()
        finally:
            redis.stop()


def _mix(idp: LocalIdP) -> list[tuple[str, dict[str, str], int]]:
    """One round of requests: accepted, refused and passed through, with their expected status."""
    return [
        ("v1.0", bearer(user_token(idp, "1.0", CLI_CLIENT)), 200),
        ("v2.0", bearer(user_token(idp, "2.0", CLI_CLIENT)), 200),
        ("obo", bearer(user_token(idp, "2.0", DEVHUB_CLIENT)), 200),
        ("stranger", bearer(user_token(idp, "2.0", STRANGER_CLIENT, user=STRANGER)), 401),
        ("expired", bearer(user_token(idp, "1.0", CLI_CLIENT, now=time.time() - 7200)), 401),
        ("quay-oauth", bearer(QUAY_OAUTH_TOKEN), 200),
        ("anonymous", {}, 401),
        ("garbage", bearer("not.a.token"), 401),
    ]


def _send(url: str, headers: dict[str, str]) -> tuple[int, float]:
    started = time.monotonic()
    answer = requests.get(url + "/api/v1/user/", headers=headers, timeout=30)
    return answer.status_code, time.monotonic() - started


def test_gunicorn_gevent_workers_serve_a_mixed_load_then_survive_an_outage_and_a_rotation(
    gunicorn_quay: tuple[harness.QuayServer, LocalIdP, harness.Redis],
) -> None:
    server, idp, _ = gunicorn_quay
    jwks = f"/{idp.tenant}/discovery/v2.0/keys"
    deadline = time.monotonic() + 60  # the first worker may answer before the second is set up
    while idp.hits[jwks] < WORKERS and time.monotonic() < deadline:
        time.sleep(0.1)
    assert idp.hits[jwks] == WORKERS  # post_worker_init prefetched, once per worker

    # The first token of a person creates the Quay user; then 400 requests from 8 clients.
    assert _send(server.url, _mix(idp)[0][1])[0] == 200
    mix = _mix(idp)
    work = [mix[index % len(mix)] for index in range(REQUESTS)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda item: (item[0], item[2], *_send(server.url, item[1])), work))
    wrong = [(name, expected, status) for name, expected, status, _ in results if status != expected]
    assert wrong == []
    latencies = sorted(seconds for *_, seconds in results)
    assert idp.hits[jwks] == WORKERS  # no worker fetched keys again

    # The identity provider goes away: tokens signed with known keys keep working.
    idp.stop()
    during = [
        _send(server.url, bearer(user_token(idp, version, CLI_CLIENT)))[0] for version in ("1.0", "2.0") * 4
    ]
    assert during == [200] * 8

    # It comes back with a new signing key: a token of that key is accepted within the bound.
    idp.start()
    new_key = idp.rotate()
    token = idp.token(user_claims(idp, "2.0", CLI_CLIENT), key=new_key)
    started = time.monotonic()
    statuses = []
    while time.monotonic() - started < ROTATION_BOUND_SECONDS + 5:
        round_statuses = [_send(server.url, bearer(token))[0] for _ in range(4)]
        statuses.append(round_statuses)
        if round_statuses == [200] * 4:
            break
        time.sleep(0.5)
    took = time.monotonic() - started
    assert statuses[-1] == [200] * 4, statuses
    assert took <= ROTATION_BOUND_SECONDS
    # Whichever worker a request reaches, the new key works (a worker that had not seen it yet
    # refetches at once: its last fetch is older than the refetch interval).
    assert [_send(server.url, bearer(token))[0] for _ in range(20)] == [200] * 20

    server.stop()  # graceful: each worker writes its counters (worker_exit)
    per_worker = [
        json.loads(path.read_text()) for path in sorted((server.workdir / "worker-stats").glob("*.json"))
    ]
    assert len(per_worker) == WORKERS
    report = {
        "per_worker_key_fetches": [stats["key_fetches"] for stats in per_worker],
        "per_worker_accepted": [stats["accepted"] for stats in per_worker],
        "latency_ms": {
            "p50": round(statistics.median(latencies) * 1000, 1),
            "p95": round(latencies[int(len(latencies) * 0.95)] * 1000, 1),
            "max": round(latencies[-1] * 1000, 1),
        },
        "statuses": dict(Counter(f"{name}:{status}" for name, _, status, _ in results)),
        "rotation_seconds": round(took, 2),
    }
    print(json.dumps(report))
    assert sum(stats["accepted"] for stats in per_worker) > 0
    for stats in per_worker:
        # The prefetch, at most one refetch for the rotated key, and failed attempts in the outage.
        assert 1 <= stats["key_fetches"]["ok"] <= 2, stats
