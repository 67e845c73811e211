"""The feed: candidates -> ranking head -> freshness -> diversification -> explanations.

Candidates are the union of the user's nearest articles in the vector index, the freshest and
the most popular; read and dismissed articles are removed. A user without history is scored by
the same head with an empty history (it then leans on popularity, click-through and category),
which is the cold-start path; a new article is reachable at once through its vector and the
fresh list.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

import numpy as np

from core.domain import Event
from core.settings import RankingConfig
from core.storage import LoggedEvent, LogSnapshot, Storage, StoredProfile
from ranking.features import (
    FEATURE_NAMES,
    CoClickCounts,
    KeyedPopularityCounts,
    PopularityCounts,
    UserContext,
    candidate_features,
)
from ranking.profile import POSITIVE_TYPES, ProfileConfig, UserProfile
from ranking.profile_store import LocalProfileCache, ProfileCache, ProfileStore, to_profile
from ranking.scorer import ClickScorer
from retrieval.catalog import ArticleCatalog, CatalogEntry
from retrieval.index import ArticleIndex

log = logging.getLogger(__name__)

PUBLISHED_TS = attrgetter("published_ts")

POPULARITY_TYPES = frozenset({"click", "like", "share"})


@dataclass(slots=True)
class FeedConfig:
    # ~200 candidates in all: every stage of a feed request scales with this number
    similar_candidates: int = 120
    fresh_candidates: int = 50
    popular_candidates: int = 50
    mmr_lambda: float = 0.75  # 1.0 = pure relevance; lower = more diverse
    category_cap: float = 0.4  # at most this share of a feed from one category
    cold_category_cap: float = 0.25  # stricter for a new reader: show the range on offer
    freshness_half_life_hours: float = 48.0
    freshness_weight: float = 0.3  # share of the score that decays with age
    explain_min_similarity: float = 0.3


@dataclass(slots=True)
class Explanation:
    text: str
    because_you_read: tuple[str, str, float] | None  # (id, title, similarity)
    signals: list[str]
    sources: list[str]


@dataclass(slots=True)
class RankedItem:
    entry: CatalogEntry
    score: float
    click_probability: float
    explanation: Explanation


@dataclass(slots=True)
class ScoredCandidates:
    keys: list[int]
    entries: list[CatalogEntry]
    vectors: np.ndarray  # (C, d)
    features: np.ndarray  # (C, F)
    probability: np.ndarray  # (C,) click probability from the head
    freshness: np.ndarray  # (C,) in [0, 1]
    scores: np.ndarray  # (C,) what the feed ranks by
    user: UserContext


@dataclass(slots=True)
class Feed:
    user_id: str
    items: list[RankedItem]
    cold_start: bool
    candidates: int
    profile: UserProfile | None = None  # what the feed was built from (sponsored items reuse it)


@dataclass
class InteractionState:
    """Live popularity, impressions and co-clicks, keyed by article key: folds over the events
    log in seq order (rebuilt from it at start, then followed)."""

    popularity: PopularityCounts = field(default_factory=KeyedPopularityCounts)
    coclick: CoClickCounts = field(default_factory=CoClickCounts)
    recent: dict[str, deque] = field(default_factory=dict)  # user -> recent positive keys

    def apply(self, user_id: str, key: int, event_type: str) -> None:
        if event_type == "impression":
            self.popularity.add_shown(key)
            return
        if event_type in POPULARITY_TYPES:
            self.popularity.add(key)
        if event_type in POSITIVE_TYPES:
            history = self.recent.setdefault(user_id, deque(maxlen=50))
            if key not in history:
                self.coclick.add_click(list(history), key)
                history.append(key)

    def apply_all(self, interactions: Iterable[tuple[str, int, str]]) -> None:
        """(user pseudonym, article key, event type) triples, in arrival order."""
        for user_id, key, event_type in interactions:
            self.apply(user_id, key, event_type)

    def subtract_user(self, user_id: str, interactions: Sequence[tuple[int, str]]) -> None:
        """Take out exactly what one reader's events (all of them, in seq order) added: a
        reader's share of the co-click counts depends only on their own sequence, so replaying
        it with negative counts undoes it without touching anyone else's."""
        history: deque = deque(maxlen=50)
        for key, event_type in interactions:
            if event_type == "impression":
                self.popularity.add_shown(key, -1)
                continue
            if event_type in POPULARITY_TYPES:
                self.popularity.add(key, -1)
            if event_type in POSITIVE_TYPES and key not in history:
                self.coclick.add_click(list(history), key, -1)
                history.append(key)
        self.popularity.refresh_max()
        self.recent.pop(user_id, None)

    @classmethod
    def from_storage(cls, storage: Storage) -> tuple[InteractionState, LogSnapshot]:
        """Fold every stored event, and say where the logs were (the follower starts there)."""
        state = cls()
        snapshot = storage.fold_log_snapshot(lambda e: state.apply(e.user, e.article_key, e.type))
        return state, snapshot

    @classmethod
    def rebuilt(
        cls, storage: Storage, up_to_seq: int, skip: Iterable[int] = ()
    ) -> InteractionState:
        """Fold the stored events up to `up_to_seq`, leaving out the seqs in `skip` (those a
        follower is still waiting for: it applies them when they commit)."""
        state = cls()
        skipped = set(skip)
        for event in storage.iter_logged_events(up_to_seq):
            if event.seq not in skipped:
                state.apply(event.user, event.article_key, event.type)
        return state


