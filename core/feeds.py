"""`FeedService`: a reader's feed and the ranking of a CMS's own candidates, with one head (or
the head and settings of the reader's experiment arm); each answer goes to the exposure log."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core.errors import InvalidInput, ModelUnavailable
from core.headline_tests import HeadlineTestService, ShownHeadline
from core.learning import (
    INTERLEAVED,
    Assignment,
    ExperimentService,
    ExposureLog,
    ModelRegistry,
    TopSlotExploration,
    arm_recommender,
    logged_feed,
)
from core.learning_store import LoggedFeed, ModelVersion
from core.sponsored import SponsoredItem, SponsoredService
from ranking.interleaving import TEAMS, team_draft
from ranking.recommend import Feed, RankedItem, Recommender
from ranking.scorer import ClickScorer


@dataclass(slots=True)
class FeedWithAds:
    feed: Feed
    sponsored: list[SponsoredItem]  # each at its `position` in the final feed
    feed_id: str | None = None  # its row in the exposure log
    assignment: Assignment | None = None
    # article id -> the tested headline shown in place of its title (usually empty)
    headlines: dict[str, ShownHeadline] = field(default_factory=dict)


@dataclass(slots=True)
class Learning:
    """What a feed answer feeds into: the exposure log, exploration, the running experiment."""

    exposures: ExposureLog
    exploration: TopSlotExploration
    experiments: ExperimentService
    registry: ModelRegistry
    committed: ClickScorer | None  # the head in `ranking.model_dir` (arm "committed")

    def store_versions(self) -> list[ModelVersion]:
        return self.registry.store.versions()


@dataclass(slots=True)
class RankResult:
    items: list[RankedItem]
    unknown: list[str]


class FeedService:
    def __init__(
        self,
        recommender: Recommender | None,
        key_of: Callable[[str], int | None],
        check_k: Callable[[int], None],
        sponsored: SponsoredService,
        learning: Learning,
        pseudonym: Callable[[str], str],
    ) -> None:
        self.recommender = recommender
        self.sponsored = sponsored
        self.learning = learning
        self.pseudonym = pseudonym
        self.key_of = key_of
        self.check_k = check_k
        # Arm recommenders of the running experiment, rebuilt when it or the live counts change
        self._arms: dict[tuple[str, str], Recommender] = {}
        self.headlines: HeadlineTestService | None = None  # set by the service
        self._draft_rng = np.random.default_rng()
        self._draft_lock = threading.Lock()  # numpy generators are not thread-safe

    def _require_recommender(self) -> Recommender:
        if self.recommender is None:
            raise ModelUnavailable(
                "no ranking head is loaded: train one with `newsroom train-ranker` or set "
                "NEWSROOM_RANKING__MODEL_DIR"
            )
        return self.recommender

    def feed(
        self, user_id: str, k: int, category: str | None, exclude_read: bool, ads: int = 0
    ) -> FeedWithAds:
        """Scored on the caller's thread (the API's event loop: a feed is ~3 ms of GIL-bound
        Python, and a thread hop costs more than it saves). Its only I/O is the reader's profile:
        one Redis round trip in shared mode, or a database read on a cold local cache."""
        self.check_k(k)
        base = self._require_recommender()
        assigned = self.learning.experiments.assign(user_id)
        category = category.lower() if category else None
        if assigned and "interleave" in assigned[1]:
            feed, logged = self._interleaved(
                base, assigned[0], assigned[1], user_id, k, category, exclude_read
            )
        else:
            recommender = self._arm(base, *assigned) if assigned else base
            feed = recommender.feed(user_id, k, category, exclude_read)
            explored = self.learning.exploration.apply(feed.items)
            feed.items = explored.items
            logged = logged_feed(
                self.pseudonym(user_id),
                "feed",
                feed.items,
                recommender.head_name,
                explored,
                (assigned[0].experiment_id, assigned[0].arm) if assigned else None,
            )
        self.learning.exposures.record(logged)
        sponsored = self.sponsored.place(user_id, feed.profile, feed.items, ads) if ads else []
        feed_id = logged.feed_id if self.learning.exposures.config.log_exposures else None
        shown = (
            self.headlines.for_feed(user_id, [i.entry.id for i in feed.items])
            if self.headlines is not None
            else {}
        )
        return FeedWithAds(
            feed, sponsored, feed_id, assigned[0] if assigned else None, headlines=shown
        )

    def _interleaved(
        self,
        base: Recommender,
        assignment: Assignment,
        arms: dict,
        user_id: str,
        k: int,
        category: str | None,
        exclude_read: bool,
    ) -> tuple[Feed, LoggedFeed]:
        """Both arms rank the reader's feed; team draft merges them and every item is logged
        with the team (arm) that contributed it. No ε-exploration here: the coin flips of the
        draft already randomise the first slot (propensity 1/2 when the arms' first items
        differ), and exploring on top would blur the credit."""
        first, second = arms["interleave"]
        feeds = [
            self._arm(base, Assignment(assignment.experiment_id, arm["name"]), arm).feed(
                user_id, k, category, exclude_read
            )
            for arm in (first, second)
        ]
        by_team = {
            team: {i.entry.key: i for i in f.items} for team, f in zip(TEAMS, feeds, strict=True)
        }
        rankings = [[i.entry.key for i in f.items] for f in feeds]
        with self._draft_lock:
            merged = team_draft(rankings[0], rankings[1], k, self._draft_rng)
        feed = feeds[0]
        feed.items = [
            by_team[team][key] for key, team in zip(merged.items, merged.team, strict=True)
        ]
        same_first = bool(rankings[0] and rankings[1] and rankings[0][0] == rankings[1][0])
        logged = logged_feed(
            self.pseudonym(user_id),
            "feed",
            feed.items,
            INTERLEAVED,
            experiment=(assignment.experiment_id, assignment.arm),
            teams=merged.team,
            top_propensity=1.0 if same_first else 0.5,
        )
        return feed, logged

    def _arm(self, base: Recommender, assignment: Assignment, arm: dict) -> Recommender:
        key = (assignment.experiment_id, assignment.arm)
        cached = self._arms.get(key)
        # A variant shares the base's counts object: rebuilt when the base got new ones
        # (a retention purge) or a new champion head.
        if (
            cached is None
            or cached.state is not base.state
            or (arm.get("ranker_version") is None and cached.scorer is not base.scorer)
        ):
            if len(self._arms) > 16:
                self._arms.clear()
            cached = arm_recommender(base, arm, self.learning.registry, self.learning.committed)
            self._arms[key] = cached
        return cached

    def rank(self, user_id: str, article_ids: list[str]) -> RankResult:
        recommender = self._require_recommender()
        keys, unknown = [], []
        for article_id in dict.fromkeys(article_ids):
            key = self.key_of(article_id)
            if key is None or recommender.catalog.get(key) is None:
                unknown.append(article_id)
            else:
                keys.append(key)
        if not keys:
            raise InvalidInput("none of article_ids exists", field="article_ids")
        items = recommender.rank(user_id, keys)
        self.learning.exposures.record(
            logged_feed(self.pseudonym(user_id), "rank", items, recommender.head_name)
        )
        return RankResult(items, unknown)
