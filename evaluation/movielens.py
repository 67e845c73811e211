"""Ablation on MovieLens `ml-latest-small`: what each recommendation signal adds.

Signals, each scoring a (user, candidate item) pair from the user's *history* only:

- content: cosine between the candidate's MiniLM embedding (title + genres, catalog mean removed)
  and a user vector built like the feed's profile - a time-decayed sum of the embeddings of rated
  items, ratings >= 4 pulling it closer, ratings <= 2 pushing it away ("dismiss"), the rest
  counting a little;
- collaborative: mean item-item cosine (binary co-occurrence of positive ratings) between the
  candidate and the user's positively rated items;
- popularity: log1p of the number of positive ratings of the candidate;
- blends of the three, with weights fitted on a validation slice at the end of the train period.

Protocol (global time split): ratings sorted by time; the latest `test_fraction` form the test
period and every test rating is strictly later than every train rating. A user is evaluated when
they have >= 5 train ratings and >= 1 test positive (rating >= 4); their candidates are their test
positives (label 1) plus `negatives` items they never rated (label 0), sampled uniformly with a
seeded RNG. Popularity and collaborative scores are learned from the train period only, so an item
first rated in the test period ("cold") scores 0 there; content still scores it, which is the
cold-start case the content signal exists for, reported separately. Most users who rate in the
test period joined during it, so on ml-latest-small only 28 users qualify: read the metrics with
the standard errors the report gives.

Run: `.venv/bin/python -m evaluation.movielens` (prints a markdown table and writes
`var/reports/movielens_ablation.json`). The first run encodes the 9.7k movie texts once (1-3
minutes on 2 cores) and caches them under `var/cache/`; later runs take a few seconds.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse
from tqdm import tqdm

from evaluation.ranking import auc, mrr, ndcg

if TYPE_CHECKING:
    from retrieval.embedder import Embedder

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
SIGNALS = ("content", "collaborative", "popularity")
BLENDS: dict[str, tuple[str, ...]] = {
    "content+popularity": ("content", "popularity"),
    "collaborative+popularity": ("collaborative", "popularity"),
    "content+collaborative+popularity": SIGNALS,
}
METRIC_NAMES = ("auc", "mrr", "ndcg@10")
# (with, without): the paired per-user AUC gain of the first system over the second.
PAIRED_COMPARISONS = (
    ("content+collaborative+popularity", "collaborative+popularity"),
    ("content+collaborative+popularity", "content+popularity"),
    ("content+popularity", "popularity"),
    ("collaborative+popularity", "popularity"),
    ("collaborative", "popularity"),
)
EMBEDDINGS_FILE = "movielens_embeddings.npy"
_DAY_SECONDS = 86_400.0


@dataclass
class MovieLensAblationConfig:
    """Everything the ablation depends on; `main(config)` is the entry point tests call."""

    data_dir: Path = REPO_ROOT.parent / "shared" / "data" / "ml-latest-small"
    cache_dir: Path = REPO_ROOT / "var" / "cache"  # holds `movielens_embeddings.npy`
    test_fraction: float = 0.2  # latest share of all ratings (by time) that forms the test period
    negatives: int = 100  # never-rated items sampled per evaluated user
    seed: int = 0
    max_users: int | None = None  # evaluate a seeded sample of users (quick runs and tests)
    # Latest share of the *train* ratings held out to fit blend weights; the signals used for that
    # fit are learned from the earlier train ratings only, so nothing about the test period leaks.
    validation_fraction: float = 0.2
    min_history: int = 5  # history ratings a user needs to be evaluated
    positive_rating: float = 4.0  # ratings >= this are positives (labels, popularity, CF)
    dismiss_rating: float = 2.0  # ratings <= this act like a dismissal in the content profile
    positive_weight: float = 1.0
    dismiss_weight: float = -0.5
    neutral_weight: float = 0.1  # 2.5-3.5: watched, lukewarm - a faint hint of taste
    # Users rate in bursts that span years; a half-life of months keeps the profile near recent
    # taste without letting a single session dominate.
    half_life_days: float = 180.0
    # MiniLM vectors share a large common direction (every text here is "<title> (<year>).
    # Genres: ..."), which swamps the cosine; subtracting the catalog mean removes it. Chosen on
    # the validation slice (content AUC 0.651 -> 0.718 there); uses item text only, no ratings.
    center_embeddings: bool = True
    blend_grid_step: float = 0.05  # weights searched on the simplex in these steps


# --- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ratings:
    """Column arrays of ratings; `item` indexes the movie catalog, `user` is the raw userId."""

    user: np.ndarray  # (n,) int64
    item: np.ndarray  # (n,) int64
    rating: np.ndarray  # (n,) float32
    timestamp: np.ndarray  # (n,) int64, seconds since epoch

    def __len__(self) -> int:
        return len(self.user)

    def take(self, rows: np.ndarray) -> Ratings:
        """The ratings selected by a boolean mask or an index array."""
        return Ratings(self.user[rows], self.item[rows], self.rating[rows], self.timestamp[rows])

    @classmethod
    def concat(cls, parts: Sequence[Ratings]) -> Ratings:
        return cls(
            np.concatenate([p.user for p in parts]),
            np.concatenate([p.item for p in parts]),
            np.concatenate([p.rating for p in parts]),
            np.concatenate([p.timestamp for p in parts]),
        )


@dataclass(frozen=True, slots=True)
class Catalog:
    movie_ids: np.ndarray  # (n_items,) int64 MovieLens movieId of each item index
    texts: list[str]  # what gets embedded: title and genres

    def __len__(self) -> int:
        return len(self.movie_ids)


def movie_text(title: str, genres: str) -> str:
    """Title plus readable genres; MovieLens writes "(no genres listed)" when it has none."""
    if not genres or genres == "(no genres listed)":
        return title
    return f"{title}. Genres: {genres.replace('|', ', ')}"


def load_catalog(data_dir: Path) -> Catalog:
    path = data_dir / "movies.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: point data_dir at the ml-latest-small folder")
    ids: list[int] = []
    texts: list[str] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):  # titles hold quoted commas: no naive split
            ids.append(int(row["movieId"]))
            texts.append(movie_text(row["title"], row["genres"]))
    return Catalog(np.asarray(ids, dtype=np.int64), texts)


def load_ratings(data_dir: Path, catalog: Catalog) -> Ratings:
    path = data_dir / "ratings.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: point data_dir at the ml-latest-small folder")
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)  # (n, 4)
    movie_ids = table[:, 1].astype(np.int64)
    order = np.argsort(catalog.movie_ids)
    pos = np.searchsorted(catalog.movie_ids, movie_ids, sorter=order)
    pos = np.minimum(pos, len(order) - 1)
    items = order[pos]
    unknown = catalog.movie_ids[items] != movie_ids
    if unknown.any():
        raise ValueError(
            f"{int(unknown.sum())} ratings name movies missing from movies.csv "
            f"(e.g. movieId {int(movie_ids[unknown][0])}): use the matching movies.csv"
        )
    return Ratings(
        user=table[:, 0].astype(np.int64),
        item=items.astype(np.int64),
        rating=table[:, 2].astype(np.float32),
        timestamp=table[:, 3].astype(np.int64),
    )


def time_split(ratings: Ratings, test_fraction: float) -> tuple[Ratings, Ratings]:
    """(history, future): the latest `test_fraction` of ratings by time form the future.

    The cut is a timestamp, not a row count, so ratings sharing the boundary second all go to the
    future and every future rating is strictly later than every history rating."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if len(ratings) < 2:
        raise ValueError("need at least two ratings to split by time")
    ordered = np.sort(ratings.timestamp, kind="stable")
    cut_row = min(int(np.floor(len(ordered) * (1.0 - test_fraction))), len(ordered) - 1)
    cutoff = ordered[cut_row]
    future = ratings.timestamp >= cutoff
    if future.all():
        raise ValueError("every rating shares the cutoff second: lower test_fraction")
    return ratings.take(~future), ratings.take(future)


