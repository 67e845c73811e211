from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from ranking.profile import ProfileConfig, UserProfile

T0 = datetime(2024, 1, 1, tzinfo=UTC)
A = np.array([1, 0, 0], np.float32)
B = np.array([0, 1, 0], np.float32)


def test_clicks_build_a_decayed_weighted_profile():
    config = ProfileConfig(half_life_days=1.0)
    profile = UserProfile("u", 3)
    profile.apply("click", 1, A, "sport", T0, config)
    profile.apply("click", 2, B, "tech", T0 + timedelta(days=1), config)
    # A decayed by one half-life: B now weighs twice as much
    np.testing.assert_allclose(profile.vector_sum, [0.5, 1.0, 0.0], atol=1e-6)
    assert profile.top_categories(1) == ["tech"]
    assert [k for k, _ in profile.history_weights(config)] == [2, 1]
    assert set(profile.read) == {1, 2}


def test_dismissal_pushes_the_profile_away_and_is_remembered():
    config = ProfileConfig()
    profile = UserProfile("u", 3)
    profile.apply("click", 1, A + B, None, T0, config)
    before = profile.vector @ B
    profile.apply("dismiss", 2, B, None, T0, config)
    assert profile.vector @ B < before
    assert 2 in profile.dismissed and 2 not in profile.read


def test_late_events_weigh_as_if_decayed_and_impressions_do_not_move_the_vector():
    config = ProfileConfig(half_life_days=1.0)
    in_order, late = UserProfile("u", 3), UserProfile("u", 3)
    in_order.apply("click", 1, A, None, T0, config)
    in_order.apply("click", 2, B, None, T0 + timedelta(days=1), config)
    late.apply("click", 2, B, None, T0 + timedelta(days=1), config)
    late.apply("click", 1, A, None, T0, config)
    np.testing.assert_allclose(in_order.vector_sum, late.vector_sum, atol=1e-6)
    before = late.vector_sum.copy()
    late.apply("impression", 3, A, None, T0 + timedelta(days=2), config)
    np.testing.assert_allclose(late.vector, before / np.linalg.norm(before), atol=1e-6)


def test_dwell_weight_grows_with_time_spent_and_state_round_trips():
    config = ProfileConfig()
    assert config.weight("dwell", 1_000) < config.weight("dwell", 60_000)
    assert config.weight("dwell", 10**9) == config.dwell_base + config.dwell_bonus
    profile = UserProfile("u", 3)
    profile.apply("like", 7, A, "sport", T0, config)
    profile.apply("dismiss", 8, B, "tech", T0, config)
    copy = UserProfile.from_state("u", profile.vector_sum.tobytes(), profile.state_json())
    np.testing.assert_array_equal(copy.vector_sum, profile.vector_sum)
    assert copy.state_json() == profile.state_json()


def test_coclick_counts_match_a_direct_sum():
    from ranking.features import CoClickCounts

    counts = CoClickCounts()
    counts.add_basket(["a", "b", "c"])
    counts.add_basket(["a", "c"])
    counts.add_click(["b"], "d")
    history, candidates = ["a", "b"], ["c", "d", "e", "b"]
    expected = [sum(counts.pairs[h].get(c, 0) for h in history) for c in candidates]
    assert counts.raw(history, candidates).tolist() == expected == [3, 1, 0, 1]
    assert counts.raw(history, ["c", "c"]).tolist() == [3, 3]  # repeated candidates
    assert counts.raw(["zz"], candidates).tolist() == [0, 0, 0, 0]


def test_recent_keys_are_history_weights_order_without_weights():
    config = ProfileConfig(history_size=5)
    profile = UserProfile("u", 2)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for n, key in enumerate([3, 1, 4, 1, 5, 9, 2]):
        moment = start + timedelta(hours=n)
        profile.apply("click", key, np.ones(2, np.float32), None, moment, config)
    newest_first = [k for k, _ in profile.history_weights(config)]
    assert profile.recent_keys(3) == newest_first[:3] == [2, 9, 5]
    assert profile.recent_keys(50) == newest_first


def test_retention_forgets_entries_older_than_the_cutoff_and_their_count():
    config = ProfileConfig()
    profile = UserProfile("u", 3)
    profile.apply("click", 1, A, "sport", T0, config)
    profile.apply("dismiss", 2, B, None, T0, config)
    profile.apply("click", 3, B, "tech", T0 + timedelta(days=10), config)
    profile.apply("click", 1, A, "sport", T0 + timedelta(days=12), config)  # read again later
    stored = UserProfile.from_state("u", profile.vector_sum.tobytes(), profile.state_json())
    stored.forget_before((T0 + timedelta(days=5)).timestamp(), events_removed=2)
    assert list(stored.history) == [3, 1] and set(stored.read) == {1, 3}
    assert not stored.dismissed and stored.n_events == 2
    stored.forget_before((T0 + timedelta(days=11)).timestamp(), events_removed=1)
    assert list(stored.history) == [1] and list(stored.read) == [1] and stored.n_events == 1
