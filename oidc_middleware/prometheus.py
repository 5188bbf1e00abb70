"""Prometheus metrics from :meth:`TokenValidator.stats` and :meth:`TokenValidator.health`.

Needs ``prometheus_client`` 0.7.1 or later: inside Quay, the one Quay pins (3.15 to 3.18 pin
0.7.1), so nothing of Quay's is upgraded; elsewhere ``pip install 'oidc-middleware[prometheus]'``.
Register once per process::

    from oidc_middleware.prometheus import register
    register(validator)              # on prometheus_client's default registry (Quay's too)

The collector reads the counters at scrape time; nothing is added to the request path. It is a
plain collector object (``collect`` and ``describe``), the protocol every prometheus_client
release accepts; the ``Collector`` base class exists only from 0.14 on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import REGISTRY, CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric

from .validator import TokenValidator

_COUNTERS = (
    "oidc_middleware_decisions",
    "oidc_middleware_key_fetches",
    "oidc_middleware_token_cache_lookups",
)
_GAUGES = ("oidc_middleware_keys_usable", "oidc_middleware_keys_age_seconds")


class ValidatorCollector:
    """Exposes one validator's counters and key health."""

    def __init__(self, validator: TokenValidator) -> None:
        self._validator = validator

    def describe(self) -> list[Metric]:
        """The metric names, without reading the counters (the registry checks for clashes)."""
        counters: list[Metric] = [CounterMetricFamily(name, "") for name in _COUNTERS]
        return counters + [GaugeMetricFamily(name, "") for name in _GAUGES]

    def collect(self) -> Iterator[Metric]:
        stats: dict[str, Any] = self._validator.stats()
        decisions = CounterMetricFamily(
            "oidc_middleware_decisions", "Token decisions by outcome and reason", labels=["outcome", "reason"]
        )
        decisions.add_metric(["accepted", ""], stats["accepted"])
        for outcome in ("rejected", "passthrough"):
            for reason, count in stats[outcome].items():
                decisions.add_metric([outcome, reason], count)
        yield decisions
        fetches = CounterMetricFamily(
            "oidc_middleware_key_fetches", "Key fetches by result", labels=["result"]
        )
        for result, count in stats["key_fetches"].items():
            fetches.add_metric([result], count)
        yield fetches
        cache = CounterMetricFamily(
            "oidc_middleware_token_cache_lookups", "Verified-token cache lookups", labels=["result"]
        )
        for result, count in stats["token_cache"].items():
            cache.add_metric([result], count)
        yield cache
        health = self._validator.health()["providers"]
        usable = GaugeMetricFamily(
            "oidc_middleware_keys_usable", "1 when the provider has usable keys", labels=["provider"]
        )
        age = GaugeMetricFamily(
            "oidc_middleware_keys_age_seconds", "Age of the keys in use", labels=["provider"]
        )
        for provider, state in health.items():
            usable.add_metric([provider], 1.0 if state["usable"] else 0.0)
            if state["age_seconds"] is not None:
                age.add_metric([provider], state["age_seconds"])
        yield usable
        yield age


def register(validator: TokenValidator, registry: CollectorRegistry = REGISTRY) -> ValidatorCollector:
    """Register a collector for ``validator`` on ``registry``; return it."""
    collector = ValidatorCollector(validator)
    registry.register(collector)
    return collector
