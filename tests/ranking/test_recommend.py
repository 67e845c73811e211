"""Diversification: the eager MMR pass (a full category leaves the pool at once) picks exactly
what the item-by-item pass picks. Serving's array-backed popularity counts equal the Counters.
Profiles: a load racing an event write never loses an event; writes are copy-on-write."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from core.domain import EventDraft
from core.service import NewsroomService
from core.storage import StoredProfile
from ranking.features import KeyedPopularityCounts, PopularityCounts
from ranking.profile_store import LocalProfileCache, to_profile
from ranking.recommend import mmr_order


def _case(seed: int, n: int, ties: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, 8)).astype(np.float32)
    if ties:  # repeated articles and equal relevance: argmax tie-breaking must agree too
        vectors[n // 2 :] = vectors[: n - n // 2]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    relevance = rng.random(n).astype(np.float32)
    if ties:
        relevance[n // 2 :] = relevance[: n - n // 2]
    categories = np.array(
        [[None, "sport", "tech", "world"][i] for i in rng.integers(0, 4, n)], dtype=object
    )
    return vectors, relevance, categories


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("n", [3, 9, 40, 200])
def test_eager_pass_chooses_like_the_item_by_item_pass(n: int, ties: bool) -> None:
    for seed in range(20):
        vectors, relevance, categories = _case(seed, n, ties)
        for k, cap in ((10, 4), (20, 8), (5, 1), (20, 20)):
            exact, _ = mmr_order(vectors, relevance, categories, k, cap, 0.75, eager=False)
            eager, capped = mmr_order(vectors, relevance, categories, k, cap, 0.75, eager=True)
            if len(eager) == min(k, n) or not capped:
                assert eager == exact
            else:  # the feed falls back to the exact pass: its chosen part comes first
                assert exact[: len(eager)] == eager
            assert len(exact) == min(k, n) and len(set(exact)) == len(exact)


def test_over_cap_items_fill_the_feed_only_when_nothing_else_is_left() -> None:
    vectors = np.eye(4, dtype=np.float32)
    relevance = np.array([1.0, 0.9, 0.8, 0.1], dtype=np.float32)
    categories = np.array(["a", "a", "a", "b"], dtype=object)
    order, capped = mmr_order(vectors, relevance, categories, 4, 2, 0.75, eager=False)
    assert order == [0, 1, 3, 2] and capped


def test_keyed_popularity_counts_equal_the_counter_ones() -> None:
    rng = np.random.default_rng(3)
    plain, keyed = PopularityCounts(), KeyedPopularityCounts()
    keys, kinds = rng.integers(1, 3000, 5000).tolist(), rng.random(5000).tolist()
    for key, kind in zip(keys, kinds, strict=True):
        for counts in (plain, keyed):
            (counts.add if kind < 0.3 else counts.add_shown)(key)
    asked = [*rng.integers(0, 5000, 300).tolist(), 0, 10**6]  # past the arrays' end too
    assert np.array_equal(keyed.raw(asked), plain.raw(asked))
    assert np.array_equal(keyed.raw_shown(asked), plain.raw_shown(asked))
    assert keyed.raw(asked).dtype == np.float32
    assert keyed.max == plain.max and keyed.top(50) == plain.top(50)


def _replay(state, events) -> None:  # type: ignore[no-untyped-def]
    for user, key, kind in events:
        state.apply(user, key, kind)


@pytest.mark.parametrize("seed", range(5))
def test_taking_a_reader_out_equals_counting_without_them(seed: int) -> None:
    """A deleted reader's share of the live counts is exactly what their own events added."""
    from ranking.recommend import InteractionState

    rng = np.random.default_rng(seed)
    kinds = ["click", "impression", "like", "dismiss", "dwell"]
    events = [
        (f"u{rng.integers(0, 6)}", int(rng.integers(0, 30)), kinds[int(rng.integers(0, 5))])
        for _ in range(400)
    ]
    everyone = InteractionState()
    _replay(everyone, events)
    everyone.subtract_user("u2", [(key, kind) for user, key, kind in events if user == "u2"])
    without = InteractionState()
    _replay(without, [e for e in events if e[0] != "u2"])
    assert {k: v for k, v in everyone.popularity.counts.items() if v} == dict(
        without.popularity.counts
    )
    assert {k: v for k, v in everyone.popularity.shown.items() if v} == dict(
        without.popularity.shown
    )
    assert {a: dict(row) for a, row in everyone.coclick.pairs.items()} == {
        a: dict(row) for a, row in without.coclick.pairs.items()
    }
    assert everyone.popularity.max == without.popularity.max
    keys = list(range(30))
    np.testing.assert_array_equal(everyone.popularity.raw(keys), without.popularity.raw(keys))
    assert "u2" not in everyone.recent


def _click(article_id: str, event_id: str) -> EventDraft:
    return EventDraft("u1", article_id, "click", event_id=event_id)


def test_a_profile_loaded_during_an_event_write_never_replaces_the_newer_one(
    service: NewsroomService, headline_drafts: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.articles.ingest(headline_drafts)
    service.readers.record_events([_click("h1", "e1")])
    assert service.recommender is not None
    profiles = service.recommender.profiles
    profiles.cache = LocalProfileCache()  # as after a restart: the next read loads it
    load = service.storage.load_profile
    loaded, resume = threading.Event(), threading.Event()

    def load_then_pause(pseudonym: str) -> StoredProfile | None:
        stored = load(pseudonym)
        if threading.current_thread() is feed:  # the feed holds the 1-event profile ...
            loaded.set()
            assert resume.wait(10)
        return stored

    monkeypatch.setattr(service.storage, "load_profile", load_then_pause)
    feed = threading.Thread(target=profiles.get, args=("u1",))
    feed.start()
    assert loaded.wait(10)
    service.readers.record_events([_click("h2", "e2")])  # ... while a click is stored and committed
    resume.set()
    feed.join(10)
    service.readers.record_events([_click("h3", "e3")])
    assert service.storage.count_events() == 3
    cached = profiles.get("u1")
    stored_row = load(service.storage.pseudonym("u1"))
    assert stored_row is not None
    stored = to_profile(stored_row)
    assert cached is not None and cached.n_events == stored.n_events == 3
    assert (
        set(cached.read)
        == set(stored.read)
        == {service.articles.catalog.key_of(a) for a in ["h1", "h2", "h3"]}
    )


def test_events_change_no_cached_profile_before_they_are_stored(
    service: NewsroomService, headline_drafts: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.articles.ingest(headline_drafts)
    service.readers.record_events([_click("h1", "e1")])
    assert service.recommender is not None
    profiles = service.recommender.profiles
    before = profiles.get("u1")
    assert before is not None
    vector, read = before.vector_sum.copy(), list(before.read)

    def disk_full(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(service.storage, "record_events", disk_full)
    with pytest.raises(OSError):
        service.readers.record_events([_click("h2", "e2")])
    # Nothing the failed write touched is visible, and the cached profile is still the one.
    assert before.n_events == 1 and list(before.read) == read
    assert np.array_equal(before.vector_sum, vector) and profiles.get("u1") is before
    monkeypatch.undo()
    service.readers.record_events([_click("h2", "e2")])
    after = profiles.get("u1")
    assert after is not None and after is not before
    assert after.n_events == 2 and before.n_events == 1  # a feed holding `before` kept it whole
