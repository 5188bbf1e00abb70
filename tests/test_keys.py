"""Key management against a real key server on loopback that misbehaves on demand.

Time is a manual clock handed to the validator, so that lifetimes, back-off and refresh intervals
are crossed without sleeping; the network, the HTTP server and the fetch code are all real.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from typing import Any

import pytest
from conftest import USER_OID, Clock, key_fetches, quay_config, reason_of, refresh_done, token
from structlog.testing import capture_logs

from oidc_middleware import TokenRejected, TokenValidator
from oidc_middleware.testing import LocalIdP, SigningKey


def make_validator(idp: LocalIdP, clock: Clock, **settings: Any) -> TokenValidator:
    config = quay_config(idp)
    if settings:
        config["OIDC_MIDDLEWARE_CONFIG"] = settings
    return TokenValidator(config, clock=clock)


# -- lazy start, reuse ----------------------------------------------------------------------------


def test_nothing_is_fetched_and_no_thread_started_until_the_first_token(idp: LocalIdP, clock: Clock) -> None:
    threads = threading.active_count()
    make_validator(idp, clock)
    assert sum(idp.hits.values()) == 0
    assert threading.active_count() == threads


def test_the_app_starts_while_the_idp_is_down_and_recovers_by_itself(idp: LocalIdP, clock: Clock) -> None:
    idp.stop()
    validator = make_validator(idp, clock)
    with pytest.raises(TokenRejected) as caught:
        validator.validate(token(idp, clock))
    assert (caught.value.reason, caught.value.status_code) == ("keys_unavailable", 503)
    assert "ConnectionError" in caught.value.description
    idp.start()  # back, on the same port
    assert reason_of(validator, token(idp, clock)) == "keys_unavailable"  # still backing off
    clock.advance(1.01)  # the first retry comes after about a second
    assert validator.validate(token(idp, clock)).provider == "azure"
    assert validator.health()["ready"] is True


def test_keys_are_fetched_once_and_reused(idp: LocalIdP, clock: Clock) -> None:
    validator = make_validator(idp, clock)
    for _ in range(20):
        validator.validate(token(idp, clock))
    assert key_fetches(idp) == 1
    assert idp.hits[f"/{idp.tenant}/v2.0/.well-known/openid-configuration"] == 1
    keys = validator.providers["azure"]
    assert keys.select("entra-key-1", "RS256") is keys.select("entra-key-1", "RS256")


def test_oidc_jwks_uri_skips_discovery(idp: LocalIdP, clock: Clock) -> None:
    config = quay_config(idp, OIDC_JWKS_URI=idp.jwks_uri)
    TokenValidator(config, clock=clock).validate(token(idp, clock))
    assert list(idp.hits) == [f"/{idp.tenant}/discovery/v2.0/keys"]


# -- lifetime, refresh ahead, last-known-good ------------------------------------------------------


@pytest.mark.parametrize(
    ("cache_control", "lifetime"),
    [
        (None, 3600),
        ("public, max-age=900", 900),
        ("max-age=5", 300),
        ("no-store", 300),
        ("max-age=999999", 86400),
    ],
    ids=["default", "max-age", "too-short", "no-store", "too-long"],
)
def test_lifetime_honours_max_age_within_bounds(idp: LocalIdP, clock: Clock, cache_control: str | None,
                                               lifetime: int) -> None:  # fmt: skip
    idp.cache_control = cache_control
    validator = make_validator(idp, clock)
    with capture_logs() as events:
        validator.validate(token(idp, clock))
    fetched = next(e for e in events if e["event"] == "oidc.keys.fetched")
    assert fetched["lifetime_seconds"] == lifetime
    ahead = min(300, lifetime / 10)
    clock.advance(lifetime - ahead - 1)
    validator.validate(token(idp, clock))
    refresh_done(validator)
    assert key_fetches(idp) == 1  # not yet in the refresh window
    clock.advance(2)
    validator.validate(token(idp, clock))
    refresh_done(validator)
    assert key_fetches(idp) == 2


def test_a_scheduled_refresh_never_makes_a_request_wait(idp: LocalIdP, clock: Clock) -> None:
    validator = make_validator(idp, clock)
    validator.validate(token(idp, clock))
    idp.fault, idp.delay = "slow", 2.0  # the provider now takes 2 s to answer
    clock.advance(3600 - 200)
    validator.validate(token(idp, clock))  # starts the refresh in the background
    # The request has its answer while the refresh is still waiting for the provider.
    refresh = validator.providers["azure"]._refresh_thread
    assert refresh is not None and refresh.is_alive()
    refresh_done(validator)
    assert key_fetches(idp) == 2


def test_last_known_good_keys_serve_through_an_outage_up_to_the_maximum_staleness(
    idp: LocalIdP, clock: Clock
) -> None:
    validator = make_validator(idp, clock, KEYS_MAX_STALENESS_SECONDS=7200)
    validator.validate(token(idp, clock))
    idp.stop()
    served = 0
    for _ in range(13):  # 130 minutes in 10-minute steps, each with a background refresh that fails
        clock.advance(600)
        try:
            validator.validate(token(idp, clock))
            served += 1
        except TokenRejected as rejection:
            assert rejection.reason == "keys_unavailable"
        refresh_done(validator)
    health = validator.health()["providers"]["azure"]
    assert served == 12  # up to 7200 s after the last good fetch; refused from then on
    assert health["usable"] is False
    assert "ConnectionError" in health["last_error"]
    idp.start()
    clock.advance(31)
    assert validator.validate(token(idp, clock)).provider == "azure"


def test_retries_back_off_from_a_second_to_the_maximum(idp: LocalIdP, clock: Clock) -> None:
    idp.failing = True
    validator = make_validator(idp, clock, FETCH_BACKOFF_MAX_SECONDS=30)
    waits = []
    for _ in range(8):
        assert reason_of(validator, token(idp, clock)) == "keys_unavailable"
        wait = validator.health()["providers"]["azure"]["next_attempt_in_seconds"]
        waits.append(wait)
        attempts = sum(idp.hits.values())
        assert reason_of(validator, token(idp, clock)) == "keys_unavailable"
        assert sum(idp.hits.values()) == attempts  # no attempt while backing off
        clock.advance(wait + 0.1)  # health() rounds to a tenth of a second
    assert 0.8 <= waits[0] <= 1.0
    assert all(later >= earlier * 1.5 for earlier, later in itertools.pairwise(waits[:5]))
    assert 24 <= waits[-1] <= 30


# -- unknown kids -----------------------------------------------------------------------------------


def test_a_rotated_key_is_picked_up_by_its_first_token(idp: LocalIdP, clock: Clock) -> None:
    validator = make_validator(idp, clock)
    validator.validate(token(idp, clock))
    clock.advance(61)
    new_key = idp.rotate()
    assert validator.validate(token(idp, clock, key=new_key)).provider == "azure"
    assert key_fetches(idp) == 2


def test_a_removed_key_stops_working_once_the_key_set_is_refreshed(idp: LocalIdP, clock: Clock) -> None:
    validator = make_validator(idp, clock)
    old_key = idp.keys[0]
    new_key = idp.rotate()
    validator.validate(token(idp, clock, key=old_key))
    idp.keys = [new_key]  # the provider retires the old key
    clock.advance(3600 - 100)  # into the refresh window
    validator.validate(token(idp, clock, key=new_key))
    refresh_done(validator)
    assert reason_of(validator, token(idp, clock, key=old_key)) == "unknown_key"
    assert validator.validate(token(idp, clock, key=new_key)).provider == "azure"


def test_a_storm_of_forged_kids_from_16_threads_causes_one_fetch(
    idp: LocalIdP, clock: Clock, attacker_key: SigningKey
) -> None:
    validator = make_validator(idp, clock)
    validator.validate(token(idp, clock))
    clock.advance(61)
    forged = [
        token(idp, clock, key=attacker_key, header={"kid": f"forged-{uuid.uuid4()}"}) for _ in range(200)
    ]
    good = token(idp, clock)
    reasons: list[str] = []
    lock = threading.Lock()

    def attack(chunk: list[str]) -> None:
        for raw in chunk:
            outcome = reason_of(validator, raw)
            validator.validate(good)  # legitimate traffic keeps working throughout
            with lock:
                reasons.append(outcome)

    threads = [threading.Thread(target=attack, args=(forged[i::16],)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert reasons == ["unknown_key"] * 200
    assert key_fetches(idp) == 2  # the warm-up, and one for the whole storm


def test_a_kid_found_absent_is_not_refetched_until_the_interval_passes(
    idp: LocalIdP, clock: Clock, attacker_key: SigningKey
) -> None:
    validator = make_validator(idp, clock, JWKS_MIN_REFRESH_SECONDS=120)
    validator.validate(token(idp, clock))
    clock.advance(121)
    forged = token(idp, clock, key=attacker_key, header={"kid": "forged"})
    assert reason_of(validator, forged) == "unknown_key"
    assert key_fetches(idp) == 2
    clock.advance(119)
    assert reason_of(validator, forged) == "unknown_key"
    assert key_fetches(idp) == 2
    clock.advance(2)
    assert reason_of(validator, forged) == "unknown_key"
    assert key_fetches(idp) == 3


def test_a_kid_refused_while_refetches_are_throttled_is_found_by_the_next_allowed_refetch(
    idp: LocalIdP, clock: Clock
) -> None:
    validator = make_validator(idp, clock)  # JWKS_MIN_REFRESH_SECONDS 60
    validator.validate(token(idp, clock))
    clock.advance(30)
    new_key = idp.rotate()  # the provider rotates; its first token arrives while refetch is throttled
    assert reason_of(validator, token(idp, clock, key=new_key)) == "unknown_key"
    assert key_fetches(idp) == 1
    clock.advance(31)  # 61 s after the last fetch: a refetch is allowed again
    assert validator.validate(token(idp, clock, key=new_key)).provider == "azure"
    assert key_fetches(idp) == 2


def test_during_an_outage_known_keys_work_and_new_kids_are_refused_quickly(
    idp: LocalIdP, clock: Clock, attacker_key: SigningKey
) -> None:
    validator = make_validator(idp, clock)
    validator.validate(token(idp, clock))
    idp.stop()
    clock.advance(61)
    served = 0
    for index in range(100):
        if index % 10 == 0:
            assert (
                reason_of(validator, token(idp, clock, key=attacker_key, header={"kid": f"new-{index}"}))
                == "unknown_key"
            )
        else:
            validator.validate(token(idp, clock))
            served += 1
    assert served == 90
    # Ten new kids cost one attempt on the dead provider, not ten: refetches are throttled.
    assert validator.stats()["key_fetches"] == {"ok": 1, "failed": 1}
    idp.start()
    clock.advance(61)
    new_key = idp.rotate()
    assert validator.validate(token(idp, clock, key=new_key)).provider == "azure"


# -- fetch hardening --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "settings", "error"),
    [
        ("500", {}, "HTTP 500 from"),
        ("html", {}, "is not JSON (Content-Type text/html)"),
        ("huge", {}, "more than 1048576"),
        ("redirect", {}, "HTTP 302 from http://127.0.0.1"),
        ("slow", {"HTTP_READ_TIMEOUT_SECONDS": 1}, "timeout fetching"),
        ("drip", {"FETCH_DEADLINE_SECONDS": 1}, "took longer than 1 s"),
    ],
)
def test_a_misbehaving_provider_gives_a_clear_error_and_never_a_hang(
    idp: LocalIdP, clock: Clock, fault: str, settings: dict[str, Any], error: str
) -> None:
    idp.fault = fault
    idp.delay = 30.0 if fault == "slow" else 0.05  # a drip of a few hundred bytes takes 15+ s
    validator = make_validator(idp, clock, **settings)
    started = time.monotonic()
    with pytest.raises(TokenRejected) as caught:
        validator.validate(token(idp, clock))
    elapsed = time.monotonic() - started
    assert caught.value.reason == "keys_unavailable"
    assert error in caught.value.description
    assert elapsed < 10.0  # bounded by the 1 s timeout or deadline, far below the provider's pace
    if fault == "redirect":
        assert "redirect to attacker.example not followed" in caught.value.description


def test_a_bad_key_is_skipped_with_a_log_line_and_the_others_still_work(idp: LocalIdP, clock: Clock) -> None:
    idp.extra_jwks = [
        {"kty": "RSA", "kid": "short", "n": "AQAB", "e": "AQAB"},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        "not even an object",
    ]
    validator = make_validator(idp, clock)
    with capture_logs() as events:
        assert validator.validate(token(idp, clock)).provider == "azure"
    skipped = [e for e in events if e["event"] == "oidc.keys.key_skipped"]
    assert len(skipped) == 3
    assert "c2VjcmV0" not in json.dumps(skipped)  # key material is never logged


def test_a_document_that_is_not_a_key_set_is_a_failed_fetch(idp: LocalIdP, clock: Clock) -> None:
    original = idp.jwks
    idp.jwks = lambda: {"keys": "all of them"}  # type: ignore[method-assign]
    try:
        validator = make_validator(idp, clock)
        with pytest.raises(TokenRejected) as caught:
            validator.validate(token(idp, clock))
        assert "not a JWK set" in caught.value.description
    finally:
        idp.jwks = original  # type: ignore[method-assign]


def test_the_environments_proxy_is_used_as_quays_own_client_uses_it(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Quay Operator hands the cluster's proxy to Quay's pods in HTTP(S)_PROXY and NO_PROXY."""
    with LocalIdP(tls=True) as tls_idp:
        assert tls_idp.ca_file is not None
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_idp.ca_file)
        for name in ("HTTPS_PROXY", "https_proxy"):
            monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
        assert reason_of(make_validator(tls_idp, clock), token(tls_idp, clock)) == "keys_unavailable"
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,.svc")
        assert make_validator(tls_idp, clock).validate(token(tls_idp, clock)).provider == "azure"