# --- embeddings ---------------------------------------------------------------------------------


def _texts_digest(model: str, texts: Sequence[str]) -> str:
    digest = hashlib.sha256(model.encode())
    for text in texts:
        digest.update(b"\x00")
        digest.update(text.encode())
    return digest.hexdigest()


def movie_embeddings(
    catalog: Catalog,
    cache_dir: Path,
    embedder: Embedder | None = None,
    needed: np.ndarray | None = None,
) -> np.ndarray:
    """(n_items, d) L2-normalised float32 embeddings of the catalog texts.

    The full matrix is cached as `cache_dir/movielens_embeddings.npy` with the sha256 of the model
    name and texts beside it, so a changed catalog or model re-encodes instead of silently reusing
    stale vectors. On a cache miss with `needed` (item indices) given, only those rows are encoded
    (the rest stay zero) and nothing is cached: quick runs need not pay for the whole catalog."""
    from retrieval.embedder import model_name  # cheap: the embedder imports torch on use

    model_path: str | None = None
    if embedder is None:
        from core.settings import Settings

        model_path = Settings().retrieval.model_path()
    model = embedder.name if embedder is not None else model_name(Path(str(model_path)))
    cache = cache_dir / EMBEDDINGS_FILE
    digest_file = cache.with_suffix(".sha256")
    digest = _texts_digest(model, catalog.texts)
    if cache.exists() and digest_file.exists() and digest_file.read_text().strip() == digest:
        vectors = np.load(cache)
        if vectors.shape[0] == len(catalog) and vectors.dtype == np.float32:
            return vectors
        log.warning("embedding cache %s has shape %s: re-encoding", cache, vectors.shape)
    if embedder is None:
        from retrieval.embedder import Embedder  # heavy (torch): only on a cache miss

        embedder = Embedder(str(model_path))
    if needed is not None:
        rows = np.unique(needed)
        log.info("encoding %d of %d movies (partial run, not cached)", len(rows), len(catalog))
        vectors = np.zeros((len(catalog), embedder.dim), dtype=np.float32)
        vectors[rows] = embedder.encode([catalog.texts[i] for i in rows], progress=True)
        return vectors
    log.info("encoding %d movies once; cached at %s", len(catalog), cache)
    started = time.perf_counter()
    vectors = embedder.encode(catalog.texts, progress=True)
    log.info("encoded in %.1fs", time.perf_counter() - started)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp.npy")  # atomic: a killed run leaves no half file
    np.save(tmp, vectors)
    os.replace(tmp, cache)
    digest_file.write_text(digest + "\n")
    return vectors


