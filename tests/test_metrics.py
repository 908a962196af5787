"""Ranking metrics against values computed by hand from their definitions."""

import numpy as np
import pytest

from fitmm_core.evaluation.metrics import (
    hit_at_k,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)

# user A: hits at ranks 1 and 3, 2 relevant; user B: no hit, 3 relevant; user C: hit at rank 2, 1 relevant
HITS = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0]], dtype=bool)
N_RELEVANT = np.array([2, 3, 1])
D3, D4 = 1 / np.log2(3), 1 / np.log2(4)  # discounts 1/log2(r+1) of ranks 2 and 3; rank 1 has 1


@pytest.mark.parametrize(
    ("function", "k", "expected"),
    [
        (recall_at_k, 2, (1 / 2 + 0 + 1) / 3),
        (recall_at_k, 4, (1 + 0 + 1) / 3),
        (precision_at_k, 2, (1 / 2 + 0 + 1 / 2) / 3),
        (precision_at_k, 4, (2 / 4 + 0 + 1 / 4) / 3),
        (hit_at_k, 1, 1 / 3),
        (hit_at_k, 2, 2 / 3),
        (ndcg_at_k, 2, (1 / (1 + D3) + 0 + D3 / 1) / 3),
        (ndcg_at_k, 4, ((1 + D4) / (1 + D3) + 0 + D3) / 3),
        (map_at_k, 2, ((1 / 1) / 2 + 0 + (1 / 2) / 1) / 3),
        (map_at_k, 4, ((1 / 1 + 2 / 3) / 2 + 0 + (1 / 2) / 1) / 3),
    ],
)
def test_metric_matches_hand_computation(function, k, expected):
    assert function(HITS, N_RELEVANT, k) == pytest.approx(expected, abs=1e-12)


def test_more_relevant_items_than_k_can_still_score_one():
    hits = np.array([[True, True, False]])
    n_relevant = np.array([5])
    assert map_at_k(hits, n_relevant, 2) == pytest.approx(1.0)
    assert ndcg_at_k(hits, n_relevant, 2) == pytest.approx(1.0)
    assert recall_at_k(hits, n_relevant, 2) == pytest.approx(2 / 5)
    assert ndcg_at_k(hits, n_relevant, 3) == pytest.approx((1 + 1 / np.log2(3)) / (1 + 1 / np.log2(3) + D4))


def test_ranking_metrics_keys_and_values():
    result = ranking_metrics(HITS, N_RELEVANT, ks=(1, 4))
    assert list(result) == [f"{m}@{k}" for m in ("recall", "ndcg", "precision", "map", "hit") for k in (1, 4)]
    assert result["recall@4"] == pytest.approx(2 / 3)
    assert result["hit@1"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("hits", "n_relevant", "k", "message"),
    [
        (HITS.astype(int), N_RELEVANT, 2, "boolean"),
        (HITS, N_RELEVANT[:2], 2, "n_relevant"),
        (HITS, np.array([2, 0, 1]), 2, "at least one relevant"),
        (HITS, N_RELEVANT, 0, "k must be"),
        (HITS, N_RELEVANT, 5, "k must be"),
        (HITS, np.array([1, 3, 1]), 4, "more hits than relevant"),
        (np.zeros((0, 3), dtype=bool), np.zeros(0, dtype=int), 1, "no users"),
    ],
)
def test_invalid_arguments_are_rejected(hits, n_relevant, k, message):
    with pytest.raises(ValueError, match=message):
        recall_at_k(hits, n_relevant, k)


def test_unknown_metric_is_rejected():
    with pytest.raises(ValueError, match="unknown metric"):
        ranking_metrics(HITS, N_RELEVANT, ks=(2,), metrics=("recall", "auc"))
