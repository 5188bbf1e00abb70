"""The verified-token cache: fast for repeated tokens, never an acceptance the pipeline would refuse."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import pytest
from conftest import Clock, quay_config, reason_of, refresh_done, token

from oidc_middleware import TokenRejected, TokenValidator
from oidc_middleware.testing import LocalIdP, SigningKey


def make_validator(idp: LocalIdP, clock: Clock, **settings: Any) -> TokenValidator:
    config = quay_config(idp)
    config["OIDC_MIDDLEWARE_CONFIG"] = settings
    return TokenValidator(config, clock=clock)


def cache_counts(validator: TokenValidator) -> tuple[int, int]:
    counts = validator.stats()["token_cache"]
    return counts["hits"], counts["misses"]


def test_a_repeated_token_is_answered_from_the_cache_with_the_same_principal(
    idp: LocalIdP, clock: Clock
) -> None:
    validator = make_validator(idp, clock)
    raw = token(idp, clock)
    validator.validate(raw)  # first sighting: verified, only its digest remembered
    assert len(validator._cache or []) == 0
    second = validator.validate(raw)  # second: verified again, and cached
    assert validator.validate(raw) is second
    assert validator.validate(raw) is second
    assert cache_counts(validator) == (2, 2)


def test_a_token_used_once_never_enters_the_cache(idp: LocalIdP, clock: Clock) -> None:
    validator = make_validator(idp, clock, TOKEN_CACHE_ENTRIES=8)
    for _ in range(100):
        validator.validate(token(idp, clock))
    assert len(validator._cache or []) == 0


def test_a_token_that_expires_while_cached_is_refused(idp: LocalIdP, clock: Clock) -> None:
    validator = make_validator(idp, clock, LEEWAY_SECONDS=60)
    raw = token(idp, clock, lifetime=300)
    validator.validate(raw)
    validator.validate(raw)  # now cached
    clock.advance(300 + 59)
    validator.validate(raw)  # within the leeway: still from the cache
    assert cache_counts(validator) == (1, 2)
    clock.advance(2)
    assert reason_of(validator, raw) == "token_expired"
    assert cache_counts(validator) == (1, 3)


def test_a_token_whose_key_disappears_from_the_jwks_is_refused(idp: LocalIdP, clock: Clock) -> None:
    validator = make_validator(idp, clock)
    old_key = idp.keys[0]
    new_key = idp.rotate()
    raw = token(idp, clock, key=old_key, lifetime=7200)
    validator.validate(raw)
    validator.validate(raw)  # cached
    idp.keys = [new_key]  # the provider retires the key that signed the cached token
    clock.advance(3600 - 100)  # the scheduled refresh is due: the next hit starts it
    validator.validate(raw)
    refresh_done(validator)
    assert reason_of(validator, raw) == "unknown_key"


def test_rejections_are_never_cached(idp: LocalIdP, clock: Clock, attacker_key: SigningKey) -> None:
    validator = make_validator(idp, clock)
    forged = token(idp, clock, key=attacker_key)
    for _ in range(3):
        assert reason_of(validator, forged) == "invalid_signature"
    assert cache_counts(validator) == (0, 3)
    assert len(validator._cache or []) == 0


def test_the_cache_is_bounded_least_recently_used_first(idp: LocalIdP, clock: Clock) -> None:
    validator = make_validator(idp, clock, TOKEN_CACHE_ENTRIES=2)
    a, b, c = (token(idp, clock) for _ in range(3))
    for raw in (a, a, b, b):  # both cached
        validator.validate(raw)
    validator.validate(a)  # a is now the most recently used
    validator.validate(c)
    validator.validate(c)  # c cached: b, the least recently used, goes
    hits = cache_counts(validator)[0]
    validator.validate(a)
    assert cache_counts(validator)[0] == hits + 1
    validator.validate(b)
    assert cache_counts(validator)[0] == hits + 1
    assert len(validator._cache or []) == 2


def test_entries_live_no_longer_than_the_cache_lifetime(idp: LocalIdP, clock: Clock) -> None:
    validator = make_validator(idp, clock, TOKEN_CACHE_SECONDS=60)
    raw = token(idp, clock)
    validator.validate(raw)
    validator.validate(raw)  # cached
    clock.advance(61)
    validator.validate(raw)  # still valid, verified again in full
    assert cache_counts(validator) == (0, 3)


def test_the_cache_can_be_switched_off(idp: LocalIdP, clock: Clock) -> None:
    validator = make_validator(idp, clock, TOKEN_CACHE_ENTRIES=0)
    raw = token(idp, clock)
    validator.validate(raw)
    validator.validate(raw)
    assert cache_counts(validator) == (0, 0)


def test_the_cache_holds_digests_never_tokens(idp: LocalIdP, clock: Clock) -> None:
    validator = make_validator(idp, clock)
    raw = token(idp, clock)
    validator.validate(raw)
    validator.validate(raw)
    assert validator._cache is not None
    [(slot, (digest, entry))] = list(validator._cache._entries.items())
    assert isinstance(slot, int)
    assert digest == hashlib.sha256(raw.encode()).digest()
    assert raw not in repr(validator._cache._entries)
    assert raw.split(".")[2] not in repr(entry)


def test_concurrent_threads_share_the_cache_safely(idp: LocalIdP, clock: Clock) -> None:
    validator = make_validator(idp, clock, TOKEN_CACHE_ENTRIES=20)
    tokens = [token(idp, clock) for _ in range(40)]
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for index in range(400):
                validator.validate(tokens[(index + offset) % len(tokens)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    hits, misses = cache_counts(validator)
    assert hits + misses == 8 * 400
    assert validator.stats()["accepted"] == 0  # validate() decides; only callers record
    assert len(validator._cache or []) <= 20


def test_a_cached_token_still_needs_usable_keys(idp: LocalIdP, clock: Clock) -> None:
    validator = make_validator(idp, clock, KEYS_MAX_STALENESS_SECONDS=3600, TOKEN_CACHE_SECONDS=3600)
    raw = token(idp, clock, lifetime=7200)
    validator.validate(raw)
    validator.validate(raw)  # cached
    idp.stop()
    clock.advance(3601)  # the keys are now older than allowed and cannot be refreshed
    with pytest.raises(TokenRejected) as caught:
        validator.validate(raw)
    assert caught.value.reason == "keys_unavailable"


class _SameSlot(str):
    """A token whose Python hash collides with every other one's: the worst case for the cache."""

    def __hash__(self) -> int:
        return 42


