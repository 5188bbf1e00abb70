"""Which of a robot's federation entries a verified token matches (oidc_middleware.quay's robot
federation, without Quay: the entries as Quay stores them, the principal from a real token), and
the one event per exchange when Quay refuses before asking us."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import CI_CLIENT, OUTSIDER, quay_config
from structlog.testing import capture_logs
from werkzeug.test import Client

from oidc_middleware import OIDCMiddleware, Principal, TokenRejected, TokenValidator
from oidc_middleware.credentials import ROBOT_FEDERATION
from oidc_middleware.quay.robot_federation import (
    FederationEntry,
    SettleExchanges,
    federation_entries,
    match_entry,
)
from oidc_middleware.testing import LocalIdP, service_principal_id

SP = service_principal_id(CI_CLIENT)
OTHER_TENANT = "cccccccc-0000-4000-8000-00000000000c"


def principal(validator: TokenValidator, idp: LocalIdP, version: str = "2.0", **claims: Any) -> Principal:
    token_claims = idp.claims(version, client=CI_CLIENT)
    token_claims.update(claims)
    return validator.validate(idp.token(token_claims))


def refusal(
    entries: list[FederationEntry], who: Principal, validator: TokenValidator, exact: bool = False
) -> str:
    with pytest.raises(TokenRejected) as caught:
        match_entry(entries, who, validator, exact=exact)
    return caught.value.reason


# -- entries as Quay stores them ----------------------------------------------------------------------


def test_entries_are_read_from_quays_metadata_and_malformed_ones_skipped() -> None:
    metadata = {
        "federation_config": [
            {"issuer": "https://a/", "subject": "s1"},
            {"issuer": "https://b/", "subject": "s2", "audiences": ["x", 7, "y"]},
            {"issuer": "https://c/"},
            "junk",
            {"issuer": 1, "subject": "s3"},
        ]
    }
    assert federation_entries(json.dumps(metadata)) == [
        FederationEntry("https://a/", "s1"),
        FederationEntry("https://b/", "s2", ("x", "y")),
    ]


@pytest.mark.parametrize("metadata", [None, "", "{", "[]", '{"federation_config": {}}', b"{}"])
def test_unreadable_metadata_has_no_entries(metadata: Any) -> None:
    assert federation_entries(metadata) == []


# -- matching -----------------------------------------------------------------------------------------


def test_an_entry_naming_the_tokens_issuer_and_subject_matches(
    validator: TokenValidator, idp: LocalIdP
) -> None:
    entry = FederationEntry(idp.v2_issuer, SP)
    assert match_entry([FederationEntry(idp.v2_issuer, "someone"), entry], principal(validator, idp), validator,
                       exact=True) == entry  # fmt: skip


@pytest.mark.parametrize(("listed", "token"), [("2.0", "1.0"), ("1.0", "2.0")])
def test_across_the_migration_an_entry_of_the_other_issuer_of_the_provider_matches(
    validator: TokenValidator, idp: LocalIdP, listed: str, token: str
) -> None:
    issuer = idp.v2_issuer if listed == "2.0" else idp.v1_issuer
    entry = FederationEntry(issuer, SP)
    assert match_entry([entry], principal(validator, idp, token), validator, exact=False) == entry


def test_exact_matching_refuses_the_other_issuer(validator: TokenValidator, idp: LocalIdP) -> None:
    who = principal(validator, idp, "1.0")
    assert (
        refusal([FederationEntry(idp.v2_issuer, SP)], who, validator, exact=True) == "robot_issuer_not_listed"
    )


def test_never_across_tenants_even_when_one_provider_lists_both(idp: LocalIdP) -> None:
    other_v2 = f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0"
    config = quay_config(idp, OIDC_ISSUERS=[idp.v1_issuer, idp.v2_issuer, other_v2])
    validator = TokenValidator(config)
    who = principal(validator, idp, "2.0")
    assert refusal([FederationEntry(other_v2, SP)], who, validator) == "robot_issuer_not_listed"


def test_never_across_providers(idp: LocalIdP) -> None:
    other_issuer = "https://login.microsoftonline.com/dddddddd-0000-4000-8000-00000000000d/v2.0"
    config = quay_config(idp)
    config["PARTNER_LOGIN_CONFIG"] = {
        "OIDC_SERVER": other_issuer + "/",
        "CLIENT_ID": "partner-quay",
        "CLIENT_SECRET": "x",
        "OIDC_ISSUERS": [other_issuer],
    }
    validator = TokenValidator(config)
    who = principal(validator, idp, "2.0")
    assert refusal([FederationEntry(other_issuer, SP)], who, validator) == "robot_issuer_not_listed"
    assert (
        refusal([FederationEntry("https://unknown.example/", SP)], who, validator)
        == "robot_issuer_not_listed"
    )


def test_a_listed_issuer_with_another_subject_is_a_subject_mismatch(
    validator: TokenValidator, idp: LocalIdP
) -> None:
    who = principal(validator, idp)
    assert refusal([FederationEntry(idp.v2_issuer, service_principal_id(OUTSIDER))], who, validator) == (
        "robot_subject_mismatch"
    )


def test_a_robot_without_entries_is_not_federated(validator: TokenValidator, idp: LocalIdP) -> None:
    assert refusal([], principal(validator, idp), validator) == "robot_not_federated"


def test_a_robots_own_audiences_narrow_the_match(validator: TokenValidator, idp: LocalIdP) -> None:
    who = principal(validator, idp)  # aud api://quay-api
    narrow = FederationEntry(idp.v2_issuer, SP, ("some-other-audience",))
    assert refusal([narrow], who, validator) == "robot_audience_mismatch"
    fitting = FederationEntry(idp.v1_issuer, SP, ("api://quay-api",))
    assert match_entry([narrow, fitting], who, validator, exact=False) == narrow  # its own issuer's


@pytest.mark.parametrize("other_issuer", ["v1", "v2"])
def test_an_entry_without_audiences_never_widens_what_another_narrowed(
    validator: TokenValidator, idp: LocalIdP, other_issuer: str
) -> None:
    """As Quay 3.18, the audiences of any entry of the issuer apply, whatever its subject; across
    the migration, those of the other issuer's entries too."""
    who = principal(validator, idp)
    narrow = FederationEntry(idp.v2_issuer, service_principal_id(OUTSIDER), ("some-other-audience",))
    open_entry = FederationEntry(idp.v1_issuer if other_issuer == "v1" else idp.v2_issuer, SP)
    assert refusal([narrow, open_entry], who, validator) == "robot_audience_mismatch"


