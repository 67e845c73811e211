"""`WritingService`: generation for the API — personalized summaries, headline variants, drafts.

It resolves articles and readers (profile → interest segment), checks the cache, and runs the
model work on the bounded generation pool. The writer underneath (`generation.writer`) only
sees text; this layer owns ids, caching and personalization context.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from core.domain import Article, clean_text
from core.errors import GenerationCancelled, InvalidInput, LimitExceeded, NotFound
from core.settings import Settings
from core.storage import Storage
from generation.cache import GenerationCache, cache_key
from generation.factory import build_model_set
from generation.pool import GenerationPool
from generation.segments import InterestSegments
from generation.writer import NewsWriter, Reader, SourceArticle
from prompts import get_template

if TYPE_CHECKING:
    from ranking.profile import UserProfile
    from retrieval.embedder import Embedder

log = logging.getLogger(__name__)

MAX_BRIEF_CHARS = 4000
MAX_HEADLINES = 10
MAX_RELATED = 8


@dataclass
class WritingDeps:
    """What the writing service borrows from the rest of the service."""

    storage: Storage
    embedder: Embedder
    profile_of: Callable[[str], UserProfile | None]
    related_to_text: Callable[[str, int], list[Article]]


class WritingService:
    def __init__(
        self, settings: Settings, deps: WritingDeps, writer: NewsWriter | None = None
    ) -> None:
        config = settings.generation
        self.deps = deps
        self.segments_dir = settings.data_dir / "segments"
        self.segments = InterestSegments.load(self.segments_dir)
        self.writer = writer or NewsWriter(
            build_model_set(config, settings.data_dir), encode=deps.embedder.encode
        )
        self.cache = GenerationCache(deps.storage, config.cache_size)
        self.pool = GenerationPool(config.workers, config.queue_size)
        self.n_segments = config.segments
        self._segments_lock = threading.Lock()

    def close(self) -> None:
        self.pool.shutdown()

    def warm(self) -> dict[str, str]:
        """Load every served model now (the first load converts; later ones take seconds)."""
        for role in ("headline", "summary", "base"):
            self.writer.models.get(role)
        return self.writer.models.loaded()

    # --- readers and segments -----------------------------------------------------------------
    def reader_for(self, user_id: str | None) -> Reader | None:
        """The user's interest segment (shared cache), else the user's own profile; None for
        an unknown user or one with no positive signal yet: they get the generic output."""
        if user_id is None:
            return None
        profile = self.deps.profile_of(user_id)
        vector = profile.vector if profile is not None else None
        if profile is None or vector is None:
            return None
        segments = self.segments
        if segments is not None and segments.centroids.shape[1] == vector.shape[0]:
            index = segments.assign(vector)
            return Reader(segments.centroids[index], segments.labels[index], f"segment-{index}")
        return Reader(vector, profile.top_categories(3), self.user_marker(user_id))

    def user_marker(self, user_id: str) -> str:
        """Segment name of outputs written for one reader alone: pseudonymous, like the rows."""
        return f"user-{self.deps.storage.pseudonym(user_id)}"

    def outputs_for_user(self, user_id: str) -> list[dict[str, Any]]:
        return [
            json.loads(p) for p in self.deps.storage.generated_matching(self.user_marker(user_id))
        ]

    def forget_user(self, user_id: str) -> None:
        marker = self.user_marker(user_id)
        self.cache.forget_where(lambda value: value.get("segment") == marker)

    def segment_list(self) -> list[dict[str, Any]]:
        """What outputs are written for: the generic reader, then each interest segment."""
        segments = self.segments
        listed: list[dict[str, Any]] = [{"id": "generic", "interests": []}]
        if segments is not None:
            listed += [
                {"id": f"segment-{i}", "interests": list(segments.labels[i])}
                for i in range(len(segments.centroids))
            ]
        return listed

    def segment_reader(self, segment: str) -> Reader | None:
        """`generic` (None) or `segment-N` as a reader; an unknown name is a NotFound."""
        if segment == "generic":
            return None
        segments = self.segments
        prefix, _, number = segment.partition("-")
        if (
            prefix != "segment"
            or not number.isdigit()
            or segments is None
            or int(number) >= len(segments.centroids)
        ):
            raise NotFound(f"no interest segment {segment!r}: GET /v1/segments lists them")
        index = int(number)
        return Reader(segments.centroids[index], list(segments.labels[index]), segment)

    def audience_for(
        self, audience: str | None, segment: str | None = None, user_id: str | None = None
    ) -> str:
        """The draft's audience line: the writer's own words, plus the interests of a chosen
        segment or reader (their segment's, as for summaries)."""
        if segment is not None and user_id is not None:
            raise InvalidInput("give an audience segment or a user_id, not both", field="segment")
        reader = self.segment_reader(segment) if segment is not None else self.reader_for(user_id)
        parts = [clean_text(audience)] if audience and clean_text(audience) else []
        if reader is not None and reader.interests:
            parts.append("readers interested in " + ", ".join(reader.interests))
        return "; ".join(parts)

    def fit_segments(self, k: int | None = None) -> InterestSegments:
        from ranking.profile import UserProfile

        vectors, categories = [], []
        for user_id, vector, state in self.deps.storage.iter_profiles():
            profile = UserProfile.from_state(user_id, vector, state)
            unit = profile.vector
            if unit is not None:
                vectors.append(unit)
                categories.append(profile.category_affinity())
        segments = InterestSegments.fit(
            np.stack(vectors) if vectors else np.zeros((0, 1)), categories, k or self.n_segments
        )
        with self._segments_lock:
            segments.save(self.segments_dir)
            self.segments = segments
        return segments

    # --- summaries ----------------------------------------------------------------------------
    def _summary_key(self, article: Article, reader: Reader | None) -> str:
        template = "personalized_summary" if reader else "summary"
        return cache_key(
            "summary",
            article.id,
            article.content_hash,
            reader.segment if reader else "generic",
            get_template(template).id,
            self.writer.models.version_of("summary"),
        )

    def cached_summary(self, user_id: str, article_id: str) -> dict[str, Any] | None:
        """The fast path, run on the event loop: no model work, no pool."""
        return self._cached_summary(article_id, self.reader_for(user_id), user_id)

    def _cached_summary(
        self, article_id: str, reader: Reader | None, user_id: str | None
    ) -> dict[str, Any] | None:
        article = self.deps.storage.get_article(article_id)
        hit = self.cache.get(self._summary_key(article, reader))
        return {**hit, "user_id": user_id, "cached": True} if hit else None

    def summary(self, user_id: str | None, article_id: str) -> dict[str, Any]:
        article = self.deps.storage.get_article(article_id)
        value, cached = self._summary_for(article, self.reader_for(user_id))
        return {**value, "user_id": user_id, "cached": cached}

    def _summary_for(self, article: Article, reader: Reader | None) -> tuple[dict[str, Any], bool]:
        key = self._summary_key(article, reader)
        hit = self.cache.get(key)
        if hit:
            return hit, True
        generated = self.writer.summary(article.title, article.body, reader)
        value = {
            "article_id": article.id,
            "segment": reader.segment if reader else "generic",
            "interests": reader.interests if reader else [],
            "summary": generated.text,
            **{k: v for k, v in generated.as_dict().items() if k != "text"},
        }
        self.cache.put(key, article.id, value)
        return value, False

    def cached_segment_summary(self, article_id: str, segment: str) -> dict[str, Any] | None:
        """The fast path of `segment_summary`: no model work."""
        return self._cached_summary(article_id, self.segment_reader(segment), None)

    def segment_summary(self, article_id: str, segment: str) -> dict[str, Any]:
        """The summary every reader of `segment` gets (editors compare them side by side)."""
        article = self.deps.storage.get_article(article_id)
        value, cached = self._summary_for(article, self.segment_reader(segment))
        return {**value, "user_id": None, "cached": cached}

    def pregenerate(self, article_ids: list[str], progress: bool = True) -> tuple[int, int]:
        """Fill the cache: each article's summary for every segment and the generic reader.
        Returns (generated, already cached); safe to interrupt and rerun."""
        from tqdm import tqdm

        readers = [self.segment_reader(s["id"]) for s in self.segment_list()]
        generated = cached = 0
        jobs = [(a, r) for a in article_ids for r in readers]
        for article_id, reader in tqdm(
            jobs, desc="pregenerate", unit="summary", disable=not progress
        ):
            _, hit = self._summary_for(self.deps.storage.get_article(article_id), reader)
            generated += not hit
            cached += hit
        return generated, cached

    # --- headlines ----------------------------------------------------------------------------
    def _headlines_key(self, article: Article, reader: Reader | None, n: int) -> str:
        if not 1 <= n <= MAX_HEADLINES:
            raise InvalidInput(f"n must be between 1 and {MAX_HEADLINES}", field="n")
        template = "personalized_headline" if reader else "headline"
        return cache_key(
            "headlines",
            article.id,
            article.content_hash,
            reader.segment if reader else "generic",
            str(n),
            get_template(template).id,
            self.writer.models.version_of("headline"),
        )

    def cached_headlines(
        self, article_id: str, user_id: str | None, n: int
    ) -> dict[str, Any] | None:
        """The fast path of `headlines`, run on the event loop: no model work, no pool, so a
        cached set is answered even while the generation queue is full."""
        article = self.deps.storage.get_article(article_id)
        hit = self.cache.get(self._headlines_key(article, self.reader_for(user_id), n))
        return {**hit, "cached": True} if hit else None

    def headlines(self, article_id: str, user_id: str | None, n: int) -> dict[str, Any]:
        article = self.deps.storage.get_article(article_id)
        reader = self.reader_for(user_id)
        template = "personalized_headline" if reader else "headline"
        key = self._headlines_key(article, reader, n)
        hit = self.cache.get(key)
        if hit:
            return {**hit, "cached": True}
        variants = self.writer.headlines(article.title, article.body, n=n, reader=reader)
        value = {
            "article_id": article.id,
            "segment": reader.segment if reader else "generic",
            "headlines": [v.as_dict() for v in variants],
            "template": get_template(template).id,
            "model": variants[0].model if variants else "",
        }
        self.cache.put(key, article.id, value)
        return {**value, "cached": False}

    # --- drafts -------------------------------------------------------------------------------
    @staticmethod
    def check_draft_request(brief: str, related_k: int) -> str:
        """Validate before any work starts (a streamed response cannot turn into a 422 later)."""
        brief = clean_text(brief)
        if not brief:
            raise InvalidInput("brief is empty", field="brief")
        if len(brief) > MAX_BRIEF_CHARS:
            raise LimitExceeded(f"brief is over {MAX_BRIEF_CHARS} characters", field="brief")
        if not 0 <= related_k <= MAX_RELATED:
            raise InvalidInput(f"related_k must be between 0 and {MAX_RELATED}", field="related_k")
        return brief

    def draft(
        self,
        brief: str,
        audience: str | None,
        related_k: int,
        on_token: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        """`cancel` set (the client went away) stops the job with `GenerationCancelled`, before
        it starts if it was still queued."""
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled("the client went away before its draft started")
        brief = self.check_draft_request(brief, related_k)
        related = self.deps.related_to_text(brief, related_k) if related_k else []
        sources = [SourceArticle(a.id, a.title, a.body) for a in related]
        result = self.writer.draft(brief, audience or "", sources, on_token=on_token, cancel=cancel)
        return {
            "audience": audience or "",
            "draft": result.draft.as_dict(),
            "headlines": [h.as_dict() for h in result.headlines],
            "source_ids": result.source_ids,
            "template": result.draft.template,
            "model": result.draft.model,
        }

    # --- pool ---------------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self.pool.submit(fn, *args)

    def stats(self) -> dict[str, Any]:
        return {
            "queue_depth": self.pool.depth,
            "cache_hit_rate": round(self.cache.hit_rate, 4),
            "segments": len(self.segments.centroids) if self.segments else 0,
            "models": self.writer.models.loaded(),
            "generated_cached": self.deps.storage.count_generated(),
        }