# --- signals (each learned from the history ratings it is given, and nothing else) -------------


def popularity_scores(history: Ratings, n_items: int, positive_rating: float = 4.0) -> np.ndarray:
    """(n_items,) float32 log1p of history positive counts; items without one score 0."""
    positives = history.item[history.rating >= positive_rating]
    return np.log1p(np.bincount(positives, minlength=n_items)).astype(np.float32)


def _user_rows(history: Ratings, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row of each history rating's user in `users` (-1 when not listed), and the listed mask."""
    if len(users) == 0:
        return np.full(len(history), -1), np.zeros(len(history), dtype=bool)
    order = np.argsort(users)
    pos = np.minimum(np.searchsorted(users, history.user, sorter=order), len(users) - 1)
    rows = order[pos]
    listed = users[rows] == history.user
    return np.where(listed, rows, -1), listed


def collaborative_scores(
    history: Ratings, users: np.ndarray, n_items: int, positive_rating: float = 4.0
) -> np.ndarray:
    """(len(users), n_items) float32: mean item-item cosine between each item and the user's
    positively rated history items (0 for an item no one rated positively in the history).

    Why co-occurrence cosine rather than ALS or truncated SVD: it has no rank, regularisation or
    confidence weight to tune (each would need its own validation loop), and with ~600 users the
    exact item-item similarity is cheap to compute as two sparse products."""
    positive = history.rating >= positive_rating
    all_users = np.unique(history.user[positive])
    if len(all_users) == 0 or len(users) == 0:
        return np.zeros((len(users), n_items), dtype=np.float32)
    user_index = np.searchsorted(all_users, history.user[positive])
    x = sparse.csr_matrix(
        (np.ones(int(positive.sum()), dtype=np.float32), (user_index, history.item[positive])),
        shape=(len(all_users), n_items),
    )
    x.data[:] = 1.0  # duplicate (user, item) pairs count once
    counts = np.asarray(x.sum(axis=0)).ravel()  # (I,) positive raters per item
    inv_norm = np.divide(1.0, np.sqrt(counts), out=np.zeros_like(counts), where=counts > 0)
    xn = (x @ sparse.diags(inv_norm.astype(np.float32))).tocsr()  # cos(i, j) = xn[:, i] . xn[:, j]
    # Each listed user's own positives, aligned to `users` (users without positives stay empty).
    rows, listed = _user_rows(history, users)
    keep = listed & positive
    own = sparse.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], history.item[keep])),
        shape=(len(users), n_items),
    )
    own.data[:] = 1.0
    # sum_{i in P_u} cos(i, c) = ((P_u @ xn.T) @ xn)[c]: (B, U) @ (U, I), never the (I, I) matrix.
    summed = np.asarray(((own @ xn.T) @ xn).todense(), dtype=np.float32)  # (B, I)
    n_own = np.asarray(own.sum(axis=1), dtype=np.float32)  # (B, 1)
    return summed / np.maximum(n_own, 1.0)