class Recommender:
    def __init__(
        self,
        scorer: ClickScorer,
        index: ArticleIndex,
        catalog: ArticleCatalog,
        profiles: ProfileStore,
        state: InteractionState,
        profile_config: ProfileConfig | None = None,
        feed_config: FeedConfig | None = None,
        head_name: str = "ranking-head",
    ) -> None:
        self.index = index
        self.catalog = catalog
        self.profiles = profiles
        self.state = state
        self.profile_config = profile_config or ProfileConfig()
        self.config = feed_config or FeedConfig()
        self.head_name = head_name
        self.scorer = scorer  # the head's click logit, in numpy
        self._head_columns = [FEATURE_NAMES.index(f) for f in scorer.config.features]
        self._popular_cache: tuple[float, list[int]] | None = None

    def use_head(self, scorer: ClickScorer, head_name: str) -> None:
        """Serve another head from now on (a promoted champion): one attribute swap, so a feed
        in flight finishes with the head it started with."""
        self._head_columns = [FEATURE_NAMES.index(f) for f in scorer.config.features]
        self.scorer, self.head_name = scorer, head_name

    def variant(
        self, scorer: ClickScorer | None, config: FeedConfig | None, head_name: str | None
    ) -> Recommender:
        """This recommender with another head and/or feed settings (an experiment's arm),
        sharing the index, catalog, profiles and live counts."""
        other = copy.copy(self)
        if scorer is not None:
            other.use_head(scorer, head_name or self.head_name)
        if config is not None:
            other.config = config
        return other

    def reset_interactions(self, up_to_seq: int, skip: Iterable[int] = ()) -> None:
        """Rebuild the live counts from the stored events (after a retention purge)."""
        self.state = InteractionState.rebuilt(self.profiles.storage, up_to_seq, skip)
        self._popular_cache = None

    # --- events -----------------------------------------------------------------------------
    def fold_events(
        self, events: Sequence[Event], stored: dict[str, StoredProfile | None]
    ) -> dict[str, UserProfile]:
        """The profiles after `events`, built from `stored` (pseudonym -> the stored profile,
        read under the writer's lock): fresh objects, so a profile a feed is reading is never
        changed under it, and nothing is cached before the commit."""
        pseudonym = self.profiles.storage.pseudonym
        touched: dict[str, UserProfile] = {}
        for event in sorted(events, key=lambda e: e.ts):
            user = pseudonym(event.user_id)
            profile = touched.get(user)
            if profile is None:
                previous = stored.get(user)
                profile = to_profile(previous) if previous else UserProfile(user, self.index.dim)
                touched[user] = profile
            entry = self.catalog.get(event.article_key)
            vector = (
                self.index.vector(event.article_key) if event.article_key in self.index else None
            )
            profile.apply(
                event.type,
                event.article_key,
                vector,
                entry.category if entry else None,
                event.ts,
                self.profile_config,
                event.dwell_ms,
            )
        return touched

    def apply_logged(self, events: Sequence[LoggedEvent]) -> None:
        """New events from the log, in seq order, into the live counts."""
        self.state.apply_all((e.user, e.article_key, e.type) for e in events)

    # --- feed -------------------------------------------------------------------------------
    def feed(
        self, user_id: str, k: int, category: str | None = None, exclude_read: bool = True
    ) -> Feed:
        profile = self.profiles.get(user_id)
        vector = profile.vector if profile else None
        sources: dict[int, list[str]] = {}

        def add(keys: Iterable[int], source: str) -> None:
            for key in keys:
                sources.setdefault(key, []).append(source)

        if vector is not None:
            allowed = None
            if category is not None:
                allowed = self.catalog.keys_in_category(category)
            _, found = self.index.search(vector[None, :], self.config.similar_candidates, allowed)
            add((k_ for k_ in found[0].tolist() if k_ >= 0), "similar")
        add(self.catalog.newest(self.config.fresh_candidates, category), "fresh")
        add(self._popular(self.config.popular_candidates, category), "popular")
        keys = list(sources)
        if profile is not None:  # membership in the profile's own ordered sets: no copies
            dismissed, read = profile.dismissed, profile.read
            keys = [
                key for key in keys if key not in dismissed and not (exclude_read and key in read)
            ]
        scored = self._score(profile, keys, vector)
        if scored is None:
            return Feed(user_id, [], cold_start=vector is None, candidates=0, profile=profile)
        cap = self.config.category_cap if vector is not None else self.config.cold_category_cap
        chosen = self._diversify(scored, k, None if category is not None else cap)
        items = self._items(scored, chosen, sources, profile)
        return Feed(
            user_id, items, cold_start=vector is None, candidates=len(scored.keys), profile=profile
        )

    def rank(self, user_id: str, keys: Sequence[int]) -> list[RankedItem]:
        """Score CMS-supplied candidates with the same head (no exclusions, no diversity)."""
        profile = self.profiles.get(user_id)
        vector = profile.vector if profile else None
        scored = self._score(profile, list(dict.fromkeys(keys)), vector)
        if scored is None:
            return []
        order = np.argsort(-scored.scores, kind="stable").tolist()
        return self._items(scored, order, {}, profile)

    def _popular(self, n: int, category: str | None) -> list[int]:
        # Recomputing the top list from all counts on every request would dominate the feed;
        # it is refreshed at most every 5 seconds.
        now = time.monotonic()
        if self._popular_cache is None or now - self._popular_cache[0] > 5.0:
            self._popular_cache = (
                now,
                self.state.popularity.top(self.config.popular_candidates * 5),
            )
        top = self._popular_cache[1]
        if category is None:
            return top[:n]
        return [k for k in top if (e := self.catalog.get(k)) and e.category == category][:n]

    def user_context(self, profile: UserProfile | None, vector: np.ndarray | None) -> UserContext:
        """`vector`: the profile's unit vector, computed once per request by the caller."""
        dim = self.index.dim
        if profile is None or vector is None:
            return UserContext(np.empty((0, dim), np.float32), [], None, {})
        history = profile.recent_keys(self.scorer.config.max_history)
        present, vectors = self.index.vectors(history)
        return UserContext(vectors, present, vector, profile.category_affinity())

    def _score(
        self, profile: UserProfile | None, keys: list[int], vector: np.ndarray | None
    ) -> ScoredCandidates | None:
        """Score candidates with the head; explanations are built later, for the chosen few."""
        present, vectors = self.index.vectors(keys)
        entries = self.catalog.entries(present)
        keep = [i for i, e in enumerate(entries) if e is not None]
        if not keep:
            return None
        keys = [present[i] for i in keep]
        vectors = vectors[keep]
        entries = [entries[i] for i in keep]
        user = self.user_context(profile, vector)
        categories = [e.category for e in entries]
        features = candidate_features(
            user,
            vectors,
            categories,
            self.state.popularity.raw(keys),
            self.state.popularity.max,
            self.state.popularity.raw_shown(keys),
            self.state.coclick.raw(user.history_ids, keys),
        )
        # The dwell head is untrained (no dwell labels in any dataset): not used in serving.
        logits = self.scorer.click_logits(
            user.history_vectors,
            vectors,
            self.scorer.category_ids(categories),
            features[:, self._head_columns],
        )
        probability = 1.0 / (1.0 + np.exp(-logits))
        freshness = self._freshness(entries)
        w = self.config.freshness_weight
        return ScoredCandidates(
            keys=keys,
            entries=entries,
            vectors=vectors,
            features=features,
            probability=probability,
            freshness=freshness,
            scores=probability * ((1 - w) + w * freshness),
            user=user,
        )

    def _items(
        self,
        scored: ScoredCandidates,
        chosen: Sequence[int],
        sources: dict[int, list[str]],
        profile: UserProfile | None,
    ) -> list[RankedItem]:
        nearest = self._nearest_history(scored.vectors[list(chosen)], scored.user)
        means = scored.features.mean(axis=0)
        return [
            RankedItem(
                entry=scored.entries[i],
                score=float(scored.scores[i]),
                click_probability=float(scored.probability[i]),
                explanation=self._explain(
                    scored.features[i],
                    means,
                    near,
                    float(scored.freshness[i]),
                    sources.get(scored.keys[i], ["rank"]),
                    scored.entries[i],
                    profile,
                ),
            )
            for i, near in zip(chosen, nearest, strict=True)
        ]

    def _freshness(self, entries: Sequence[CatalogEntry]) -> np.ndarray:
        now = time.time()
        rate = math.log(2) / (self.config.freshness_half_life_hours * 3600)
        published = np.fromiter(map(PUBLISHED_TS, entries), np.float64, len(entries))
        with np.errstate(invalid="ignore"):  # NaN: no publication time
            freshness = np.exp(-rate * np.maximum(now - published, 0.0))
        # Unknown age: neither boosted nor buried.
        return np.where(np.isnan(published), 0.5, freshness).astype(np.float32)

    def _nearest_history(
        self, vectors: np.ndarray, user: UserContext
    ) -> list[tuple[int, float] | None]:
        if not len(user.history_ids):
            return [None] * len(vectors)
        sims = vectors @ user.history_vectors.T  # (n, L)
        best = sims.argmax(axis=1)
        return [(int(user.history_ids[b]), float(sims[i, b])) for i, b in enumerate(best)]

    def _explain(
        self,
        features: np.ndarray,
        means: np.ndarray,
        nearest: tuple[int, float] | None,
        freshness: float,
        sources: list[str],
        entry: CatalogEntry,
        profile: UserProfile | None,
    ) -> Explanation:
        value = dict(zip(FEATURE_NAMES, features.tolist(), strict=True))
        mean = dict(zip(FEATURE_NAMES, means.tolist(), strict=True))
        signals: list[str] = []
        because = None
        if nearest and nearest[1] >= self.config.explain_min_similarity:
            read = self.catalog.get(nearest[0])
            if read:
                because = (read.id, read.title, round(nearest[1], 3))
                signals.append("similar_to_history")
        if value["popularity"] > mean["popularity"] and value["popularity"] > 0:
            signals.append("popular")
        if value["ctr"] > mean["ctr"] + 1e-6:
            signals.append("high_click_through")
        if value["coclick"] > 0 and value["coclick"] >= mean["coclick"]:
            signals.append("read_by_similar_readers")
        if value["category_affinity"] > 0.2:
            signals.append("favourite_category")
        if freshness > 0.5 and entry.published_at is not None:
            signals.append("fresh")
        parts = []
        if because:
            parts.append(f"Because you read “{because[1]}”")
        readable = {
            "popular": "popular with readers",
            "high_click_through": "often clicked when shown",
            "read_by_similar_readers": "read by readers with a history like yours",
            "favourite_category": f"from {entry.category}, one of your top topics",
            "fresh": "new",
        }
        parts += [readable[s] for s in signals if s in readable]
        if not parts:
            parts.append("New to you and broadening your feed" if profile else "Popular and fresh")
        text = "; ".join(parts)
        return Explanation(text[0].upper() + text[1:], because, signals, sources)

    def _diversify(self, scored: ScoredCandidates, k: int, category_cap: float | None) -> list[int]:
        """MMR (relevance vs. similarity to what is already chosen), with at most
        `category_cap` of k per category while other categories still have candidates.
        Returns indices into `scored`, in feed order."""
        scores = scored.scores
        spread = float(scores.max() - scores.min())
        relevance = (scores - scores.min()) / spread if spread > 0 else np.ones_like(scores)
        cap = k if category_cap is None else max(1, math.ceil(k * category_cap))
        categories = np.array([e.category for e in scored.entries], dtype=object)
        lam = self.config.mmr_lambda
        # A full category's candidates would only come up one by one to be deferred: leaving
        # them out at once picks the same items, in fewer rounds. Deferred items are used only
        # when the others run out; then the item-by-item pass gives their exact order.
        chosen, capped = mmr_order(scored.vectors, relevance, categories, k, cap, lam, eager=True)
        if len(chosen) < k and capped:
            chosen, _ = mmr_order(scored.vectors, relevance, categories, k, cap, lam, eager=False)
        return chosen


