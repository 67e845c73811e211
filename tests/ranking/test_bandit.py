"""Thompson sampling: converges to the best arm, p_best is a distribution, priors and checks."""

from __future__ import annotations

import numpy as np
import pytest

from ranking.bandit import ThompsonSampler, choose, p_best


def test_thompson_sampling_sends_most_traffic_to_the_best_arm():
    rng = np.random.default_rng(0)
    ctrs = np.array([0.04, 0.06, 0.12])
    shown, clicked = np.zeros(3, int), np.zeros(3, int)
    for _ in range(3000):
        arm = choose(shown.tolist(), clicked.tolist(), rng)
        shown[arm] += 1
        clicked[arm] += rng.random() < ctrs[arm]
    assert shown[2] / shown.sum() > 0.8
    assert p_best(shown.tolist(), clicked.tolist(), rng)[2] > 0.95


def test_p_best_sums_to_one_and_ranks_the_arms_by_their_evidence():
    rng = np.random.default_rng(1)
    probabilities = p_best([200, 200, 200], [10, 14, 30], rng, draws=8000)
    assert sum(probabilities) == pytest.approx(1.0)
    assert probabilities[2] > probabilities[1] > probabilities[0]
    even = p_best([100, 100], [5, 5], rng, draws=8000)
    assert even == pytest.approx([0.5, 0.5], abs=0.03)


def test_batched_choices_follow_each_rows_evidence():
    rng = np.random.default_rng(2)
    shown = np.array([[1000, 1000], [1000, 1000]])
    clicked = np.array([[10, 200], [200, 10]])
    assert ThompsonSampler().choose_batch(shown, clicked, rng).tolist() == [1, 0]


def test_an_informative_prior_shifts_the_posterior():
    alpha, beta = ThompsonSampler(prior_alpha=5, prior_beta=95).posterior([10], [1])
    assert alpha.tolist() == [6] and beta.tolist() == [104]


@pytest.mark.parametrize(
    ("impressions", "clicks"), [([10, 10], [3]), ([10], [11]), ([], []), ([5], [-1])]
)
def test_inconsistent_counts_are_refused(impressions, clicks):
    with pytest.raises(ValueError):
        choose(impressions, clicks, np.random.default_rng(0))


def test_a_non_positive_prior_is_refused():
    with pytest.raises(ValueError, match="> 0"):
        ThompsonSampler(prior_alpha=0)
