"""Quay 3.17.4 as its image runs it, with oidc-middleware: the lab's derived image (the
Containerfile's own build step), Quay's own quay-entrypoint.sh, supervisord running nginx and the
web and registry gunicorns (two workers each), PostgreSQL 15 and Redis; every request through
nginx on port 8080. The five scenarios end to end with real clients, first contact under load,
a provider outage during pushes, the key fetches of each process, a mixed load from 8 clients
and a key rotation.

3.17.4 only: the last release before Quay's own multi-issuer support, the one these scenarios
need most; the other versions run every other real-Quay test (CI time).
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier
from typing import Any

import pytest
import requests

from oidc_middleware.quay import lab as harness
from oidc_middleware.quay.lab.deployed import Deployment, start_deployed
from oidc_middleware.quay.lab.scenario import (
    CI_CLIENT,
    CLI_CLIENT,
    DEVHUB_CLIENT,
    ORG,
    ROBOT,
    STRANGER,
    STRANGER_CLIENT,
    app_token,
    basic,
    bearer,
    create_organization,
    exchange,
    federate,
    grant_write,
    initialize,
    provider_block,
    user_claims,
    user_token,
)
from oidc_middleware.testing import LocalIdP, service_principal_id

VERSION = "3.17.4"
# The documented bound for a rotated key (docs/quay-integration.md): one refetch interval, and the
# back-off after the failed fetches of the outage, both set small here so the test stays short.
SETTINGS = {"JWKS_MIN_REFRESH_SECONDS": 2, "FETCH_BACKOFF_MAX_SECONDS": 2}
ROTATION_BOUND_SECONDS = 2 + 2 + 5  # refetch interval + back-off + the fetch itself, at most
REQUESTS, CLIENTS = 400, 8


@pytest.fixture(scope="module")
def deployed(
    quay_sources: Path, project_wheel: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Deployment, LocalIdP, dict[str, str]]]:
    install = harness.ensure_installed(VERSION, quay_sources, project_wheel)
    workdir = tmp_path_factory.mktemp("quay-deployed")
    with LocalIdP(tls=True) as idp:
        assert idp.ca_file is not None
        deployment = start_deployed(
            install, project_wheel, workdir, provider_block(idp), idp.ca_file,
            extra_config={"OIDC_MIDDLEWARE_CONFIG": SETTINGS},
        )  # fmt: skip
        try:
            admin = initialize(deployment)
            create_organization(deployment, admin)
            yield deployment, idp, admin
        finally:
            deployment.stop()


def get(deployment: Deployment, path: str, **options: Any) -> requests.Response:
    return requests.get(deployment.url + path, timeout=60, **options)


def test_quay_runs_as_its_image_runs_it(deployed: tuple[Deployment, LocalIdP, dict[str, str]]) -> None:
    deployment, _, _ = deployed
    programs = deployment.programs()
    assert set(programs) == {"stdout", "nginx", "gunicorn-web", "gunicorn-registry"}, programs
    log = deployment.output.read_text()
    for step in ("certs_install.sh", "nginx_conf_create.sh", "runmigration.sh", "supervisord_conf_create.sh"):
        assert f"init/{step}'" in log
    revision = deployment.postgres.psql("SELECT version_num FROM alembic_version")
    assert revision  # Quay's schema, from its own migrations
    print(f"supervisord programs: {json.dumps(programs)}; alembic head {revision}")


def test_migration_v1_and_v2_tokens_of_one_person_are_one_user(
    deployed: tuple[Deployment, LocalIdP, dict[str, str]],
) -> None:
    deployment, idp, _ = deployed
    names = {
        get(deployment, "/api/v1/user/", headers=bearer(user_token(idp, version, CLI_CLIENT))).json()[
            "username"
        ]
        for version in ("1.0", "2.0", "1.0")
    }
    assert len(names) == 1


def test_developer_hub_obo_token_creates_a_private_repository(
    deployed: tuple[Deployment, LocalIdP, dict[str, str]],
) -> None:
    deployment, idp, _ = deployed
    obo = bearer(user_token(idp, "2.0", DEVHUB_CLIENT))
    me = get(deployment, "/api/v1/user/", headers=obo).json()["username"]
    made = requests.post(
        f"{deployment.url}/api/v1/repository",
        json={
            "namespace": me,
            "repository": "from-developer-hub",
            "visibility": "private",
            "description": "",
        },
        headers=obo,
        timeout=60,
    )
    assert made.status_code == 201, made.text
    assert (
        get(deployment, f"/api/v1/repository/{me}/from-developer-hub", headers=obo).json()["is_public"]
        is False
    )


def test_dev_spaces_pushes_and_pulls_with_the_persons_v2_token(
    deployed: tuple[Deployment, LocalIdP, dict[str, str]], tmp_path: Path
) -> None:
    deployment, idp, _ = deployed
    token = user_token(idp, "2.0", CLI_CLIENT)
    me = get(deployment, "/api/v1/user/", headers=bearer(token)).json()["username"]
    built, served, pulled = harness.push_and_pull(
        deployment.port, tmp_path, f"{me}/workspace", f"$oauthtoken:{token}"
    )
    assert built == served == pulled
    print(f"Dev Spaces push/pull through nginx: {pulled}")


def test_ci_and_zero_trust_push_with_a_federated_robot(
    deployed: tuple[Deployment, LocalIdP, dict[str, str]], tmp_path: Path
) -> None:
    deployment, idp, admin = deployed
    federate(
        deployment, ROBOT, [{"issuer": idp.v2_issuer, "subject": service_principal_id(CI_CLIENT)}], admin
    )
    grant_write(deployment, "ci-image", ROBOT, admin)
    answer = exchange(deployment, ROBOT, app_token(idp, "1.0"))  # v1.0, the robot lists v2.0
    assert answer.status_code == 200, answer.text
    built, served, pulled = harness.push_and_pull(
        deployment.port, tmp_path, f"{ORG}/ci-image", f"{ROBOT}:{answer.json()['token']}"
    )
    assert built == served == pulled
    print(f"robot push/pull through nginx: {pulled}")


def test_a_service_principal_is_pointed_at_robot_federation(
    deployed: tuple[Deployment, LocalIdP, dict[str, str]],
) -> None:
    deployment, idp, _ = deployed
    answer = get(deployment, "/api/v1/user/", headers=bearer(app_token(idp, "2.0")))
    assert (answer.status_code, answer.json()["reason"]) == (401, "app_only_token")
    login = get(
        deployment, "/v2/auth?service=127.0.0.1:8080", headers=basic("$oauthtoken", app_token(idp, "2.0"))
    )
    assert login.json()["errors"][0]["detail"]["reason"] == "app_only_token"


def test_twenty_concurrent_first_requests_on_postgresql_and_two_web_workers(
    deployed: tuple[Deployment, LocalIdP, dict[str, str]],
) -> None:
    deployment, idp, _ = deployed
    person = str(uuid.uuid4())
    tokens = [user_token(idp, ("1.0", "2.0")[index % 2], CLI_CLIENT, user=person) for index in range(20)]
    start = Barrier(20)

    def send(token: str) -> requests.Response:
        start.wait()
        return get(deployment, "/api/v1/user/", headers=bearer(token))

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(send, tokens))
    assert [answer.status_code for answer in answers] == [200] * 20, [a.text[:200] for a in answers]
    assert len({answer.json()["username"] for answer in answers}) == 1
    assert not any("psycopg2" in answer.text or "duplicate key" in answer.text for answer in answers)


def test_an_outage_during_pushes_then_the_key_fetches_of_each_process(
    deployed: tuple[Deployment, LocalIdP, dict[str, str]], tmp_path: Path
) -> None:
    """The provider stops: a person's token already used keeps pushing (docker login again on
    known keys), a new person's first login succeeds too. Quay's log says how often each process
    fetched keys from start to end."""
    deployment, idp, _ = deployed
    token = user_token(idp, "2.0", CLI_CLIENT)
    me = get(deployment, "/api/v1/user/", headers=bearer(token)).json()["username"]
    idp.stop()
    try:
        built, served, pulled = harness.push_and_pull(
            deployment.port, tmp_path, f"{me}/during-outage", f"$oauthtoken:{token}"
        )
        newcomer = user_token(idp, "2.0", CLI_CLIENT, user=str(uuid.uuid4()))
        first_login = get(deployment, "/api/v1/user/", headers=bearer(newcomer))
    finally:
        idp.start()
    assert built == served == pulled
    assert first_login.status_code == 200, first_login.text
    # Each gunicorn worker of each program (web: 2, registry: 8, Quay's own minimum counts) fetched
    # the keys once, at its prefetch; nothing since
    # (tokens on known keys, then the outage, answered without a fetch).
    fetched = deployment.keys_fetched()
    workers = deployment.workers()
    print(f"key sets fetched per program (from Quay's log): {fetched}; gunicorn workers: {workers}")
    assert fetched == workers == {"gunicorn-web": 2, "gunicorn-registry": 8}  # Quay's minimums


def _mix(idp: LocalIdP, admin: dict[str, str]) -> list[tuple[str, dict[str, str], int]]:
    """One round of requests: accepted, refused and passed through, with their expected status."""
    return [
        ("v1.0", bearer(user_token(idp, "1.0", CLI_CLIENT)), 200),
        ("v2.0", bearer(user_token(idp, "2.0", CLI_CLIENT)), 200),
        ("obo", bearer(user_token(idp, "2.0", DEVHUB_CLIENT)), 200),
        ("stranger", bearer(user_token(idp, "2.0", STRANGER_CLIENT, user=STRANGER)), 401),
        ("expired", bearer(user_token(idp, "1.0", CLI_CLIENT, now=time.time() - 7200)), 401),
        ("quay-oauth", admin, 200),
        ("anonymous", {}, 401),
        ("garbage", bearer("not.a.token"), 401),
    ]


def test_a_mixed_load_through_nginx_then_a_key_rotation(
    deployed: tuple[Deployment, LocalIdP, dict[str, str]],
) -> None:
    """400 requests from 8 clients through nginx to both web workers, every status as expected and
    no key fetched; then the provider publishes a new key: a token of it is accepted by the web and
    the registry processes within the documented bound, whichever worker serves it."""
    deployment, idp, admin = deployed
    before = deployment.keys_fetched()
    mix = _mix(idp, admin)
    work = [mix[index % len(mix)] for index in range(REQUESTS)]

    def send(item: tuple[str, dict[str, str], int]) -> tuple[str, int, int, float]:
        started = time.monotonic()
        answer = get(deployment, "/api/v1/user/", headers=item[1])
        return item[0], item[2], answer.status_code, time.monotonic() - started

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(send, work))
    assert [(name, expected, status) for name, expected, status, _ in results if status != expected] == []
    assert deployment.keys_fetched() == before
    latencies = sorted(seconds for *_, seconds in results)

    new_key = idp.rotate()
    token = idp.token(user_claims(idp, "2.0", CLI_CLIENT), key=new_key)
    started = time.monotonic()
    while True:
        api = [get(deployment, "/api/v1/user/", headers=bearer(token)).status_code for _ in range(4)]
        login = [get(deployment, "/v2/auth?service=127.0.0.1:8080", headers=basic("$oauthtoken", token)).status_code
                 for _ in range(8)]  # fmt: skip
        if api + login == [200] * 12 or time.monotonic() - started > ROTATION_BOUND_SECONDS + 5:
            break
        time.sleep(0.5)
    took = time.monotonic() - started
    assert api + login == [200] * 12 and took <= ROTATION_BOUND_SECONDS, (api, login, took)
    print(json.dumps({
        "latency_ms": {"p50": round(statistics.median(latencies) * 1000, 1),
                       "p95": round(latencies[int(len(latencies) * 0.95)] * 1000, 1),
                       "max": round(latencies[-1] * 1000, 1)},
        "statuses": dict(Counter(f"{name}:{status}" for name, _, status, _ in results)),
        "rotation_seconds": round(took, 2),
    }))  # fmt: skip