# -- one event when Quay refuses before asking -------------------------------------------------------


def quay_answering(status: str) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response(status, [("Content-Type", "application/json")])
        return [b'{"error": "Invalid robot"}']

    return app


@pytest.mark.parametrize(
    ("status", "event", "reason"),
    [
        ("401 UNAUTHORIZED", "oidc.token.rejected", "robot_exchange_refused"),
        ("200 OK", "oidc.token.accepted", None),
    ],
)
def test_an_exchange_quay_settled_alone_still_gets_exactly_one_event(
    idp: LocalIdP, status: str, event: str, reason: str | None
) -> None:
    validator = TokenValidator(quay_config(idp))
    app = OIDCMiddleware(
        SettleExchanges(quay_answering(status), validator),
        None,
        validator=validator,
        recorded_by_app=frozenset({ROBOT_FEDERATION}),
    )
    with capture_logs() as events:
        reply = Client(app).get(
            "/oauth2/federation/robot/token", auth=("not-a-robot-name", idp.token(client=CI_CLIENT))
        )
    assert reply.status == status
    decisions = [e for e in events if e["event"].startswith("oidc.token.")]
    assert [(e["event"], e.get("reason")) for e in decisions] == [(event, reason)]
    assert decisions[0]["sub"] == SP and decisions[0]["robot"] == "not-a-robot-name"


def test_without_install_the_middleware_records_the_accepted_exchange_itself(idp: LocalIdP) -> None:
    app = OIDCMiddleware(quay_answering("400 BAD REQUEST"), quay_config(idp))
    with capture_logs() as events:
        Client(app).get("/oauth2/federation/robot/token", auth=("org+ci", idp.token(client=CI_CLIENT)))
    assert [e["event"] for e in events if e["event"].startswith("oidc.token.")] == ["oidc.token.accepted"]
