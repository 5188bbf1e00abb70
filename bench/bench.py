"""make bench: what the middleware costs, as ratios to one RSA verification, measured side by side.

Every figure is the best of several rounds (these machines are shared; the best round is the one
least disturbed), the rounds of the variants of one table interleaved, each round starting with
another variant, so that they all see the same machine. The spread column is (median - best) / best over the rounds.

Floor: ``cryptography`` verifying one RS256 (or ES256) signature with a key object built in
advance: what any correct validator must pay at least, once per token it has not seen.
"""

from __future__ import annotations

import binascii
import io
import json
import logging
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt as pyjwt
import requests
import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jose import jwt as jose_jwt
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

from oidc_middleware import OIDCMiddleware, TokenValidator, configure_json_logging  # noqa: E402
from oidc_middleware.base64url import decode  # noqa: E402
from oidc_middleware.testing import LocalIdP, SigningKey  # noqa: E402

CLIENT = "9a8b7c6d-0000-4000-8000-0000000000c1"
# A person (delegated tokens): app-only tokens are refused on the API (APP_ONLY_TOKENS).
USER = "6e5d4c3b-0000-4000-8000-00000000a11c"
ROUNDS = 40  # short rounds, interleaved: the best one is the least disturbed
PAIRS = 15  # throughput: back-to-back runs without and with the middleware
Op = Callable[[int], None]  # runs one operation; the argument is the iteration number


def measure(
    variants: dict[str, tuple[Op, int]], logging_for: dict[str, Callable[[], None]] | None = None
) -> dict[str, tuple[float, float]]:
    """Seconds per operation for each variant: (best, spread), rounds interleaved.

    ``logging_for`` names, per variant, the audit set-up it runs under (default: filtered out);
    it is switched before each of its rounds, so that every variant sees the same machine.
    """
    samples: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_number in range(ROUNDS):
        # Each round starts with another variant, so that none always runs in the same place
        # (first after a pause, or after the same neighbour).
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            op, count = variants[name]
            (logging_for or {}).get(name, quiet_audit)()
            started = time.perf_counter()
            for index in range(count):
                op(index)
            samples[name].append((time.perf_counter() - started) / count)
    quiet_audit()
    return {
        name: (min(values), (statistics.median(values) - min(values)) / min(values))
        for name, values in samples.items()
    }


def quiet_audit() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def config_for(idp: LocalIdP, **settings: Any) -> dict[str, Any]:
    return {
        "AZURE_LOGIN_CONFIG": {
            "OIDC_SERVER": idp.v2_server,
            "CLIENT_ID": "5f0c9a1e-0000-4000-8000-00000000c1a1",
            "OIDC_ISSUERS": [idp.v1_issuer, idp.v2_issuer],
            "OIDC_AUDIENCES": ["api://quay-api"],
            "OIDC_ALLOWED_CLIENTS": [CLIENT],
        },
        "OIDC_MIDDLEWARE_CONFIG": settings,
    }


def environ_for(token: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/v1/user/",
        "QUERY_STRING": "",
        "HTTP_HOST": "quay.example.com",
        "wsgi.url_scheme": "https",
        "REMOTE_ADDR": "203.0.113.7",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
    }


def bare_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def bare_python_reference(public: Any, alg: str) -> Callable[[str], None]:
    """What the least Python around the floor costs: split, base64, JSON, verify, three claims.

    Not a validator (no strict parsing, no key choice, no policy, no cache, no principal): a
    measure of how much any validator written in Python pays on top of the floor, in this run.
    """
    to_standard = bytes.maketrans(b"-_", b"+/")
    verify_args = (padding.PKCS1v15(), hashes.SHA256()) if alg == "RS256" else (ec.ECDSA(hashes.SHA256()),)

    def unpadded(segment: str) -> bytes:
        return binascii.a2b_base64(segment.encode().translate(to_standard) + b"==")

    def check(token: str) -> None:
        header, payload, signature = token.split(".")
        json.loads(unpadded(header))
        claims = json.loads(unpadded(payload))
        raw = unpadded(signature)
        if alg != "RS256":  # JWS carries r||s; cryptography takes DER
            raw = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        public.verify(raw, token[: len(header) + 1 + len(payload)].encode(), *verify_args)
        if not (
            claims["exp"] > time.time() and claims["aud"] == "api://quay-api" and claims["azp"] == CLIENT
        ):
            raise ValueError("refused")

    return check