def build_recommender(
    rc: RankingConfig,
    storage: Storage,
    index: ArticleIndex,
    catalog: ArticleCatalog,
    cache: ProfileCache | None = None,
) -> tuple[Recommender | None, LogSnapshot]:
    """The serving recommender over loaded articles: the head from `rc.model_dir`, live counts
    folded from the stored events, profiles read through `cache`; and where the logs were when
    the counts were folded (follow them from there). The recommender is None when no head is
    there (feed and rank then answer 503 saying what to do; search and ingest still work)."""
    if not (rc.model_dir / "config.json").exists():
        log.warning("no ranking head at %s: feed and rank are unavailable", rc.model_dir)
        return None, storage.fold_log_snapshot(None)
    scorer = ClickScorer.load(rc.model_dir)
    if scorer.config.dim != index.dim:
        raise ValueError(
            f"ranking head at {rc.model_dir} expects {scorer.config.dim}-d embeddings but the "
            f"index holds {index.dim}-d ones: retrain it with `newsroom train-ranker`"
        )
    started = time.perf_counter()
    state, snapshot = InteractionState.from_storage(storage)
    log.info("interaction state rebuilt in %.2fs", time.perf_counter() - started)
    recommender = Recommender(
        scorer,
        index,
        catalog,
        ProfileStore(storage, cache or LocalProfileCache(), index.dim),
        state,
        ProfileConfig(half_life_days=rc.profile_half_life_days),
        FeedConfig(
            freshness_half_life_hours=rc.freshness_half_life_hours,
            mmr_lambda=rc.mmr_lambda,
            category_cap=rc.category_cap,
        ),
        head_name=rc.model_dir.name,
    )
    return recommender, snapshot


