"""Prometheus metrics (through ``prometheus_client``): one registry per engine.

The per-request path only bumps plain integers (a dict increment, no lock: the event loop
is one thread); the values become Prometheus metric families when ``/metrics`` is scraped.

Catalogue (also in the README):

* ``authgate_sign_ins_total{outcome}`` — ``succeeded``, ``failed``, ``throttled``
* ``authgate_events_total{type}`` — every security event of the catalogue
* ``authgate_tokens_issued_total`` — access tokens signed (logins and refreshes)
* ``authgate_refreshes_total{outcome}`` — ``rotated``, ``reuse``, ``invalid``
* ``authgate_throttled_total{what}`` — requests refused by a throttle
* ``authgate_cache_lookups_total{cache,result}`` — session/token cache ``hit``/``miss``
* ``authgate_revocation_delay_seconds`` — histogram: a revocation sent by another process
  (socket bus or LISTEN/NOTIFY) → applied here
* ``authgate_request_duration_seconds{route}`` — histogram by route
* ``authgate_password_hash_waiting`` — Argon2 jobs waiting for a slot
* ``authgate_outbox_pending{outbox}`` — ``webhooks`` deliveries and ``mail`` not yet accepted
* ``authgate_cached_sessions``, ``authgate_cached_tokens``, ``authgate_revoked_families``,
  ``authgate_revocation_fresh`` — gauges of the in-process state
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
DELAY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Histogram:
    """Fixed buckets, plain lists: ``observe`` costs a bisect and two additions."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.series: dict[str, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, label: str = "") -> None:
        counts, total = self.series.get(label) or self.series.setdefault(
            label, ([0] * (len(self.buckets) + 1), [0.0]))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        total[0] += value

    def family(self, name: str, doc: str, label: str | None) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, doc, labels=[label] if label else None)
        for key, (counts, total) in sorted(self.series.items()):
            cumulative, running = [], 0
            for bound, count in zip((*map(str, self.buckets), "+Inf"), counts, strict=True):
                running += count
                cumulative.append((bound, running))
            family.add_metric([key] if label else [], cumulative, total[0])
        return family


class Metrics(Collector):
    """What the engine counts, and the gauges it reads at scrape time."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.events: Counter[str] = Counter()
        self.latency = Histogram(LATENCY_BUCKETS)
        self.revocation_delay = Histogram(DELAY_BUCKETS)
        self.gauges: dict[str, Callable[[], float]] = {}
        self.labelled_gauges: dict[str, tuple[str, Callable[[], dict[str, float]]]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def count(self, name: str, label: str = "") -> None:
        self.counts[(name, label)] += 1

    def event(self, type: str) -> None:
        self.events[type] += 1
        outcome = type.removeprefix("sign_in.")
        if outcome != type:
            self.count("sign_ins", outcome)
        if type == "sign_in.throttled":
            self.count("throttled", "sign_in")
        elif type == "refresh.reuse_detected":
            self.count("refreshes", "reuse")

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        self.gauges[name] = read

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterable[Any]:
        counters = {  # name: (help, label names; a label value "a:b" fills two labels)
            "sign_ins": ("Sign-ins by outcome", ["outcome"]),
            "refreshes": ("Refresh grants by outcome", ["outcome"]),
            "throttled": ("Requests refused by a throttle", ["what"]),
            "tokens_issued": ("Access tokens signed", []),
            "cache_lookups": ("Session and token cache look-ups", ["cache", "result"]),
        }
        for name, (doc, label_names) in counters.items():
            family = CounterMetricFamily(f"authgate_{name}", doc, labels=label_names or None)
            for (counted, label), total in sorted(self.counts.items()):
                if counted == name:
                    family.add_metric(label.split(":") if label_names else [], total)
            yield family
        events = CounterMetricFamily("authgate_events", "Security events by type",
                                     labels=["type"])
        for type, total in sorted(self.events.items()):
            events.add_metric([type], total)
        yield events
        yield self.latency.family("authgate_request_duration_seconds",
                                  "Request latency by route", "route")
        yield self.revocation_delay.family(
            "authgate_revocation_delay_seconds",
            "Time from another process sending a revocation to it being applied here", None)
        for name, read in sorted(self.gauges.items()):
            yield GaugeMetricFamily(f"authgate_{name}", name.replace("_", " "), value=read())
        for name, (label, read_many) in sorted(self.labelled_gauges.items()):
            gauge = GaugeMetricFamily(f"authgate_{name}", name.replace("_", " "),
                                      labels=[label])
            for key, amount in sorted(read_many().items()):
                gauge.add_metric([key], amount)
            yield gauge