def algorithm_table(name: str, key: SigningKey) -> list[tuple[str, float, float, float | None]]:
    """Rows (label, seconds, spread, target ratio) for one algorithm."""
    with LocalIdP(keys=[key]) as idp:
        validator = TokenValidator(config_for(idp))
        count = 100
        # Cold tokens are each seen once, with the verified-token cache (default size) full of
        # tokens seen twice, as in a busy steady state.
        fresh = [
            idp.token(client=CLIENT, user=USER, lifetime=7200) for _ in range(count * (ROUNDS + 1) + 4096)
        ]
        for token in fresh[-4096:] * 2:
            validator.validate(token)
        fresh = fresh[:-4096]
        warm = fresh[-1]  # never a cold token
        validator.validate(warm)
        validator.validate(warm)  # verified twice: cached
        head, body, signature = warm.split(".")
        signing_input, raw_signature = f"{head}.{body}".encode(), decode(signature)
        public = key.private_key.public_key()
        jwk = key.public_jwk()
        if name == "RS256":

            def floor(_):
                return public.verify(raw_signature, signing_input, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
        else:
            r, s = int.from_bytes(raw_signature[:32], "big"), int.from_bytes(raw_signature[32:], "big")
            der = encode_dss_signature(r, s)
            floor = lambda _: public.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr,call-arg]  # noqa: E731
        reference = bare_python_reference(public, name)
        reference_tokens = iter(fresh)
        cold_tokens = iter(fresh)
        uncached = TokenValidator(config_for(idp, TOKEN_CACHE_ENTRIES=0))
        uncached.validate(warm)
        uncached_tokens = iter(fresh)
        middleware = OIDCMiddleware(bare_app, validator.config, validator=validator)
        warm_environ = environ_for(warm)
        sink = [].append
        answered: list[str] = []
        middleware(dict(warm_environ), lambda status, headers: answered.append(status))
        if answered != ["200 OK"]:  # measure the accepted path, never a refusal
            raise SystemExit(f"the benchmark token was not accepted: {answered}")

        def through_middleware(_: int) -> None:
            sink(middleware(dict(warm_environ), lambda status, headers: None))

        def bare(_: int) -> None:
            sink(bare_app(dict(warm_environ), lambda status, headers: None))

        variants: dict[str, tuple[Op, int]] = {
            "floor": (floor, count),
            "jose": (
                lambda _: jose_jwt.decode(warm, jwk, algorithms=[name], audience="api://quay-api"),
                count,
            ),
            "pyjwt": (
                lambda _: pyjwt.decode(warm, public, algorithms=[name], audience="api://quay-api"),
                count,
            ),  # type: ignore[arg-type]
            "reference": (lambda _: reference(next(reference_tokens)), count),
            "cold": (lambda _: validator.validate(next(cold_tokens)), count),
            "uncached": (lambda _: uncached.validate(next(uncached_tokens)), count),
            "warm": (lambda _: validator.validate(warm), count * 10),
            "bare": (bare, count * 10),
            "middleware": (through_middleware, count * 10),
            "bare, JSON audit": (bare, count * 10),
            "middleware, JSON audit": (through_middleware, count * 10),
        }
        json_lines = io.StringIO()

        def json_audit() -> None:  # every event rendered as JSON, into memory
            json_lines.seek(0)
            json_lines.truncate()
            configure_json_logging(json_lines)

        measured = measure(variants, {"bare, JSON audit": json_audit, "middleware, JSON audit": json_audit})
        filtered = measured
        rendered = {"bare": measured["bare, JSON audit"], "middleware": measured["middleware, JSON audit"]}
    f = filtered["floor"][0]
    overhead_filtered = filtered["middleware"][0] - filtered["bare"][0]
    overhead_json = rendered["middleware"][0] - rendered["bare"][0]
    return [
        (f"{name} floor: cryptography verify, key prebuilt", f, filtered["floor"][1], None),
        (f"{name} python-jose jwt.decode with a JWK dict", *filtered["jose"], None),
        (f"{name} PyJWT jwt.decode with a key object", *filtered["pyjwt"], None),
        (f"{name} reference: split, base64, JSON, verify, 3 claims", *filtered["reference"], None),
        (f"{name} validate(), first-seen token (cold)", *filtered["cold"], 2.0),
        (f"{name} the same with the token cache off", *filtered["uncached"], None),
        (f"{name} validate(), repeated token (warm)", *filtered["warm"], 0.25),
        (
            f"{name} WSGI middleware overhead, warm, audit filtered",
            overhead_filtered,
            filtered["middleware"][1],
            0.5,
        ),
        (
            f"{name} WSGI middleware overhead, warm, audit as JSON",
            overhead_json,
            rendered["middleware"][1],
            1.5,
        ),
    ]


