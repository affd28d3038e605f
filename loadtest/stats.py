"""The one summary used for every distribution in benchmarks and load tests."""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np


def percentiles(values: Iterable[float]) -> dict[str, Optional[float]]:
    """Linear-interpolated percentiles, with the count, maximum and mean; None values when empty."""
    data = np.asarray(list(values), dtype=float)
    if data.size == 0:
        return {"count": 0, "p50": None, "p90": None, "p95": None, "p99": None, "max": None, "mean": None}
    p50, p90, p95, p99 = np.percentile(data, [50, 90, 95, 99], method="linear")
    return {
        "count": int(data.size),
        "p50": round(float(p50), 4),
        "p90": round(float(p90), 4),
        "p95": round(float(p95), 4),
        "p99": round(float(p99), 4),
        "max": round(float(data.max()), 4),
        "mean": round(float(data.mean()), 4),
    }
