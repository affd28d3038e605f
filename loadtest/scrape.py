"""Reads the server's /metrics once a second while a level runs: the server's side of the story.

CPU is the rate of `process_cpu_seconds_total` between scrapes (100 % = one
core busy), memory the resident set, and the ASR queue and live sessions are
the server's own gauges. The event-loop lag percentile comes from the change
in its histogram's buckets over the level.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Optional

import httpx
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

LAG_HISTOGRAM = "earshot_event_loop_lag_seconds"


@dataclass(frozen=True)
class Scrape:
    wall: float  # time.monotonic()
    live_sessions: int
    asr_queue_depth: int
    cpu_seconds: float
    rss_bytes: float
    lag_buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count)


def parse_metrics(text: str, wall: float) -> Scrape:
    values: dict[str, float] = {}
    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == LAG_HISTOGRAM + "_bucket":
                buckets.append((float(sample.labels["le"]), sample.value))
            elif not sample.labels:
                values[sample.name] = sample.value
    return Scrape(
        wall=wall,
        live_sessions=int(values.get("earshot_live_sessions", 0)),
        asr_queue_depth=int(values.get("earshot_asr_queue_depth", 0)),
        cpu_seconds=values.get("process_cpu_seconds_total", 0.0),
        rss_bytes=values.get("process_resident_memory_bytes", 0.0),
        lag_buckets=tuple(sorted(buckets)),
    )


@dataclass
class MetricsScraper:
    http: httpx.AsyncClient
    interval_s: float = 1.0
    scrapes: list[Scrape] = field(default_factory=list)
    failures: int = 0

    async def scrape_once(self) -> Optional[Scrape]:
        try:
            response = await self.http.get("/metrics", timeout=5)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            self.failures += 1
            log.warning("metrics scrape failed: %s", exc)
            return None
        scrape = parse_metrics(response.text, time.monotonic())
        self.scrapes.append(scrape)
        return scrape

    async def run(self) -> None:
        """Scrape every `interval_s` until cancelled."""
        while True:
            started = time.monotonic()
            await self.scrape_once()
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    def since(self, wall: float) -> list[Scrape]:
        return [s for s in self.scrapes if s.wall >= wall]


def timeline(scrapes: list[Scrape], origin: float) -> list[dict[str, float]]:
    """One point per scrape after the first: times from `origin`, CPU as a rate over the interval."""
    points = []
    for previous, current in zip(scrapes, scrapes[1:]):
        elapsed = current.wall - previous.wall
        cpu = 100.0 * (current.cpu_seconds - previous.cpu_seconds) / elapsed if elapsed > 0 else 0.0
        points.append(
            {
                "t": round(current.wall - origin, 2),
                "live_sessions": current.live_sessions,
                "asr_queue_depth": current.asr_queue_depth,
                "cpu_percent": round(max(0.0, cpu), 1),
                "rss_mib": round(current.rss_bytes / 2**20, 1),
            }
        )
    return points


def lag_percentile(first: Scrape, last: Scrape, quantile: float = 0.95) -> Optional[float]:
    """The bucket bound under which `quantile` of the lag probes between two scrapes fell."""
    before = dict(first.lag_buckets)
    deltas = [(bound, count - before.get(bound, 0.0)) for bound, count in last.lag_buckets]
    total = deltas[-1][1] if deltas else 0.0
    if total <= 0:
        return None
    for bound, count in deltas:
        if count >= quantile * total:
            return bound
    return None
