"""Per-impression ranking metrics (MIND convention), exact under ties.

Ties are resolved by expectation over all orderings of the tied items: AUC gives a tied
(positive, negative) pair half credit; MRR and nDCG give each item in a tie group the mean
discount of the positions the group occupies. A constant scorer therefore gets exactly the
score of a uniformly random ordering, not a lucky or unlucky one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.float64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in length")
    return labels, scores


def auc(labels: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count 1/2)."""
    y, s = _check(np.asarray(labels), np.asarray(scores))
    positives = y > 0
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs at least one positive and one negative")
    # Mann-Whitney U with average ranks handles ties exactly.
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_scores = s[order]
    start = 0
    while start < len(s):
        end = start
        while end + 1 < len(s) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    u = ranks[positives].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def _expected_discounts(
    scores: np.ndarray, discount: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Per item, the discount of its position, averaged over its tie group's positions."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    per_position = discount(np.arange(len(scores)))
    result = np.empty(len(scores))
    start = 0
    while start < len(scores):
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        result[order[start : end + 1]] = per_position[start : end + 1].mean()
        start = end + 1
    return result


def mrr(labels: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """MIND's MRR: mean reciprocal rank over the clicked items of the impression."""
    y, s = _check(np.asarray(labels), np.asarray(scores))
    if y.sum() <= 0:
        raise ValueError("MRR needs at least one positive")
    reciprocal = _expected_discounts(s, lambda p: 1.0 / (p + 1))
    return float((y * reciprocal).sum() / y.sum())


def ndcg(
    labels: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray, k: int
) -> float:
    """nDCG@k with MIND's gain 2^rel - 1 and discount 1/log2(rank + 1)."""
    y, s = _check(np.asarray(labels), np.asarray(scores))

    def discount(p: np.ndarray) -> np.ndarray:
        return np.where(p < k, 1.0 / np.log2(p + 2), 0.0)

    gains = 2**y - 1
    dcg = float((gains * _expected_discounts(s, discount)).sum())
    ideal = np.sort(gains)[::-1]
    idcg = float((ideal * discount(np.arange(len(ideal)))).sum())
    if idcg == 0:
        raise ValueError("nDCG needs at least one positive")
    return dcg / idcg


def impression_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float] | None:
    """All four metrics for one impression, or None when it must be skipped (no click, or
    nothing but clicks: AUC is undefined there, and MIND skips such impressions)."""
    labels = np.asarray(labels)
    if labels.sum() == 0 or labels.sum() == len(labels):
        return None
    return {
        "auc": auc(labels, scores),
        "mrr": mrr(labels, scores),
        "ndcg@5": ndcg(labels, scores, 5),
        "ndcg@10": ndcg(labels, scores, 10),
    }


def average_metrics(
    impressions: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[dict[str, float], int]:
    """Mean of each metric over the impressions that are not skipped, and their count."""
    rows = [m for labels, scores in impressions if (m := impression_metrics(labels, scores))]
    if not rows:
        raise ValueError("no impression has both a click and a non-click")
    return {name: float(np.mean([r[name] for r in rows])) for name in METRICS}, len(rows)
