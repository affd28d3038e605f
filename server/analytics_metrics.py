"""The manager's metrics: what ended calls add up to, counted once per call in Redis, shown to Prometheus.

    earshot_analytics_calls_total{mode}                 calls whose facts were stored
    earshot_analytics_calls_by_topic_total{topic}       by the topic they were scored with ("unclear" when none)
    earshot_analytics_intents_total{intent}             utterances with that intent
    earshot_analytics_escalations_total{reason}         escalated calls, by the topic when they escalated
    earshot_analytics_handle_time_seconds               a histogram of calls' handle time
    earshot_analytics_sentiment                         a histogram of each call's mean customer sentiment (-1..1)
    earshot_analytics_suggestions_total{outcome}        suggestions shown (outcome=shown) and used by the agent (used)

The counters are sums in one Redis hash (server/facts_store.py), added to in the same
script that stores a call's facts: every worker, and a worker restarted, reports the same
cluster-wide totals (a dashboard takes max() over the workers it scrapes). `increments`
maps facts to those sums; `AnalyticsCollector` turns a snapshot of them into metrics.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.utils import floatToGoString
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

HANDLE_BUCKETS = (30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0)
SENTIMENT_BUCKETS = (-0.5, -0.25, -0.05, 0.05, 0.25, 0.5, 1.0)
SEP = "|"


def increments(facts: Mapping[str, Any]) -> dict[str, float]:
    """What one call's facts (CallFacts.to_dict()) add to the totals."""
    scoring = facts["rescored"] if facts["scored_from"] == "rescored" and facts.get("rescored") else facts["live"]
    add: dict[str, float] = {f"calls{SEP}{facts['meta']['mode']}": 1}
    if facts["meta"]["mode"] == "assist":
        add[f"topic{SEP}{scoring['topic_label']}"] = 1
    for label, count in scoring["intent_counts"].items():
        add[f"intent{SEP}{label}"] = count
    if facts["escalated"]:
        add[f"escalation{SEP}{facts['escalation_reason'] or 'unknown'}"] = 1
    _observe(add, "handle", HANDLE_BUCKETS, float(facts["handle_time_s"]))
    if facts["sentiment_mean"] is not None:
        _observe(add, "sentiment", SENTIMENT_BUCKETS, float(facts["sentiment_mean"]))
    suggestions = facts.get("suggestions") or []
    if suggestions:
        add[f"suggestions{SEP}shown"] = len(suggestions)
        add[f"suggestions{SEP}used"] = sum(1 for s in suggestions if s["used"])
    return add


def _observe(add: dict[str, float], name: str, buckets: tuple[float, ...], value: float) -> None:
    """A histogram observation as sums: the first bucket that holds it (cumulated when shown), the sum, the count."""
    bucket = next((f"{b:g}" for b in buckets if value <= b), "+Inf")
    add[f"{name}_bucket{SEP}{bucket}"] = 1
    add[f"{name}_sum"] = value
    add[f"{name}_count"] = 1


class AnalyticsCollector:
    """A Prometheus collector over the latest snapshot of the totals (set with `update`)."""

    def __init__(self) -> None:
        self._totals: dict[str, float] = {}
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def update(self, totals: Mapping[str, float]) -> None:
        self._totals = dict(totals)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        yield self._counter("calls", "mode", "calls whose facts were stored")
        yield self._counter("topic", "topic", "calls by the topic they were scored with", name="calls_by_topic")
        yield self._counter("intent", "intent", "utterances with that intent", name="intents")
        yield self._counter("escalation", "reason", "escalated calls by the topic when they escalated", name="escalations")
        yield self._counter("suggestions", "outcome", "suggestions shown to agents, and used by them")
        yield self._histogram("handle", HANDLE_BUCKETS, "handle_time_seconds", "calls' handle time")
        yield self._histogram("sentiment", SENTIMENT_BUCKETS, "sentiment", "each call's mean customer sentiment")

    def _counter(self, prefix: str, label: str, documentation: str, name: str = "") -> CounterMetricFamily:
        family = CounterMetricFamily(f"earshot_analytics_{name or prefix}", documentation, labels=[label])
        for key, value in sorted(self._totals.items()):
            kind, _, value_label = key.partition(SEP)
            if kind == prefix and value_label:
                family.add_metric([value_label], value)
        return family

    def _histogram(self, prefix: str, buckets: tuple[float, ...], name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, running = [], 0.0
        for bound in [f"{b:g}" for b in buckets] + ["+Inf"]:
            running += self._totals.get(f"{prefix}_bucket{SEP}{bound}", 0.0)
            cumulative.append((floatToGoString(float(bound)), running))
        return HistogramMetricFamily(
            f"earshot_analytics_{name}", documentation, buckets=cumulative, sum_value=self._totals.get(f"{prefix}_sum", 0.0)
        )