def throughput() -> tuple[float, float, float]:
    """Requests per second of the example app in a threaded Werkzeug server, without and with the
    middleware: runs in back-to-back pairs; the ratio is the median of the pairs' ratios."""
    import quay_wsgi  # examples/quay_wsgi.py

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with LocalIdP() as idp:
        token = idp.token(client=CLIENT, user=USER, lifetime=7200)
        plain = quay_wsgi.create_app()
        wrapped = quay_wsgi.wrap(quay_wsgi.create_app(), TokenValidator(config_for(idp)))
        servers = {}
        for name, app in (("without", plain), ("with", wrapped)):
            server = make_server("127.0.0.1", 0, app, threaded=True)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers[name] = server
        headers = {"Authorization": f"Bearer {token}"}
        rates: dict[str, list[float]] = {"without": [], "with": []}
        for _ in range(PAIRS):
            for name, server in servers.items():
                rates[name].append(_load(f"http://127.0.0.1:{server.server_port}/api/v1/user/", headers))
        for server in servers.values():
            server.shutdown()
    ratios = [with_mw / without for without, with_mw in zip(rates["without"], rates["with"], strict=True)]
    return statistics.median(rates["without"]), statistics.median(rates["with"]), statistics.median(ratios)


def _load(url: str, headers: dict[str, str], clients: int = 4, seconds: float = 0.6) -> float:
    done = [0] * clients
    stop = time.monotonic() + seconds

    def client(slot: int) -> None:
        with requests.Session() as session:
            while time.monotonic() < stop:
                session.get(url, headers=headers, timeout=10)
                done[slot] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.monotonic() - started)


def cache_memory(entries: int = 4096) -> float:
    """Bytes per entry of a full verified-token cache."""
    with LocalIdP() as idp:
        validator = TokenValidator(config_for(idp, TOKEN_CACHE_ENTRIES=entries))
        tokens = [idp.token(client=CLIENT, user=f"user-{n}", lifetime=7200) for n in range(entries)]
        validator.validate(tokens[0])
        validator.validate(tokens[0])
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for token in tokens[1:] * 2:  # a token is cached when it is verified the second time
            validator.validate(token)
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        return grown / (entries - 1)


