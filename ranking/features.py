"""Features of a (user, candidate) pair, computed the same way in training and in serving.

Training (MIND impressions) and the live feed both build a `UserContext` and call
`candidate_features`, so the head never sees a feature computed two different ways.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

FEATURE_NAMES = (
    "content_cosine",
    "max_history_sim",
    "popularity",
    "ctr",
    "coclick",
    "category_affinity",
)
CTR_PRIOR_CLICKS, CTR_PRIOR_SHOWN = 1.0, 10.0  # smoothing: an unseen item sits at 10%
MAX_BASKET = 50  # items per basket counted for co-clicks: bounds the quadratic pair update


@dataclass(slots=True)
class UserContext:
    history_vectors: np.ndarray  # (L, d) unit vectors, newest first; L may be 0
    history_ids: Sequence[Hashable]  # the same items' ids, for co-click look-ups
    profile_vector: np.ndarray | None  # (d,) unit vector, None for a cold user
    category_affinity: dict[str, float] = field(default_factory=dict)


@dataclass
class PopularityCounts:
    """Positive interactions (clicks, likes...) and impressions (times shown) per item."""

    counts: Counter = field(default_factory=Counter)
    shown: Counter = field(default_factory=Counter)
    _max: float = 0.0  # running maximum: recomputing it scanned every item per request

    def add(self, item: Hashable, n: int = 1) -> None:
        self.counts[item] += n
        self._max = max(self._max, float(self.counts[item]))

    def refresh_max(self) -> None:
        """After counts were taken out (a reader's deletion): the maximum may have been theirs."""
        self._max = float(max(self.counts.values(), default=0))

    def add_shown(self, item: Hashable, n: int = 1) -> None:
        self.shown[item] += n

    def raw_shown(self, items: Sequence[Hashable]) -> np.ndarray:
        return _lookup(self.shown, items)

    def raw(self, items: Sequence[Hashable]) -> np.ndarray:
        return _lookup(self.counts, items)

    @property
    def max(self) -> float:
        return self._max

    def top(self, n: int) -> list[Hashable]:
        return [item for item, count in self.counts.most_common(n) if count > 0]


class KeyedPopularityCounts(PopularityCounts):
    """PopularityCounts over integer keys (serving's article keys), with the counts also kept
    in arrays indexed by key: a feed's ~400 look-ups become two gathers. The Counters stay the
    source of `top` (same order among ties)."""

    def __init__(self) -> None:
        super().__init__()
        self._dense_counts = np.zeros(1024, dtype=np.float64)
        self._dense_shown = np.zeros(1024, dtype=np.float64)

    def _fit(self, key: int) -> None:
        if key >= len(self._dense_counts):
            size = max(key + 1, 2 * len(self._dense_counts))
            self._dense_counts = np.concatenate(
                [self._dense_counts, np.zeros(size - len(self._dense_counts))]
            )
            self._dense_shown = np.concatenate(
                [self._dense_shown, np.zeros(size - len(self._dense_shown))]
            )

    def add(self, item: Hashable, n: int = 1) -> None:
        super().add(item, n)
        self._fit(item)  # type: ignore[arg-type]
        self._dense_counts[item] += n  # type: ignore[index]

    def add_shown(self, item: Hashable, n: int = 1) -> None:
        super().add_shown(item, n)
        self._fit(item)  # type: ignore[arg-type]
        self._dense_shown[item] += n  # type: ignore[index]

    def raw(self, items: Sequence[Hashable]) -> np.ndarray:
        return _gather(self._dense_counts, items)

    def raw_shown(self, items: Sequence[Hashable]) -> np.ndarray:
        return _gather(self._dense_shown, items)


def _gather(dense: np.ndarray, keys: Sequence[Hashable]) -> np.ndarray:
    """(len(keys),) float32 `dense[key]`, 0 for keys past its end."""
    index = np.fromiter(keys, dtype=np.int64, count=len(keys))
    inside = index < len(dense)
    if inside.all():
        return dense[index].astype(np.float32)
    return np.where(inside, dense[np.where(inside, index, 0)], 0.0).astype(np.float32)


@dataclass
class CoClickCounts:
    """Item-item co-occurrence in users' engagement baskets: the collaborative signal. A
    candidate scores by how often it was engaged with together with the user's history."""

    pairs: defaultdict = field(default_factory=lambda: defaultdict(Counter))

    def add_basket(self, items: Sequence[Hashable]) -> None:
        unique = list(dict.fromkeys(items))[-MAX_BASKET:]
        for i, a in enumerate(unique):
            for b in unique[i + 1 :]:
                self.pairs[a][b] += 1
                self.pairs[b][a] += 1

    def add_click(self, history: Sequence[Hashable], item: Hashable, n: int = 1) -> None:
        """`item` engaged with after `history`; `n=-1` takes such a click back out."""
        for a in list(dict.fromkeys(history))[-MAX_BASKET:]:
            if a != item:
                self._bump(a, item, n)
                self._bump(item, a, n)

    def _bump(self, a: Hashable, b: Hashable, n: int) -> None:
        row = self.pairs[a]
        row[b] += n
        if row[b] <= 0:  # taken back out: drop it rather than keep a zero
            del row[b]
            if not row:
                del self.pairs[a]

    def raw(self, history: Sequence[Hashable], candidates: Sequence[Hashable]) -> np.ndarray:
        """(C,) summed co-occurrence counts of each candidate with the history items."""
        rows = [r for h in history if (r := self.pairs.get(h))]
        if not rows:
            return np.zeros(len(candidates), dtype=np.float32)
        index = {c: n for n, c in enumerate(candidates)}
        if len(index) < len(candidates):  # repeated candidates: plain per-candidate sums
            return np.array([sum(r.get(c, 0) for r in rows) for c in candidates], np.float32)
        positions: list[int] = []
        counts: list[int] = []
        for row in rows:
            # A key-view intersection walks the smaller side in C: popular items co-occur with
            # thousands of others, a history item with a few.
            common = row.keys() & index.keys()
            positions.extend(map(index.__getitem__, common))
            counts.extend(map(row.__getitem__, common))
        # Integer counts: float sums are exact whatever the order of addition.
        totals = np.bincount(
            np.asarray(positions, dtype=np.intp), weights=counts, minlength=len(candidates)
        )
        return totals.astype(np.float32)


def _lookup(counts: Counter, items: Sequence[Hashable]) -> np.ndarray:
    """(len(items),) float32 counts; missing items count 0."""
    return np.fromiter(map(counts.get, items, repeat(0)), dtype=np.float32, count=len(items))


def candidate_features(
    user: UserContext,
    candidate_vectors: np.ndarray,
    candidate_categories: Sequence[str | None],
    popularity: np.ndarray,
    popularity_max: float,
    shown: np.ndarray,
    coclick: np.ndarray,
) -> np.ndarray:
    """(C, F) float32 in FEATURE_NAMES order. Counts are squashed scale-free so that a model
    trained on a small log serves a large one."""
    n = len(candidate_vectors)
    if user.profile_vector is not None:
        content = candidate_vectors @ user.profile_vector
    else:
        content = np.zeros(n, dtype=np.float32)
    if len(user.history_vectors):
        max_sim = (candidate_vectors @ user.history_vectors.T).max(axis=1)
    else:
        max_sim = np.zeros(n, dtype=np.float32)
    pop = np.log1p(popularity) / math.log1p(max(popularity_max, 1.0))
    # Clicks per impression, smoothed; where nobody reports impressions it stays at the prior
    # for every item and so ranks nothing up or down.
    ctr = (np.minimum(popularity, shown) + CTR_PRIOR_CLICKS) / (shown + CTR_PRIOR_SHOWN)
    co = np.log1p(coclick)
    co = co / (1.0 + co)
    # Affinities are kept for named categories only, so None and "" find 0.0 too.
    affinity = np.fromiter(
        map(user.category_affinity.get, candidate_categories, repeat(0.0)),
        dtype=np.float32,
        count=len(candidate_categories),
    )
    return np.stack([content, max_sim, pop, ctr, co, affinity], axis=1).astype(np.float32)