def test_a_plain_http_loopback_provider_is_never_reached_through_a_proxy(
    idp: LocalIdP, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy would carry the keys unprotected and fetch them from its own loopback."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    assert make_validator(idp, clock).validate(token(idp, clock)).provider == "azure"
    configured = make_validator(idp, clock, HTTPS_PROXY="http://127.0.0.1:9")
    assert configured.validate(token(idp, clock)).provider == "azure"


def test_the_environments_ca_bundle_is_used_and_the_configurations_wins(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with LocalIdP(tls=True) as tls_idp:
        assert tls_idp.ca_file is not None
        assert reason_of(make_validator(tls_idp, clock), token(tls_idp, clock)) == "keys_unavailable"
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_idp.ca_file)  # what Quay's own client reads
        assert make_validator(tls_idp, clock).validate(token(tls_idp, clock)).provider == "azure"
        with LocalIdP(tls=True) as another:  # a CA_BUNDLE of the configuration wins
            configured = make_validator(tls_idp, clock, CA_BUNDLE=another.ca_file)
            assert reason_of(configured, token(tls_idp, clock)) == "keys_unavailable"


def test_proxy_and_ca_bundle_of_the_configuration_win(
    idp: LocalIdP, clock: Clock, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oidc_middleware.fetch import route

    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://environment-proxy:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/environment-ca.pem")
    validator = make_validator(
        idp, clock, HTTPS_PROXY="http://proxy.corp.example:3128", CA_BUNDLE=str(bundle)
    )
    proxies, verify = route("https://login.microsoftonline.com/x", validator.config)
    assert proxies["https"] == "http://proxy.corp.example:3128" and verify == str(bundle)
    assert validator.providers["azure"]._fetcher.session.trust_env is False  # never .netrc credentials
    unset = make_validator(idp, clock).config
    assert route("https://login.microsoftonline.com/x", unset) == (
        {"https": "http://environment-proxy:3128"},
        "/etc/environment-ca.pem",
    )
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.setenv("NO_PROXY", "login.microsoftonline.com")
    assert route("https://login.microsoftonline.com/x", unset) == ({}, True)  # certifi's bundle


# -- operators: stats and health ---------------------------------------------------------------------


def test_stats_count_fetches_and_cache_but_validate_records_no_decision(
    idp: LocalIdP, clock: Clock, attacker_key: SigningKey
) -> None:
    """validate() only decides: decisions are counted where they are recorded (record.py)."""
    validator = make_validator(idp, clock)
    repeated = token(idp, clock)
    validator.validate(repeated)
    validator.validate(repeated)  # verified again, and cached (second sighting)
    validator.validate(repeated)  # from the verified-token cache
    for bad in (token(idp, clock, key=attacker_key), "junk"):
        with pytest.raises(TokenRejected):
            validator.validate(bad)
    assert validator.stats() == {
        "accepted": 0,
        "rejected": {},
        "passthrough": {},
        "key_fetches": {"ok": 1, "failed": 0},
        "token_cache": {"hits": 1, "misses": 4},
    }


def test_health_reports_keys_age_and_last_error(idp: LocalIdP, clock: Clock) -> None:
    validator = make_validator(idp, clock)
    before = validator.health()
    assert before["ready"] is False
    assert before["providers"]["azure"]["keys_loaded"] is False
    assert validator.prefetch()["ready"] is True
    clock.advance(120)
    state = validator.health()["providers"]["azure"]
    assert (state["keys_loaded"], state["usable"], state["kids"], state["age_seconds"]) == (
        True,
        True,
        ["entra-key-1"],
        120.0,
    )
    assert state["last_error"] is None


def test_prometheus_metrics_expose_the_counters(idp: LocalIdP, clock: Clock) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from oidc_middleware.decision import Decider, HttpRequest
    from oidc_middleware.prometheus import register

    validator = make_validator(idp, clock)
    registry = CollectorRegistry()
    register(validator, registry)
    decider = Decider(validator)
    for credential in (token(idp, clock, user=USER_OID), "junk.junk.junk"):
        decider.decide(HttpRequest("GET", "/api/v1/user/", "", (f"Bearer {credential}",), "quay", "https"))
    text = generate_latest(registry).decode()
    assert 'oidc_middleware_decisions_total{outcome="accepted",reason=""} 1.0' in text
    assert 'oidc_middleware_decisions_total{outcome="rejected",reason="malformed_token"} 1.0' in text
    assert 'oidc_middleware_key_fetches_total{result="ok"} 1.0' in text
    assert 'oidc_middleware_keys_usable{provider="azure"} 1.0' in text


# -- failures that are not HTTP errors (found in review) ---------------------------------------------


def test_a_truncated_key_document_is_a_failed_fetch_that_backs_off(idp: LocalIdP, clock: Clock) -> None:
    idp.fault = "truncate"
    validator = make_validator(idp, clock)
    for _ in range(5):
        assert reason_of(validator, token(idp, clock)) == "keys_unavailable"
    assert sum(idp.hits.values()) == 1  # one attempt, then back-off: never one fetch per request
    assert "reading" in (validator.health()["providers"]["azure"]["last_error"] or "")
    assert validator.prefetch()["ready"] is False  # recorded, not raised


def test_a_key_with_a_non_string_alg_is_skipped_and_spoils_nothing(idp: LocalIdP, clock: Clock) -> None:
    idp.extra_jwks = [{**SigningKey.rsa("odd").public_jwk(), "alg": ["RS256"]}]
    validator = make_validator(idp, clock)
    assert validator.validate(token(idp, clock)).provider == "azure"
    assert validator.health()["providers"]["azure"]["skipped_keys"] == [
        "key 1 (kid 'odd'): alg is not a string"
    ]


def test_a_discovery_document_with_an_unparsable_jwks_uri_is_a_failed_fetch(
    idp: LocalIdP, clock: Clock
) -> None:
    original = idp._discovery
    idp._discovery = lambda issuer: {**original(issuer), "jwks_uri": "http://[::1/keys"}  # type: ignore[method-assign]
    try:
        validator = make_validator(idp, clock)
        with pytest.raises(TokenRejected) as caught:
            validator.validate(token(idp, clock))
        assert caught.value.reason == "keys_unavailable"
        assert "is not a valid URL" in caught.value.description
    finally:
        idp._discovery = original  # type: ignore[method-assign]


def test_tokens_of_non_url_issuers_never_wait_for_a_slow_discovery(idp: LocalIdP, clock: Clock) -> None:
    """Quay's own registry tokens (iss: quay) pass straight through while a provider configured
    without an issuer cannot be discovered."""
    from oidc_middleware.testing import mint

    idp.fault, idp.delay = "slow", 3.0
    validator = TokenValidator(quay_config(idp, OIDC_ISSUERS=None), clock=clock)
    quay_token = mint(
        {"iss": "quay", "sub": "alice", "aud": "quay.example.com", "exp": clock() + 300}, SigningKey.rsa("q")
    )
    assert reason_of(validator, quay_token) == "issuer_not_configured"
    assert sum(idp.hits.values()) == 0  # no discovery was even attempted