def content_profiles(
    history: Ratings, users: np.ndarray, embeddings: np.ndarray, config: MovieLensAblationConfig
) -> np.ndarray:
    """(len(users), d) float32 unit user vectors (zero when the weights cancel out).

    Decay is measured from each user's latest history rating; cosine ignores the scale, so the
    reference time only matters for keeping the weights away from underflow."""
    rows, listed = _user_rows(history, users)
    rows, item = rows[listed], history.item[listed]
    rating, ts = history.rating[listed], history.timestamp[listed].astype(np.float64)
    latest = np.full(len(users), -np.inf)
    np.maximum.at(latest, rows, ts)
    age_days = (latest[rows] - ts) / _DAY_SECONDS
    weight = np.where(
        rating >= config.positive_rating,
        config.positive_weight,
        np.where(rating <= config.dismiss_rating, config.dismiss_weight, config.neutral_weight),
    ) * np.power(0.5, age_days / config.half_life_days)
    w = sparse.csr_matrix((weight, (rows, item)), shape=(len(users), len(embeddings)))
    vectors = np.asarray(w @ embeddings, dtype=np.float32)  # (B, d)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


# --- protocol -----------------------------------------------------------------------------------


@dataclass
class EvalSet:
    """Per evaluated user: candidate item indices and their labels (1 = future positive)."""

    users: np.ndarray  # (B,) raw userIds, sorted
    candidates: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)

    @property
    def n_candidates(self) -> int:
        return int(sum(len(c) for c in self.candidates))

    @property
    def n_positives(self) -> int:
        return int(sum(int(lab.sum()) for lab in self.labels))


def build_eval_set(
    history: Ratings,
    future: Ratings,
    known: Ratings,
    n_items: int,
    config: MovieLensAblationConfig,
    rng: np.random.Generator,
) -> EvalSet:
    """Users with >= `min_history` history ratings and >= 1 future positive; candidates are their
    future positives plus `negatives` items they never rated in `known` (everything the protocol
    may look at), sampled uniformly."""
    history_counts = dict(zip(*np.unique(history.user, return_counts=True), strict=True))
    positive = future.rating >= config.positive_rating
    eligible = np.asarray(
        sorted(
            u
            for u in np.unique(future.user[positive]).tolist()
            if history_counts.get(u, 0) >= config.min_history
        ),
        dtype=np.int64,
    )
    if config.max_users is not None and len(eligible) > config.max_users:
        eligible = np.sort(rng.choice(eligible, size=config.max_users, replace=False))
    eval_set = EvalSet(users=eligible)
    by_user_known = _group_items(known)
    by_user_history = _group_items(history)
    by_user_positive = _group_items(future.take(positive))
    all_items = np.arange(n_items)
    for user in tqdm(eligible.tolist(), desc="candidates", unit="user", leave=False):
        positives = np.setdiff1d(by_user_positive[user], by_user_history.get(user, []))
        pool = np.setdiff1d(all_items, by_user_known[user], assume_unique=True)
        negatives = rng.choice(pool, size=min(config.negatives, len(pool)), replace=False)
        eval_set.candidates.append(np.concatenate([positives, negatives]).astype(np.int64))
        eval_set.labels.append(
            np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))]).astype(np.int8)
        )
    return eval_set


