"""Ranking metrics against hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.ranking import auc, average_metrics, impression_metrics, mrr, ndcg


def test_perfect_and_reversed_rankings():
    labels = [1, 0, 0, 1]
    assert auc(labels, [0.9, 0.1, 0.2, 0.8]) == 1.0
    assert auc(labels, [0.1, 0.9, 0.8, 0.2]) == 0.0
    assert mrr(labels, [0.9, 0.1, 0.2, 0.8]) == pytest.approx((1 + 1 / 2) / 2)
    assert ndcg(labels, [0.9, 0.1, 0.2, 0.8], 5) == pytest.approx(1.0)


def test_hand_computed_mixed_case():
    # order by score: c(0.9,neg) a(0.8,pos) d(0.5,neg) b(0.3,pos)
    labels = [1, 1, 0, 0]
    scores = [0.8, 0.3, 0.9, 0.5]
    # positive pairs won: a beats d (1 of 2); b beats none -> 1/4
    assert auc(labels, scores) == pytest.approx(0.25)
    # ranks of positives 2 and 4 -> (1/2 + 1/4) / 2
    assert mrr(labels, scores) == pytest.approx(0.375)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    assert ndcg(labels, scores, 10) == pytest.approx(dcg / idcg)
    # @2 keeps only ranks 1-2
    assert ndcg(labels, scores, 2) == pytest.approx((1 / math.log2(3)) / idcg)


def test_ties_are_expectations_over_orderings():
    labels = [1, 0, 0]
    constant = [0.5, 0.5, 0.5]
    assert auc(labels, constant) == 0.5
    assert mrr(labels, constant) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    expected_dcg = (1 + 1 / math.log2(3) + 1 / math.log2(4)) / 3
    assert ndcg(labels, constant, 10) == pytest.approx(expected_dcg)
    # a positive tied with one negative, above another negative
    assert auc([1, 0, 0], [0.7, 0.7, 0.1]) == pytest.approx(0.75)
    assert mrr([1, 0, 0], [0.7, 0.7, 0.1]) == pytest.approx((1 + 1 / 2) / 2)


def test_skipped_impressions_and_averaging():
    assert impression_metrics(np.array([0, 0]), np.array([0.1, 0.2])) is None
    assert impression_metrics(np.array([1, 1]), np.array([0.1, 0.2])) is None
    means, count = average_metrics(
        [
            (np.array([1, 0]), np.array([0.9, 0.1])),  # auc 1
            (np.array([1, 0]), np.array([0.1, 0.9])),  # auc 0
            (np.array([0, 0]), np.array([0.1, 0.9])),  # skipped
        ]
    )
    assert count == 2 and means["auc"] == 0.5
    with pytest.raises(ValueError):
        average_metrics([(np.array([0, 0]), np.array([0.1, 0.9]))])
    with pytest.raises(ValueError, match="differ"):
        auc([1, 0], [0.1])