def mmr_order(
    vectors: np.ndarray,
    relevance: np.ndarray,
    categories: np.ndarray,
    k: int,
    cap: int,
    lam: float,
    eager: bool,
) -> tuple[list[int], bool]:
    """Greedy MMR under a per-category cap -> (indices in feed order, whether any category
    was full). `vectors` (C, d) unit rows, `relevance` (C,) in [0, 1], `categories` (C,) object
    array. Items over their category's cap are deferred, and fill the feed only when nothing
    else is left. `eager`: drop a category's remaining candidates when it fills up instead of
    deferring them one round each (the same chosen items, but no deferred ones to fall back on).
    """
    max_sim = np.zeros(len(relevance), dtype=np.float32)
    available = np.ones(len(relevance), dtype=bool)
    left = len(relevance)
    chosen: list[int] = []
    deferred: list[int] = []
    per_category: dict[str | None, int] = {}
    capped = False
    while len(chosen) < k and left:
        mmr = np.where(available, lam * relevance - (1 - lam) * max_sim, -np.inf)
        best = int(mmr.argmax())
        available[best] = False
        left -= 1
        category = categories[best]
        if per_category.get(category, 0) >= cap:
            deferred.append(best)
            continue
        per_category[category] = per_category.get(category, 0) + 1
        chosen.append(best)
        if eager and per_category[category] >= cap:
            capped = True
            full = categories == category
            left -= int((available & full).sum())
            available &= ~full
        # (C,) one mat-vec per pick instead of a (C, C) similarity matrix up front
        max_sim = np.maximum(max_sim, vectors @ vectors[best])
    capped = capped or bool(deferred)
    return chosen + deferred[: k - len(chosen)], capped
