"""Re-identification as retrieval: can an attacker find each person's own item in a gallery?

Every query has exactly one relevant gallery item (the same person before anonymization), so the
rank of that item says everything: R@k is the fraction ranked within the first k, and average
precision reduces to ``1 / rank``. Ties are counted in the attacker's favour (only strictly closer
items push the true item down), so a degenerate embedding that maps everyone to one point scores
R@1 = 1, not chance: the metric errs towards reporting a leak.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METRICS = ("euclidean", "cosine")


@dataclass(frozen=True)
class Retrieval:
    r1: float  # fraction of queries whose own gallery item ranks first
    r5: float
    mean_ap: float  # one relevant item per query: AP = 1 / rank
    queries: int
    gallery: int
    chance_r1: float  # 1 / gallery: what guessing gets


def distances(queries: np.ndarray, gallery: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """(n, m) distances between every query and every gallery item, in float64."""
    q = np.asarray(queries, dtype=np.float64)
    g = np.asarray(gallery, dtype=np.float64)
    if metric == "euclidean":
        # Exact differences rather than the |a|^2 + |b|^2 - 2ab expansion, whose rounding can
        # reorder near-ties; galleries here are small.
        return np.sqrt(((q[:, None, :] - g[None, :, :]) ** 2).sum(-1))
    if metric == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        return 1.0 - qn @ gn.T
    raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")


def ranks(queries: np.ndarray, gallery: np.ndarray, truth: Sequence[int], metric: str = "euclidean") -> np.ndarray:
    """1-based rank of each query's own gallery item: 1 + the items strictly closer than it."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
    truth = np.asarray(truth, dtype=np.int64).reshape(-1)
    if len(truth) == 0:
        return np.zeros(0, dtype=np.int64)
    q, g = np.asarray(queries), np.asarray(gallery)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"queries {q.shape} and gallery {g.shape} must be (n, d) and (m, d)")
    if len(q) != len(truth):
        raise ValueError(f"{len(q)} queries but {len(truth)} truth indices")
    if truth.min() < 0 or truth.max() >= len(g):
        raise ValueError(f"truth indices must lie in [0, {len(g)})")
    d = distances(q, g, metric)
    own = d[np.arange(len(truth)), truth]
    return 1 + (d < own[:, None]).sum(axis=1)


def retrieval(queries: np.ndarray, gallery: np.ndarray, truth: Sequence[int],
              metric: str = "euclidean") -> Retrieval:
    """R@1, R@5 and mAP of finding each query's own gallery item (``truth[i]``) by nearest distance."""
    r = ranks(queries, gallery, truth, metric)
    m = len(gallery)
    chance = 1.0 / m if m else math.nan
    if len(r) == 0:
        return Retrieval(math.nan, math.nan, math.nan, 0, m, chance)
    return Retrieval(r1=float(np.mean(r <= 1)), r5=float(np.mean(r <= 5)), mean_ap=float(np.mean(1.0 / r)),
                     queries=len(r), gallery=m, chance_r1=chance)
