"""`WritingService`: generation for the API — personalized summaries, headline variants, drafts.

It resolves articles and readers (profile → interest segment), answers from the cache when it
can (one lookup per request, before anything is queued: a cached output is never refused by a
full queue), and otherwise sends a self-contained job to the generation queue (`live`: a pool
in this process, or Redis workers) and caches what comes back. The writer underneath
(`generation.writer`) only sees text.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from core.domain import Article, clean_text
from core.errors import InvalidInput, LimitExceeded, NotFound
from core.settings import Settings
from core.storage import Storage
from generation.cache import GenerationCache, cache_key, reader_segment
from generation.jobs import GenerationJob, JobRunner, reader_args
from generation.queue import GenerationQueue, JobEvent
from generation.segments import InterestSegments
from generation.writer import ModelSet, Reader
from prompts import get_template

if TYPE_CHECKING:
    from core.service import NewsroomService
    from ranking.profile import UserProfile

log = logging.getLogger(__name__)

MAX_BRIEF_CHARS = 4000
MAX_HEADLINES = 10
MAX_RELATED = 8
MAX_SOURCES = 8


@dataclass(frozen=True, slots=True)
class DraftRequest:
    """A validated draft request, resolved to the job that writes it."""

    audience: str
    job: GenerationJob


class WritingService:
    def __init__(
        self,
        storage: Storage,
        models: ModelSet,
        cache: GenerationCache,
        queue: GenerationQueue,
        profile_of: Callable[[str], UserProfile | None],
        related_to_text: Callable[[str, int], list[Article]],
        segments_dir: Any,
        n_segments: int = 8,
        batch_size: int = 1,
        prompt_version_of: Callable[[str], str | None] = lambda _: None,
    ) -> None:
        """`batch_size`: summaries per pregeneration job (decoded as one batch).
        `prompt_version_of(user_id)`: the template version the reader's experiment arm serves
        (None: the default)."""
        self.prompt_version_of = prompt_version_of
        self.storage = storage
        self.models = models  # versions for cache keys; loaded only where jobs run
        self.cache = cache
        self.queue = queue
        self.profile_of = profile_of
        self.related_to_text = related_to_text
        self.segments_dir = segments_dir
        self.segments = InterestSegments.load(segments_dir)
        self.n_segments = n_segments
        self.batch_size = batch_size
        self._segments_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, service: NewsroomService) -> WritingService:
        from generation.factory import build_batcher, build_model_set
        from generation.writer import NewsWriter

        models = build_model_set(settings.generation, settings.data_dir)
        runner: list[JobRunner] = []
        runner_lock = threading.Lock()

        def local_runner() -> JobRunner:
            with runner_lock:
                if not runner:
                    writer = NewsWriter(
                        models,
                        service.articles.embedder.encode,
                        batcher=build_batcher(settings.generation),
                    )
                    runner.append(JobRunner(writer))
                return runner[0]

        recommender = service.recommender
        return cls(
            service.storage,
            models,
            service.live.generation_cache(service.storage, settings.generation.cache_size),
            service.live.generation_queue(settings, local_runner),
            (lambda user: recommender.profiles.get(user)) if recommender else (lambda _: None),
            service.articles.related_to_text,
            settings.data_dir / "segments",
            settings.generation.segments,
            batch_size=settings.generation.batch_size,
            prompt_version_of=service.experiments.prompt_version_of,
        )

    def close(self) -> None:
        self.queue.close()

    def warm(self) -> dict[str, str]:
        """Load every served model now (the first load converts; later ones take seconds)."""
        for role in ("headline", "summary", "draft", "base"):
            self.models.get(role)
        return self.models.loaded()

    def model_versions(self) -> dict[str, str]:
        roles = ("headline", "summary", "draft", "base")
        return {role: self.models.version_of(role) for role in roles}

    # --- readers and segments -----------------------------------------------------------------
    def reader_for(self, user_id: str | None) -> Reader | None:
        """The user's interest segment (shared cache), else the user's own profile; None for
        an unknown user or one with no positive signal yet: they get the generic output."""
        if user_id is None:
            return None
        profile = self.profile_of(user_id)
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
        return reader_segment(self.storage.pseudonym(user_id))

    def outputs_for_user(self, user_id: str) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.storage.generated_matching(self.user_marker(user_id))]

    def forget_user(self, user_id: str) -> None:
        self.cache.forget_segment(self.user_marker(user_id))

    def forget_article(self, article_id: str) -> None:
        self.cache.forget_article(article_id)

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
        from ranking.profile_store import to_profile

        vectors, categories = [], []
        for stored in self.storage.iter_profiles():
            profile = to_profile(stored)
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
    def _summary_key(
        self, article: Article, reader: Reader | None, prompt_version: str | None = None
    ) -> str:
        template = "personalized_summary" if reader else "summary"
        return cache_key(
            "summary",
            article.id,
            article.content_hash,
            reader.segment if reader else "generic",
            get_template(template, prompt_version).id,
            self.models.version_of("summary"),
        )

    def _summary_job(
        self, article: Article, reader: Reader | None, prompt_version: str | None = None
    ) -> GenerationJob:
        args = {"title": article.title, "body": article.body, "reader": reader_args(reader)}
        if prompt_version is not None:
            args["prompt_version"] = prompt_version
        return GenerationJob("summary", args, self.models.version_of("summary"))

    def _summary_value(
        self, article: Article, reader: Reader | None, generated: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "article_id": article.id,
            "segment": reader.segment if reader else "generic",
            "interests": reader.interests if reader else [],
            "summary": generated["text"],
            **{k: v for k, v in generated.items() if k != "text"},
        }

    async def _summary(
        self, article: Article, reader: Reader | None, prompt_version: str | None = None
    ) -> tuple[dict, bool]:
        key = self._summary_key(article, reader, prompt_version)
        hit = self.cache.get(key)
        if hit is not None:
            return hit, True
        generated = await self.queue.run(self._summary_job(article, reader, prompt_version))
        value = self._summary_value(article, reader, generated)
        self.cache.put(key, article.id, value)
        return value, False

    async def summary(self, user_id: str | None, article_id: str) -> dict[str, Any]:
        article = self.storage.get_article(article_id)
        version = self.prompt_version_of(user_id) if user_id else None
        value, cached = await self._summary(article, self.reader_for(user_id), version)
        return {**value, "user_id": user_id, "cached": cached}

    async def segment_summary(self, article_id: str, segment: str) -> dict[str, Any]:
        """The summary every reader of `segment` gets (editors compare them side by side)."""
        reader = self.segment_reader(segment)
        article = self.storage.get_article(article_id)
        value, cached = await self._summary(article, reader)
        return {**value, "user_id": None, "cached": cached}

    def pregenerate(self, article_ids: list[str], progress: bool = True) -> tuple[int, int]:
        """Fill the cache: each article's summary for every segment and the generic reader,
        `batch_size` summaries per job (one decoding batch). Returns (generated, already
        cached); each batch is stored as it completes, so an interrupted run loses at most one
        batch and a rerun skips what is cached."""
        from tqdm import tqdm

        readers = [self.segment_reader(s["id"]) for s in self.segment_list()]
        jobs = [(a, r) for a in article_ids for r in readers]
        generated = cached = 0
        with tqdm(total=len(jobs), desc="pregenerate", unit="summary", disable=not progress) as bar:
            todo: list[tuple[Article, Reader | None, str]] = []
            for article_id, reader in jobs:
                article = self.storage.get_article(article_id)
                key = self._summary_key(article, reader)
                if self.cache.get(key) is None:
                    todo.append((article, reader, key))
                else:
                    cached += 1
                    bar.update(1)
            for start in range(0, len(todo), self.batch_size):
                batch = todo[start : start + self.batch_size]
                self._pregenerate_batch(batch)
                generated += len(batch)
                bar.update(len(batch))
        return generated, cached

    def _pregenerate_batch(self, todo: list[tuple[Article, Reader | None, str]]) -> None:
        items = [{"title": a.title, "body": a.body, "reader": reader_args(r)} for a, r, _ in todo]
        job = GenerationJob("summaries", {"items": items}, self.models.version_of("summary"))
        results = self.queue.run_blocking(job)
        for (article, reader, key), result in zip(todo, results, strict=True):
            self.cache.put(key, article.id, self._summary_value(article, reader, result))

    # --- headlines ----------------------------------------------------------------------------
    async def headlines(self, article_id: str, user_id: str | None, n: int) -> dict[str, Any]:
        if not 1 <= n <= MAX_HEADLINES:
            raise InvalidInput(f"n must be between 1 and {MAX_HEADLINES}", field="n")
        article = self.storage.get_article(article_id)
        reader = self.reader_for(user_id)
        prompt_version = self.prompt_version_of(user_id) if user_id else None
        template = get_template(
            "personalized_headline" if reader else "headline", prompt_version
        ).id
        version = self.models.version_of("headline")
        key = cache_key(
            "headlines",
            article.id,
            article.content_hash,
            reader.segment if reader else "generic",
            str(n),
            template,
            version,
        )
        hit = self.cache.get(key)
        if hit is not None:
            return {**hit, "cached": True}
        args = {"title": article.title, "body": article.body, "n": n, "reader": reader_args(reader)}
        if prompt_version is not None:
            args["prompt_version"] = prompt_version
        job = GenerationJob("headlines", args, version)
        variants = await self.queue.run(job)
        value = {
            "article_id": article.id,
            "segment": reader.segment if reader else "generic",
            "headlines": variants,
            "template": template,
            "model": variants[0]["model"] if variants else "",
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

    def _draft_sources(self, brief: str, related_k: int, source_ids: list[str]) -> list[Article]:
        """The writer's chosen sources (each must exist: 422 naming it), then `related_k`
        articles nearest the brief that are not among them."""
        if len(source_ids) > MAX_SOURCES:
            raise InvalidInput(f"at most {MAX_SOURCES} sources", field="sources")
        chosen: list[Article] = []
        for n, article_id in enumerate(dict.fromkeys(source_ids)):
            try:
                chosen.append(self.storage.get_article(article_id))
            except NotFound:
                raise InvalidInput(
                    f"source {article_id!r} does not exist: ingest it first",
                    field=f"sources[{n}]",
                ) from None
        if related_k:
            known = {a.id for a in chosen}
            related = self.related_to_text(brief, related_k + len(known))
            chosen += [a for a in related if a.id not in known][:related_k]
        return chosen

    def draft_request(
        self,
        brief: str,
        audience: str | None,
        related_k: int,
        source_ids: list[str] | None = None,
    ) -> DraftRequest:
        """Validate, find the sources, and build the job (before any response starts)."""
        brief = self.check_draft_request(brief, related_k)
        sources = self._draft_sources(brief, related_k, source_ids or [])
        job = GenerationJob(
            "draft",
            {
                "brief": brief,
                "audience": audience or "",
                "sources": [{"id": a.id, "title": a.title, "body": a.body} for a in sources],
            },
            self.models.version_of("draft"),
        )
        self.queue.check_capacity()
        return DraftRequest(audience or "", job)

    async def redo_sentence(
        self,
        brief: str,
        audience: str | None,
        source_ids: list[str],
        sentences: list[str],
        index: int,
    ) -> dict[str, Any]:
        """Another sentence in place of `sentences[index]`, checked and cited like the draft's."""
        brief = self.check_draft_request(brief, 0)
        if not source_ids:
            raise InvalidInput("name the draft's sources (its source_ids)", field="sources")
        if not 0 <= index < len(sentences):
            raise InvalidInput(f"index must be between 0 and {len(sentences) - 1}", field="index")
        sources = self._draft_sources(brief, 0, source_ids)
        job = GenerationJob(
            "draft_sentence",
            {
                "brief": brief,
                "audience": audience or "",
                "sources": [{"id": a.id, "title": a.title, "body": a.body} for a in sources],
                "sentences": [clean_text(t) for t in sentences],
                "index": index,
            },
            self.models.version_of("draft"),
        )
        return await self.queue.run(job)

    def draft_value(self, request: DraftRequest, result: dict[str, Any]) -> dict[str, Any]:
        return {
            "audience": request.audience,
            "draft": result["draft"],
            "sentences": result["sentences"],
            "headlines": result["headlines"],
            "source_ids": result["source_ids"],
            "template": result["draft"]["template"],
            "model": result["draft"]["model"],
        }

    async def draft(self, request: DraftRequest) -> dict[str, Any]:
        return self.draft_value(request, await self.queue.run(request.job))

    def draft_events(self, request: DraftRequest) -> AsyncIterator[JobEvent]:
        """The draft's job events (tokens, a restart if a worker was lost, then done/error)."""
        return self.queue.events(request.job)

    def stats(self) -> dict[str, Any]:
        return {
            "queue_depth": self.queue.depth,
            "workers": self.queue.workers(),
            "cache_hit_rate": round(self.cache.hit_rate, 4),
            "segments": len(self.segments.centroids) if self.segments else 0,
            "models": self.models.loaded() or self.model_versions(),
            "generated_cached": self.storage.count_generated(),
        }