def test_a_slot_collision_is_a_miss_never_another_tokens_principal(idp: LocalIdP, clock: Clock) -> None:
    validator = make_validator(idp, clock)
    alice = _SameSlot(token(idp, clock, user="alice"))
    bob = _SameSlot(token(idp, clock, user="bob"))
    alice_subject = validator.validate(alice).subject
    assert validator.validate(alice).subject == alice_subject  # verified twice: cached in slot 42
    bob_subject = validator.validate(bob).subject
    assert bob_subject != alice_subject
    forged = _SameSlot(alice[: alice.rindex(".") + 1] + bob[bob.rindex(".") + 1 :])
    assert reason_of(validator, forged) == "invalid_signature"
    assert validator.validate(alice).subject == alice_subject  # the only hit
    assert validator.validate(bob).subject == bob_subject  # bob's entry now takes slot 42
    assert validator.validate(alice).subject == alice_subject
    assert cache_counts(validator) == (1, 6)


def test_dropping_a_token_leaves_another_tokens_entry_in_its_slot(idp: LocalIdP, clock: Clock) -> None:
    validator = make_validator(idp, clock)
    alice = _SameSlot(token(idp, clock, user="alice"))
    validator.validate(alice)
    validator.validate(alice)  # cached in slot 42
    assert validator._cache is not None
    validator._cache.drop(_SameSlot(token(idp, clock, user="bob")))
    assert len(validator._cache) == 1
    validator.validate(alice)
    assert cache_counts(validator) == (1, 2)
