"""Team-draft interleaving: the draft's properties, credit on hand-made clicks, the test."""

from __future__ import annotations

import numpy as np
import pytest

from ranking.interleaving import Interleaved, credit, preference_test, team_draft

A = ["a1", "a2", "a3", "s1", "s2", "a4", "a5", "a6"]
B = ["s2", "b1", "s1", "b2", "a1", "b3", "b4", "b5"]


@pytest.mark.parametrize("seed", range(50))
def test_each_pick_is_the_teams_best_unpicked_item_and_teams_stay_balanced(seed):
    mixed = team_draft(A, B, 8, np.random.default_rng(seed))
    assert len(mixed.items) == 8
    assert len(set(mixed.items)) == 8  # no duplicates
    rankings = {"a": A, "b": B}
    for position, (item, team) in enumerate(zip(mixed.items, mixed.team, strict=True)):
        already = set(mixed.items[:position])
        assert item == next(i for i in rankings[team] if i not in already)
        picks_a = mixed.team[: position + 1].count("a")
        assert abs(2 * picks_a - (position + 1)) <= 1  # never more than one pick apart


def test_shorter_lists_are_prefixes_of_longer_ones_drawn_with_the_same_coins():
    long = team_draft(A, B, 8, np.random.default_rng(3))
    for k in range(9):
        short = team_draft(A, B, k, np.random.default_rng(3))
        assert short.items == long.items[:k] and short.team == long.team[:k]


def test_each_team_leads_about_half_the_time():
    first = [team_draft(A, B, 4, np.random.default_rng(s)).team[0] for s in range(400)]
    assert 0.4 < first.count("a") / 400 < 0.6


def test_identical_rankings_interleave_to_the_same_ranking():
    mixed = team_draft(A, A, 5, np.random.default_rng(0))
    assert list(mixed.items) == A[:5]


def test_an_exhausted_ranking_lets_the_other_team_fill_the_list():
    mixed = team_draft(["x"], ["x", "y", "z"], 10, np.random.default_rng(0))
    assert set(mixed.items) == {"x", "y", "z"} and len(mixed.items) == 3


def test_credit_goes_to_the_team_whose_items_were_clicked():
    mixed = Interleaved(("s2", "a1", "b1", "a2"), ("b", "a", "b", "a"))
    assert credit(mixed, ["a1", "a2", "b1"]) == "a"
    assert credit(mixed, ["s2", "b1"]) == "b"
    assert credit(mixed, ["a1", "s2"]) == "tie"
    assert credit(mixed, []) == "tie"
    assert credit(mixed, ["not-shown", "b1"]) == "b"


def test_preference_test_is_the_exact_sign_test_of_decided_comparisons():
    # 9 wins of 10: P(X >= 9) + P(X <= 1) = 2 * 11 / 1024 under p = 1/2
    assert preference_test(9, 1) == pytest.approx(22 / 1024)
    assert preference_test(1, 9) == pytest.approx(22 / 1024)
    assert preference_test(5, 5) == pytest.approx(1.0)
    assert preference_test(0, 0) == 1.0
    with pytest.raises(ValueError):
        preference_test(-1, 3)
