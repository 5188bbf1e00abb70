"""Prometheus metrics from :meth:`TokenValidator.stats` and :meth:`TokenValidator.health`.

Optional: ``pip install 'oidc-middleware[prometheus]'``. Register once per process::

    from oidc_middleware.prometheus import register
    register(validator)              # on prometheus_client's default registry

The collector reads the counters at scrape time; nothing is added to the request path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from .validator import TokenValidator


class ValidatorCollector(Collector):
    """Exposes one validator's counters and key health."""

    def __init__(self, validator: TokenValidator) -> None:
        self._validator = validator

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
