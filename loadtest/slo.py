"""The service-level objective of a load test, and the capacity it gives.

    --slo "p95 final_latency <= 1.5"   a level meets it when that percentile is
                                        within the limit and no call failed
    capacity                            the largest level that met it, with every
                                        smaller level tested also meeting it
    --search                            bisect between the last level that met it
                                        and the first that did not
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional

from earshot.loadtest.measure import MEASURES

Level = dict[str, Any]  # one level's summary, as measure.summarize_level makes it


@dataclass(frozen=True)
class Slo:
    """A service-level objective on one measure, e.g. `p95 final_latency_s <= 1.5`."""

    measure: str
    percentile: str
    limit_s: float

    PATTERN = re.compile(r"^\s*(p50|p90|p95|p99|max)\s+([a-z_]+?)(?:_s)?\s*<=\s*([0-9.]+)\s*s?\s*$")

    @classmethod
    def parse(cls, text: str) -> "Slo":
        match = cls.PATTERN.match(text)
        measures = ", ".join(m[:-2] for m in MEASURES)
        if not match or match.group(2) + "_s" not in MEASURES:
            raise ValueError(f"--slo must look like 'p95 final_latency <= 1.5' (measures: {measures}); got {text!r}")
        return cls(match.group(2) + "_s", match.group(1), float(match.group(3)))

    def describe(self) -> str:
        return f"{self.percentile} {self.measure} <= {self.limit_s:g}"

    def met_by(self, level: Level) -> bool:
        value = level["latency"][self.measure][self.percentile]
        return value is not None and value <= self.limit_s and level["calls"]["failed"] == 0


def capacity_of(levels: list[Level], slo: Slo) -> Optional[int]:
    """The largest level that met the SLO with every smaller level tested also meeting it."""
    capacity = None
    for level in sorted((lv for lv in levels if not lv.get("with_faults")), key=lambda lv: lv["sessions"]):
        if not slo.met_by(level):
            break
        capacity = level["sessions"]
    return capacity


async def search_capacity(
    levels: list[Level], slo: Slo, run_level: Callable[[int], Awaitable[Level]], allowed: Callable[[int], bool]
) -> None:
    """Between the largest level that met the SLO and the next that did not, halve the gap.

    Runs the levels it tries (while `allowed` says the call budget holds) and adds them to `levels`, sorted.
    """
    while True:
        passed = capacity_of(levels, slo)
        failed = min((lv["sessions"] for lv in levels if not lv["meets_slo"] and lv["sessions"] > (passed or 0)), default=None)
        if passed is None or failed is None or failed - passed <= 1:
            return
        middle = (passed + failed) // 2
        if not allowed(middle):
            return
        levels.append(await run_level(middle))
        levels.sort(key=lambda lv: lv["sessions"])
