"""MovieLens ablation: the time split, no test-period leakage into the learned signals, the
embedding cache, the blend fit, and one small real run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from evaluation.movielens import (
    BLENDS,
    METRIC_NAMES,
    Catalog,
    MovieLensAblationConfig,
    Ratings,
    build_eval_set,
    center,
    collaborative_scores,
    content_profiles,
    fit_blend_weights,
    format_table,
    load_catalog,
    load_ratings,
    main,
    movie_embeddings,
    popularity_scores,
    signal_scores,
    time_split,
)
from retrieval.embedder import Embedder
from tests.conftest import data_path

DAY = 86_400


def ratings(rows: list[tuple[int, int, float, int]]) -> Ratings:
    """Rows of (user, item, rating, timestamp)."""
    user, item, rating, ts = zip(*rows, strict=True)
    return Ratings(
        np.asarray(user, dtype=np.int64),
        np.asarray(item, dtype=np.int64),
        np.asarray(rating, dtype=np.float32),
        np.asarray(ts, dtype=np.int64),
    )


# Train period (days 0-9): users 1-3 like items 0-2, item 1 and 2 co-rated by users 1 and 2.
TRAIN_ROWS = [
    (1, 0, 5.0, 0 * DAY),
    (1, 1, 4.0, 1 * DAY),
    (1, 4, 1.0, 2 * DAY),
    (1, 5, 3.0, 2 * DAY),
    (1, 6, 4.5, 3 * DAY),
    (2, 1, 4.0, 3 * DAY),
    (2, 2, 5.0, 4 * DAY),
    (2, 6, 2.0, 5 * DAY),
    (2, 5, 3.5, 5 * DAY),
    (2, 0, 4.0, 6 * DAY),
    (3, 2, 4.0, 7 * DAY),
    (3, 0, 2.5, 8 * DAY),
]
# Test period (days 20+): item 3 appears only here, co-rated with items 0 and 2 - if any of this
# leaked, item 3 would get popularity and item-item similarity, and item 2's popularity would grow.
TEST_ROWS = [
    (1, 3, 5.0, 20 * DAY),
    (1, 2, 5.0, 20 * DAY),
    (2, 3, 4.0, 21 * DAY),
    (3, 3, 5.0, 22 * DAY),
]
TEST_FRACTION = len(TEST_ROWS) / (len(TRAIN_ROWS) + len(TEST_ROWS))
N_ITEMS = 8


def test_time_split_puts_every_test_rating_after_every_train_rating():
    # Ties straddling the row boundary must all land on the test side.
    frame = ratings([(u, u, 4.0, ts) for u, ts in enumerate([1, 2, 3, 5, 5, 5, 7, 8, 9, 10])])
    train, test = time_split(frame, test_fraction=0.5)
    assert train.timestamp.max() < test.timestamp.min()
    assert len(train) + len(test) == len(frame)
    assert len(test) >= 5  # the tied second went to the test side, never split

    config = MovieLensAblationConfig(data_dir=data_path("ml-latest-small"))
    real = load_ratings(config.data_dir, load_catalog(config.data_dir))
    train, test = time_split(real, config.test_fraction)
    assert train.timestamp.max() < test.timestamp.min()
    assert len(test) / len(real) == pytest.approx(0.2, abs=0.01)


def test_time_split_rejects_a_bad_fraction():
    with pytest.raises(ValueError, match="test_fraction"):
        time_split(ratings(TRAIN_ROWS), 1.0)


def test_no_test_period_information_reaches_popularity_or_collaborative():
    frame = ratings(TRAIN_ROWS + TEST_ROWS)
    train, test = time_split(frame, TEST_FRACTION)
    assert len(test) == len(TEST_ROWS)
    users = np.asarray([1, 2, 3])

    popularity = popularity_scores(train, N_ITEMS)
    collaborative = collaborative_scores(train, users, N_ITEMS)
    # The same train period without any test period gives exactly the same scores.
    train_only = ratings(TRAIN_ROWS)
    np.testing.assert_array_equal(popularity, popularity_scores(train_only, N_ITEMS))
    np.testing.assert_array_equal(collaborative, collaborative_scores(train_only, users, N_ITEMS))
    # The test-only item is cold: zero popularity and zero similarity for everyone.
    assert popularity[3] == 0.0
    assert np.all(collaborative[:, 3] == 0.0)
    # The construction is sensitive: learning from all ratings would change these scores.
    assert popularity_scores(frame, N_ITEMS)[3] > 0
    assert not np.array_equal(popularity, popularity_scores(frame, N_ITEMS))
    assert collaborative_scores(frame, users, N_ITEMS)[2, 3] > 0

    # And through the pipeline: candidates from the test period, scores from the train period.
    config = MovieLensAblationConfig(min_history=2, negatives=3)
    eval_set = build_eval_set(train, test, frame, N_ITEMS, config, np.random.default_rng(0))
    embeddings = np.eye(N_ITEMS, 4, dtype=np.float32)
    embeddings[4:] = 0.5  # items 4-7 share a direction; rows need not be distinct here
    scores = signal_scores(train, eval_set, embeddings, config)
    for row, (cands, labels) in enumerate(zip(eval_set.candidates, eval_set.labels, strict=True)):
        assert 3 in cands[labels == 1]
        np.testing.assert_array_equal(scores["popularity"][row], popularity[cands])
        np.testing.assert_array_equal(scores["collaborative"][row], collaborative[row, cands])
        assert scores["popularity"][row][cands == 3] == 0.0


def test_negatives_are_items_the_user_never_rated():
    frame = ratings(TRAIN_ROWS + TEST_ROWS)
    train, test = time_split(frame, TEST_FRACTION)
    config = MovieLensAblationConfig(min_history=2, negatives=100)
    eval_set = build_eval_set(train, test, frame, N_ITEMS, config, np.random.default_rng(0))
    assert eval_set.users.tolist() == [1, 2, 3]
    for user, cands, labels in zip(
        eval_set.users, eval_set.candidates, eval_set.labels, strict=True
    ):
        rated = set(frame.item[frame.user == user].tolist())
        assert not rated & set(cands[labels == 0].tolist())
        assert len(set(cands.tolist())) == len(cands)
        # More negatives asked than exist: every never-rated item, once.
        assert int((labels == 0).sum()) == N_ITEMS - len(rated)


def test_dismissals_push_the_content_profile_away():
    history = ratings([(1, 0, 5.0, 10 * DAY), (1, 1, 1.0, 10 * DAY)])
    embeddings = np.eye(3, dtype=np.float32)
    profile = content_profiles(history, np.asarray([1]), embeddings, MovieLensAblationConfig())[0]
    assert profile @ embeddings[0] > 0
    assert profile @ embeddings[1] < 0
    assert np.linalg.norm(profile) == pytest.approx(1.0)


def test_older_ratings_weigh_less_in_the_content_profile():
    history = ratings([(1, 0, 5.0, 0), (1, 1, 5.0, 365 * DAY)])
    embeddings = np.eye(2, dtype=np.float32)
    profile = content_profiles(history, np.asarray([1]), embeddings, MovieLensAblationConfig())[0]
    assert profile[1] > profile[0] > 0


def test_centering_removes_the_shared_direction_and_keeps_missing_rows_zero():
    # Two rows nearly parallel along a shared direction, plus an item never encoded (zeros).
    rows = np.asarray([[1.0, 0.1, 0.0], [1.0, -0.1, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    centred = center(rows)
    assert centred[0] @ centred[1] == pytest.approx(-1.0, abs=1e-5)  # was nearly +1
    np.testing.assert_allclose(np.linalg.norm(centred[:2], axis=1), 1.0, rtol=1e-5)
    assert not centred[2].any()


class CountingEmbedder:
    """Stands in for the Embedder to count encode calls; the real one is covered by the slow run."""

    name = "counting"
    dim = 4

    def __init__(self) -> None:
        self.encoded = 0

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        self.encoded += len(texts)
        vectors = np.random.default_rng(len(texts)).normal(size=(len(texts), self.dim))
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_embedding_cache_is_reused_and_invalidated_by_content(tmp_path: Path):
    catalog = Catalog(np.asarray([1, 2, 3]), ["A (1995)", "B (1996)", "C (1997)"])
    embedder = CountingEmbedder()
    first = movie_embeddings(catalog, tmp_path, embedder)  # type: ignore[arg-type]
    assert first.shape == (3, 4) and first.dtype == np.float32
    assert embedder.encoded == 3
    again = movie_embeddings(catalog, tmp_path, embedder)  # type: ignore[arg-type]
    np.testing.assert_array_equal(first, again)
    assert embedder.encoded == 3  # served from the cache

    changed = Catalog(catalog.movie_ids, ["A (1995)", "B (1996)", "D (1998)"])
    movie_embeddings(changed, tmp_path, embedder)  # type: ignore[arg-type]
    assert embedder.encoded == 6  # the content hash no longer matched


def test_blend_fit_prefers_the_informative_signal():
    rng = np.random.default_rng(0)
    labels = [np.r_[np.ones(5), np.zeros(20)] for _ in range(30)]
    scores = {
        "content": [y + rng.normal(0, 0.5, len(y)) for y in labels],
        "popularity": [rng.normal(0, 1, len(y)) for y in labels],
    }
    weights, value = fit_blend_weights(scores, labels, ("content", "popularity"), step=0.1)
    assert weights["content"] > weights["popularity"]
    assert sum(weights.values()) == pytest.approx(1.0)
    assert 0.5 < value <= 1.0


@pytest.mark.slow
def test_small_real_run_gives_finite_metrics(tmp_path: Path, embedder: Embedder):
    config = MovieLensAblationConfig(
        data_dir=data_path("ml-latest-small"), cache_dir=tmp_path, max_users=60
    )
    result = main(config, embedder=embedder)
    assert 0 < result["n_users"] <= 60
    assert result["n_candidates"] > result["n_users"]
    expected = {"random", "content", "collaborative", "popularity", *BLENDS}
    assert set(result["systems"]) == expected
    for metrics in [*result["systems"].values(), *result["cold"]["systems"].values()]:
        assert set(metrics) == set(METRIC_NAMES)
        for value in metrics.values():
            assert math.isfinite(value) and 0.0 <= value <= 1.0
    for weights in result["blend_weights"].values():
        assert sum(weights.values()) == pytest.approx(1.0)
    table = format_table(result)
    assert all(f"| {name} |" in table for name in expected)