def _group_items(ratings: Ratings) -> dict[int, np.ndarray]:
    """userId -> sorted unique item indices that user rated."""
    order = np.lexsort((ratings.item, ratings.user))
    users, items = ratings.user[order], ratings.item[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else []
    bounds = [*list(starts), len(users)]
    return {int(users[a]): np.unique(items[a:b]) for a, b in itertools.pairwise(bounds) if b > a}


def center(embeddings: np.ndarray) -> np.ndarray:
    """(n, d) float32: rows minus the mean of the non-zero rows, re-normalised. All-zero rows
    (items a partial run never encoded) stay zero."""
    present = np.linalg.norm(embeddings, axis=1) > 0
    if not present.any():
        return embeddings
    centred = np.where(present[:, None], embeddings - embeddings[present].mean(axis=0), 0.0)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0).astype(np.float32)


def signal_scores(
    history: Ratings,
    eval_set: EvalSet,
    embeddings: np.ndarray,
    config: MovieLensAblationConfig,
) -> dict[str, list[np.ndarray]]:
    """Per signal, per evaluated user: scores of that user's candidates, from `history` only."""
    n_items = len(embeddings)
    popularity = popularity_scores(history, n_items, config.positive_rating)
    collaborative = collaborative_scores(history, eval_set.users, n_items, config.positive_rating)
    profiles = content_profiles(history, eval_set.users, embeddings, config)
    scores: dict[str, list[np.ndarray]] = {name: [] for name in SIGNALS}
    for row, cands in enumerate(eval_set.candidates):
        scores["content"].append(embeddings[cands] @ profiles[row])
        scores["collaborative"].append(collaborative[row, cands])
        scores["popularity"].append(popularity[cands])
    return scores


def _standardise(scores: np.ndarray) -> np.ndarray:
    """Z-score within one user's candidate list, so blend weights mean the same for every user
    and carry over from validation (signals learned on less data) to test."""
    std = scores.std()
    if std == 0:
        return np.zeros_like(scores, dtype=np.float64)
    return (scores - scores.mean()) / std


def blend(scores: dict[str, list[np.ndarray]], weights: dict[str, float]) -> list[np.ndarray]:
    """Per user: the weighted sum of the per-user standardised signal scores."""
    n_users = len(next(iter(scores.values())))
    return [
        sum(w * _standardise(scores[name][u]) for name, w in weights.items())  # type: ignore[misc]
        for u in range(n_users)
    ]


def _simplex(k: int, step: float) -> list[tuple[float, ...]]:
    """All k-vectors of non-negative multiples of `step` summing to 1."""
    n = round(1.0 / step)
    return [
        tuple(c / n for c in combo)
        for combo in itertools.product(range(n + 1), repeat=k)
        if sum(combo) == n
    ]


def fit_blend_weights(
    scores: dict[str, list[np.ndarray]],
    labels: Sequence[np.ndarray],
    signals: Sequence[str],
    step: float,
) -> tuple[dict[str, float], float]:
    """Grid search on the simplex for the weights with the best mean per-user AUC.

    A grid rather than logistic regression: it optimises the ranking metric we report (pointwise
    log-loss does not), has nothing to tune, and non-negative weights that sum to 1 let a useless
    signal get weight 0 instead of a noisy fitted coefficient."""
    # (k, C_u) standardised signal scores per user, computed once for the whole grid.
    stacked = [
        np.stack([_standardise(scores[name][u]) for name in signals]) for u in range(len(labels))
    ]
    best_value, best_weights = -1.0, ()
    for weights in tqdm(_simplex(len(signals), step), desc="blend grid", leave=False):
        w = np.asarray(weights)
        value = float(np.mean([auc(y, w @ z) for y, z in zip(labels, stacked, strict=True)]))
        if value > best_value + 1e-12:  # strict: a tie keeps the earlier grid point
            best_value, best_weights = value, weights
    return dict(zip(signals, best_weights, strict=True)), best_value


def user_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    return {
        "auc": auc(labels, scores),
        "mrr": mrr(labels, scores),
        "ndcg@10": ndcg(labels, scores, 10),
    }


