"""A person's first requests, twenty at once, v1.0 and v2.0 mixed: with install all are answered
200 as one Quay user, with no database error in any answer (Quay 3.15.7, 3.17.4, 3.18.0; the
lab's threaded server, SQLite). Quay alone loses some of them to its own first-login race."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import requests

from oidc_middleware.quay import lab as harness
from oidc_middleware.quay.lab.scenario import CLI_CLIENT, DEVHUB_CLIENT, bearer, get, user_token
from oidc_middleware.testing import LocalIdP

CONCURRENT = 20


def first_contact(
    server: harness.QuayServer, idp: LocalIdP, versions: tuple[str, ...] = ("1.0", "2.0")
) -> list[requests.Response]:
    """Twenty first requests of one new person, started together: tokens of a CLI and Developer
    Hub of the given versions, as a person's tools starting at once send them."""
    person = str(uuid.uuid4())
    tokens = [
        user_token(
            idp, versions[index % len(versions)], (CLI_CLIENT, DEVHUB_CLIENT)[index // 2 % 2], user=person
        )
        for index in range(CONCURRENT)
    ]
    start = Barrier(CONCURRENT)

    def send(token: str) -> requests.Response:
        start.wait()
        return get(server, "/api/v1/user/", headers=bearer(token))

    with ThreadPoolExecutor(CONCURRENT) as pool:
        return list(pool.map(send, tokens))


def test_twenty_concurrent_first_requests_of_one_person_are_one_quay_user(
    installed: harness.QuayServer, alone_strict: harness.QuayServer, entra: LocalIdP
) -> None:
    answers = first_contact(installed, entra)
    assert [answer.status_code for answer in answers] == [200] * CONCURRENT, [a.text[:200] for a in answers]
    assert len({answer.json()["username"] for answer in answers}) == 1
    for answer in answers:
        assert "UNIQUE" not in answer.text and "IntegrityError" not in answer.text
    # Quay alone, with v1.0 tokens only (the one issuer it takes before 3.18): its own race.
    alone = [answer.status_code for answer in first_contact(alone_strict, entra, ("1.0",))]
    print(f"Quay alone, {CONCURRENT} concurrent first v1.0 requests: {alone.count(200)} x 200, "
          f"{CONCURRENT - alone.count(200)} refused")  # fmt: skip
