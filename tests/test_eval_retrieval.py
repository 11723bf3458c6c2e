"""retrieval(): R@1, R@5 and mAP on hand-made vectors whose ranks are known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refsd_trt.eval.retrieval import Retrieval, ranks, retrieval

# Eight gallery items on a line: item k at x = k.
LINE = np.arange(8, dtype=np.float64)[:, None]


def test_ranks_and_metrics_on_a_line():
    # query 0 sits on item 0 (rank 1); query 1 at 2.9 with truth 2 has item 3 closer (rank 2);
    # query 2 at 0 with truth 6 has items 0..5 closer (rank 7, outside R@5); query 3 at 3.9 with
    # truth 2 has items 3, 4, 5 closer, item 6 not (rank 4, inside R@5).
    queries = np.array([[0.0], [2.9], [0.0], [3.9]])
    truth = [0, 2, 6, 2]
    assert ranks(queries, LINE, truth).tolist() == [1, 2, 7, 4]
    r = retrieval(queries, LINE, truth)
    assert r == Retrieval(r1=0.25, r5=0.75, mean_ap=pytest.approx((1 + 1 / 2 + 1 / 7 + 1 / 4) / 4),
                          queries=4, gallery=8, chance_r1=0.125)


def test_a_query_ranked_second_contributes_half():
    r = retrieval(np.array([[1.0, 0.0]]), np.array([[1.1, 0.0], [2.0, 0.0]]), [1])
    assert (r.r1, r.r5, r.mean_ap) == (0.0, 1.0, 0.5)


def test_ties_go_to_the_attacker():
    # The true item and a distractor are equally far: only strictly closer items push the rank down,
    # so a collapsed embedding (everyone at one point) reads as a full leak, never as privacy.
    assert ranks(np.array([[0.0]]), np.array([[-1.0], [1.0]]), [1]).tolist() == [1]
    collapsed = retrieval(np.zeros((5, 3)), np.zeros((5, 3)), range(5))
    assert (collapsed.r1, collapsed.mean_ap) == (1.0, 1.0)


def test_identity_and_permuted_truth():
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(20, 16))
    same = retrieval(gallery.copy(), gallery, range(20))
    assert (same.r1, same.r5, same.mean_ap, same.chance_r1) == (1.0, 1.0, 1.0, 0.05)
    # Truth pointing at someone else: each query's own vector (distance 0) now outranks its "true" item.
    shifted = retrieval(gallery.copy(), gallery, [(i + 1) % 20 for i in range(20)])
    assert shifted.r1 == 0.0 and shifted.mean_ap <= 0.5


def test_cosine_ignores_length_euclidean_does_not():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 3.2]])
    query = np.array([[2.0, 2.0]])  # direction of item 2, length of nothing in particular
    # Euclidean: item 2 is 1.66 away, items 0 and 1 are 2.24 away -> rank 1. Scale the query down and
    # items 0/1 come closer: at [0.5, 0.5] they are 0.71 away, item 2 is 3.68 away -> rank 3.
    assert ranks(query, gallery, [2], "euclidean").tolist() == [1]
    assert ranks(query / 4, gallery, [2], "euclidean").tolist() == [3]
    # Cosine only sees the direction: 1 - cos(45 deg, 46.8 deg) is tiny, items 0/1 are at 1 - cos 45.
    assert ranks(query / 4, gallery, [2], "cosine").tolist() == [1]
    assert ranks(query * 100, gallery, [0], "cosine").tolist() == [2]  # item 2 is closer than item 0
    r = retrieval(np.array([[0.5, 0.5], [5.0, 0.1]]), gallery, [2, 0], metric="cosine")
    assert (r.r1, r.mean_ap) == (1.0, 1.0)
    r = retrieval(np.array([[0.5, 0.5], [5.0, 0.1]]), gallery, [2, 0], metric="euclidean")
    assert (r.r1, r.r5, r.mean_ap) == (0.0, 1.0, pytest.approx((1 / 3 + 1 / 2) / 2))  # [5, .1]: item 2 nearer


def test_no_queries_is_nan_not_zero():
    r = retrieval(np.zeros((0, 4)), np.ones((3, 4)), [])
    assert r.queries == 0 and r.gallery == 3 and r.chance_r1 == pytest.approx(1 / 3)
    assert math.isnan(r.r1) and math.isnan(r.r5) and math.isnan(r.mean_ap)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="metric"):
        retrieval(np.zeros((1, 2)), np.zeros((2, 2)), [0], metric="manhattan")
    with pytest.raises(ValueError, match="truth"):
        retrieval(np.zeros((1, 2)), np.zeros((2, 2)), [2])
    with pytest.raises(ValueError, match="truth"):
        retrieval(np.zeros((2, 2)), np.zeros((2, 2)), [0])
    with pytest.raises(ValueError, match="gallery"):
        retrieval(np.zeros((1, 3)), np.zeros((2, 2)), [0])