def per_user_metrics(
    labels: Sequence[np.ndarray], scores: Sequence[np.ndarray], desc: str = "metrics"
) -> dict[str, np.ndarray]:
    """Per metric, a (B,) array of each user's value."""
    rows = [
        user_metrics(y, s)
        for y, s in tqdm(
            zip(labels, scores, strict=True), total=len(labels), desc=desc, leave=False
        )
    ]
    return {name: np.asarray([r[name] for r in rows]) for name in METRIC_NAMES}


def _mean(values: dict[str, np.ndarray]) -> dict[str, float]:
    """Average over users: every user counts the same, however many positives they have."""
    return {name: float(v.mean()) for name, v in values.items()}


def _stderr(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def cold_subset(eval_set: EvalSet, cold_items: np.ndarray) -> tuple[list[int], list[np.ndarray]]:
    """Users whose future positives include items with no history rating at all, and per such
    user the candidate mask keeping those cold positives and all the negatives (warm positives
    are dropped, so the metrics measure only how the cold ones are ranked)."""
    users: list[int] = []
    masks: list[np.ndarray] = []
    for u, (cands, labels) in enumerate(zip(eval_set.candidates, eval_set.labels, strict=True)):
        cold_positive = (labels == 1) & cold_items[cands]
        if cold_positive.any():
            users.append(u)
            masks.append(cold_positive | (labels == 0))
    return users, masks


# --- entry point --------------------------------------------------------------------------------


def main(config: MovieLensAblationConfig, embedder: Embedder | None = None) -> dict[str, Any]:
    """Run the ablation; returns counts, per-system metrics, the cold-item subset and the fitted
    blend weights. Pass a loaded `embedder` to skip loading one (tests share a session copy)."""
    started = time.perf_counter()
    catalog = load_catalog(config.data_dir)
    ratings = load_ratings(config.data_dir, catalog)
    n_items = len(catalog)
    train, test = time_split(ratings, config.test_fraction)
    fit, val = time_split(train, config.validation_fraction)
    log.info(
        "%d ratings: %d train (%d fit + %d validation), %d test",
        len(ratings),
        len(train),
        len(fit),
        len(val),
        len(test),
    )
    val_rng, test_rng, random_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(3)
    )
    # Validation never sees the test period: its negatives exclude only what was rated in train.
    val_set = build_eval_set(fit, val, train, n_items, config, val_rng)
    test_set = build_eval_set(train, test, ratings, n_items, config, test_rng)
    if len(test_set.users) == 0 or len(val_set.users) == 0:
        raise ValueError("no user qualifies for evaluation: lower min_history or test_fraction")

    needed = None
    if config.max_users is not None:  # only these rows feed a profile or get scored
        needed = np.concatenate(
            [
                fit.item[np.isin(fit.user, val_set.users)],
                train.item[np.isin(train.user, test_set.users)],
                *val_set.candidates,
                *test_set.candidates,
            ]
        )
    embeddings = movie_embeddings(catalog, config.cache_dir, embedder, needed)
    if config.center_embeddings:
        embeddings = center(embeddings)

    val_scores = signal_scores(fit, val_set, embeddings, config)
    weights: dict[str, dict[str, float]] = {}
    val_auc: dict[str, float] = {}
    for name, signals in BLENDS.items():
        weights[name], val_auc[name] = fit_blend_weights(
            val_scores, val_set.labels, signals, config.blend_grid_step
        )
        log.info("%s: weights %s (validation AUC %.4f)", name, weights[name], val_auc[name])

    test_scores = signal_scores(train, test_set, embeddings, config)
    systems: dict[str, list[np.ndarray]] = {
        "random": [random_rng.random(len(c)) for c in test_set.candidates],
        **test_scores,
    }
    for name in BLENDS:
        systems[name] = blend(test_scores, weights[name])

    cold_items = np.bincount(train.item, minlength=n_items) == 0
    cold_users, cold_masks = cold_subset(test_set, cold_items)
    cold_labels = [test_set.labels[u][m] for u, m in zip(cold_users, cold_masks, strict=True)]
    per_user: dict[str, dict[str, np.ndarray]] = {}
    cold_per_user: dict[str, dict[str, np.ndarray]] = {}
    for name, scores in tqdm(systems.items(), desc="systems", unit="system"):
        per_user[name] = per_user_metrics(test_set.labels, scores, desc=name)
        if cold_users:
            cold_scores = [scores[u][m] for u, m in zip(cold_users, cold_masks, strict=True)]
            cold_per_user[name] = per_user_metrics(cold_labels, cold_scores, desc=f"{name} cold")
    # With a few dozen users the spread matters: standard errors over users, and paired per-user
    # differences for what adding one signal to the others changes.
    paired = {
        f"{with_} - {without}": {
            "auc": float((per_user[with_]["auc"] - per_user[without]["auc"]).mean()),
            "auc_se": _stderr(per_user[with_]["auc"] - per_user[without]["auc"]),
        }
        for with_, without in PAIRED_COMPARISONS
    }

    n_cold_positives = int(sum(int(lab.sum()) for lab in cold_labels))
    return {
        "n_users": len(test_set.users),
        "n_candidates": test_set.n_candidates,
        "n_positives": test_set.n_positives,
        "systems": {name: _mean(values) for name, values in per_user.items()},
        "stderr": {name: {"auc": _stderr(v["auc"])} for name, v in per_user.items()},
        "paired_auc_gain": paired,
        "cold": {
            "n_users": len(cold_users),
            "n_positives": n_cold_positives,
            "share_of_positives": n_cold_positives / max(test_set.n_positives, 1),
            "systems": {name: _mean(values) for name, values in cold_per_user.items()},
            "stderr": {name: {"auc": _stderr(v["auc"])} for name, v in cold_per_user.items()},
        },
        "blend_weights": weights,
        "validation": {
            "n_users": len(val_set.users),
            "n_candidates": val_set.n_candidates,
            "blend_auc": val_auc,
        },
        "split": {
            "n_ratings": len(ratings),
            "n_train": len(train),
            "n_test": len(test),
            "n_fit": len(fit),
            "n_validation": len(val),
            "test_cutoff_timestamp": int(test.timestamp.min()),
            "n_items": n_items,
            "n_cold_items_rated_in_test": int(np.unique(test.item[cold_items[test.item]]).size),
        },
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "runtime_s": round(time.perf_counter() - started, 1),
    }