def main() -> int:
    quiet_audit()
    print(f"oidc_middleware benchmark (best of {ROUNDS} rounds; spread = (median - best) / best)\n")
    rows = algorithm_table("RS256", SigningKey.rsa("bench-rsa")) + algorithm_table(
        "ES256", SigningKey.ec("bench-ec")
    )
    failures = []
    print(f"{'measurement':<58} {'µs/op':>9} {'x floor':>8} {'spread':>7}  target")
    floor = 0.0
    for label, seconds, spread, target in rows:
        if "floor" in label:
            floor = seconds
        ratio = seconds / floor
        verdict = ""
        if target is not None:
            verdict = f"<= {target:.2f}x " + ("ok" if ratio <= target else "MISSED")
            if ratio > target:
                failures.append(label)
        print(f"{label:<58} {seconds * 1e6:9.1f} {ratio:8.2f} {spread:7.1%}  {verdict}")
    without, with_mw, share = throughput()
    print(
        f"\nthroughput, example app, threaded Werkzeug server, 4 keep-alive clients, {PAIRS} pairs of 0.6 s runs:"
    )
    print(f"  without middleware {without:8.0f} req/s (median)")
    print(
        f"  with middleware    {with_mw:8.0f} req/s (median); median ratio of the pairs {share:.1%}, target >= 90% "
        + ("ok" if share >= 0.9 else "MISSED")
    )
    if share < 0.9:
        failures.append("throughput")
    per_entry = cache_memory()
    print(
        f"\nverified-token cache, full at 4096 entries: {per_entry / 1024:.1f} KiB per entry, "
        f"{per_entry * 4096 / 1024 / 1024:.1f} MiB in all"
    )
    quay_rows()
    print("\n" + ("every target met" if not failures else f"targets missed: {', '.join(failures)}"))
    return 0


def quay_rows() -> None:
    """Quay 3.18.0's own token handling next to install, measured in process in Quay's venv."""
    import tempfile

    from oidc_middleware.quay import lab

    source = lab.sources()
    if source is None:
        print(f"\nQuay rows not measured: {lab.HOW_TO_GET}")
        return
    with tempfile.TemporaryDirectory(prefix="oidc-bench-quay-") as scratch:
        work = Path(scratch)
        install = lab.ensure_installed("3.18.0", source, lab.build_wheel(work / "wheel"))
        figures = lab.run_benchmark(install, work / "bench")
    rounds, count = figures["rounds"], figures["requests_per_round"]
    print(
        f"\nQuay {install.version}'s real app in process (Flask test client), natively and with install, "
        f"{rounds} interleaved rounds of {count}; best round (median):"
    )

    def pair(title: str, key: str) -> None:
        native, ours = figures[key]["native"], figures[key]["install"]
        print(f"  {title}")
        print(f"    Quay natively  {native['best_us']:9.1f} µs ({native['median_us']:.1f})")
        print(
            f"    with install   {ours['best_us']:9.1f} µs ({ours['median_us']:.1f})   "
            f"{ours['best_us'] / native['best_us']:.2f}x Quay's own"
        )

    pair("GET /api/v1/user/ with a valid v2.0 bearer token (the whole request):", "valid_request")
    pair("of which Quay's decode of that token (decode_user_jwt, every request):", "decode")
    forged = figures["forged_unknown_kid"]
    print("  1,000 forged tokens, each naming a kid the provider never published (all refused 401):")
    for mode, label in (("native", "Quay natively"), ("install", "with install")):
        print(
            f"    {label:<14} {forged[mode]['key_set_fetches']:5d} key-set fetches at the provider, "
            f"{forged[mode]['us_per_token']:8.1f} µs per refused token"
        )
    print(
        "    (install refetches on an unknown kid at most once per JWKS_MIN_REFRESH_SECONDS, 60 s; its keys "
        "were fetched seconds before, so none here)"
    )
    down = figures["provider_down"]
    pair("the valid request while the provider does not answer (keys fetched earlier):", "provider_down")
    print(
        f"    statuses: Quay natively {down['statuses']['native']}, with install {down['statuses']['install']}"
    )
    robots = figures["robot_exchange"]
    pair("robot federation: a service principal's v2.0 token for a robot token (the whole request):",
         "robot_exchange")  # fmt: skip
    for mode, label in (("native", "Quay natively"), ("install", "with install")):
        print(
            f"    {label:<14} {robots[mode]['provider_requests_per_exchange']:.2f} provider requests per exchange "
            f"(discovery and key set), statuses {robots[mode]['statuses']}"
        )


if __name__ == "__main__":
    sys.exit(main())
