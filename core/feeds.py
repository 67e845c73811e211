"""`FeedService`: a reader's feed and the ranking of a CMS's own candidates, with one head."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.errors import InvalidInput, ModelUnavailable
from core.sponsored import SponsoredItem, SponsoredService
from ranking.recommend import Feed, RankedItem, Recommender


@dataclass(slots=True)
class FeedWithAds:
    feed: Feed
    sponsored: list[SponsoredItem]  # each at its `position` in the final feed


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
    ) -> None:
        self.recommender = recommender
        self.sponsored = sponsored
        self.key_of = key_of
        self.check_k = check_k

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
        recommender = self._require_recommender()
        feed = recommender.feed(user_id, k, category.lower() if category else None, exclude_read)
        sponsored = self.sponsored.place(user_id, feed.profile, feed.items, ads) if ads else []
        return FeedWithAds(feed, sponsored)

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
        return RankResult(recommender.rank(user_id, keys), unknown)