def format_table(result: dict[str, Any]) -> str:
    """Markdown: one row per system (all users, then the cold-item subset; AUC +- its standard
    error over users), then the paired AUC gains."""
    cold = result["cold"]

    def auc_cell(block: dict[str, Any], name: str) -> str:
        metrics = block["systems"].get(name)
        if metrics is None:
            return "-"
        se = block.get("stderr", {}).get(name, {}).get("auc")
        return f"{metrics['auc']:.4f}" + (f" ± {se:.3f}" if se is not None else "")

    headers = ["system", "AUC", "MRR", "nDCG@10", "cold AUC", "cold MRR", "cold nDCG@10", "weights"]
    lines = [
        f"{result['n_users']} users, {result['n_candidates']:,} candidates "
        f"({result['n_positives']:,} positives); cold subset: {cold['n_users']} users, "
        f"{cold['n_positives']:,} cold positives",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(["---"] + ["---:"] * 6 + ["---"]) + "|",
    ]
    for name, metrics in result["systems"].items():
        cold_metrics = cold["systems"].get(name)
        weights = result.get("blend_weights", {}).get(name)
        cells = [name, auc_cell(result, name), f"{metrics['mrr']:.4f}", f"{metrics['ndcg@10']:.4f}"]
        cells.append(auc_cell(cold, name))
        cells += [f"{cold_metrics[m]:.4f}" if cold_metrics else "-" for m in ("mrr", "ndcg@10")]
        cells.append(", ".join(f"{k} {v:.2f}" for k, v in weights.items()) if weights else "")
        lines.append("| " + " | ".join(cells) + " |")
    paired = result.get("paired_auc_gain")
    if paired:
        lines += ["", "| paired per-user AUC gain | mean | ± se |", "|---|---:|---:|"]
        lines += [f"| {k} | {v['auc']:+.4f} | {v['auc_se']:.4f} |" for k, v in paired.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    outcome = main(MovieLensAblationConfig())
    print(format_table(outcome))
    print(f"\nruntime {outcome['runtime_s']}s")
    report = REPO_ROOT / "var" / "reports" / "movielens_ablation.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(outcome, indent=2) + "\n")
    print(f"wrote {report}")
