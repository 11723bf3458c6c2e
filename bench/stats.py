"""Summaries of repeated timings and the ratios the report compares."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def summary(samples: Sequence[float]) -> dict[str, float]:
    """mean, p50 and p90 (nearest rank, so a value that was measured) of seconds-valued samples."""
    if not samples:
        raise ValueError("no samples to summarise")
    ordered = sorted(samples)
    rank = lambda q: ordered[max(0, math.ceil(q * len(ordered)) - 1)]
    return {"mean": statistics.fmean(ordered), "p50": rank(0.5), "p90": rank(0.9), "n": len(ordered)}


def ratio(ours: float | None, baseline: float | None) -> float | None:
    """ours / baseline (below 1: refsd-trt is faster); None where either side did not run the stage."""
    if ours is None or baseline is None or baseline <= 0:
        return None
    return ours / baseline


def speedup(ours: float | None, baseline: float | None) -> float | None:
    """baseline / ours: how many times faster refsd-trt is."""
    r = ratio(ours, baseline)
    return None if r is None or r == 0 else 1 / r
