"""`NewsroomService`: the one object the API and the CLI talk to. It composes the stages
(retrieval now; ranking and generation plug in beside it) and owns their lifecycle."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from core.domain import (
    Article,
    ArticleDraft,
    Event,
    EventDraft,
    IngestReport,
    SearchHit,
    as_utc,
    utcnow,
)
from core.errors import InvalidInput, LimitExceeded, ModelUnavailable, UnknownUser
from core.reports import read_reports
from core.settings import Settings
from core.storage import Storage
from core.writing import WritingDeps, WritingService
from ranking.profile import EVENT_TYPES, UserProfile
from ranking.recommend import Feed, RankedItem, Recommender
from ranking.workers import FeedWorkers, ReplicaSpec, WorkerLost
from retrieval.catalog import ArticleCatalog, CatalogRow
from retrieval.embedder import Embedder
from retrieval.index import ArticleIndex, IndexConfig
from retrieval.ingest import ArticleIngestor, ArticleLimits
from retrieval.sync import SyncReport, open_index

log = logging.getLogger(__name__)


@dataclass(slots=True)
class EventReport:
    accepted: int
    duplicates: int


@dataclass(slots=True)
class RankResult:
    items: list[RankedItem]
    unknown: list[str]


@dataclass(slots=True)
class Health:
    articles: int
    index_size: int
    index_kind: str
    model: str
    database: str
    ranker: str | None
    events: int
    feed_workers: int


EXAMPLE_READERS_FILE = "example_readers.json"


def user_id_key(settings: Settings) -> bytes:
    """The pseudonymisation key: from settings, else created once beside the data (0600)."""
    if settings.user_id_secret is not None:
        return settings.user_id_secret.get_secret_value().encode()
    path = settings.data_dir / "user_id_secret"
    if not path.is_file():
        import os
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return path.read_bytes().strip()
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_bytes().strip()


class NewsroomService:
    def __init__(
        self,
        storage: Storage,
        embedder: Embedder,
        index: ArticleIndex,
        index_path: Path,
        limits: ArticleLimits,
        catalog: ArticleCatalog | None = None,
        recommender_factory: RecommenderFactory | None = None,
        max_k: int = 100,
        max_bulk: int = 1000,
        max_bulk_events: int = 5000,
        autosave_changes: int = 20_000,
    ) -> None:
        self.storage = storage
        self.embedder = embedder
        self.index = index
        self.index_path = index_path
        self.max_k = max_k
        self.max_bulk = max_bulk
        self.max_bulk_events = max_bulk_events
        if catalog is None:
            catalog = ArticleCatalog()
            catalog.upsert(storage.catalog_rows())
        self.catalog = catalog
        self.ingestor = ArticleIngestor(storage, embedder, index, catalog, limits)
        self.ingestor.on_upsert = self._upserted
        self.recommender: Recommender | None = (
            recommender_factory(self) if recommender_factory else None
        )
        self._write_lock = threading.Lock()  # one writer: upserts of one id never race
        self._unsaved_changes = 0
        self._autosave_changes = autosave_changes
        self.sync_report: SyncReport | None = None
        self.writing: WritingService | None = None  # set by from_settings (or a test)
        # Where the quality dashboard finds evaluation reports (set by from_settings).
        self.report_dirs: tuple[Path, ...] = ()
        self.example_readers_path: Path | None = None
        # Feed replicas (`start_feed_workers`): every change below is sent to them, in order,
        # inside the write lock and before the write returns.
        self.feed_workers: FeedWorkers | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, progress: bool = False, embedder: Embedder | None = None
    ) -> NewsroomService:
        """Open storage, load the embedder (unless one is shared in) and the index."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        storage = Storage(settings.resolved_database_url, user_id_key(settings))
        rc = settings.retrieval
        if embedder is None:
            embedder = Embedder(rc.model_path(), rc.batch_size, rc.lead_words, rc.query_cache_size)
        index_config = IndexConfig(
            hnsw_threshold=rc.hnsw_threshold,
            hnsw_m=rc.hnsw_m,
            hnsw_ef_construction=rc.hnsw_ef_construction,
            hnsw_ef_search=rc.hnsw_ef_search,
        )
        started = time.perf_counter()
        index, report = open_index(
            storage, settings.index_path, embedder.name, embedder.dim, index_config, progress
        )
        log.info(
            "index ready in %.2fs: %d vectors (%s), snapshot %s",
            time.perf_counter() - started,
            len(index),
            index.kind,
            "reconciled" if report.loaded_snapshot else "rebuilt",
        )
        limits = ArticleLimits(settings.limits.max_title_chars, settings.limits.max_body_chars)
        service = cls(
            storage,
            embedder,
            index,
            settings.index_path,
            limits,
            recommender_factory=RecommenderFactory(settings),
            max_k=settings.limits.max_k,
            max_bulk=settings.limits.max_bulk_articles,
            max_bulk_events=settings.limits.max_bulk_events,
        )
        service.sync_report = report
        if report.changed:
            service.save_index()
        service.writing = WritingService(settings, service.writing_deps())
        service.report_dirs = (settings.ranking.model_dir, settings.reports_dir)
        service.example_readers_path = settings.data_dir / EXAMPLE_READERS_FILE
        return service

    def writing_deps(self) -> WritingDeps:
        def profile_of(user_id: str) -> UserProfile | None:
            return self.recommender.profiles.get(user_id) if self.recommender else None

        def related_to_text(text: str, k: int) -> list[Article]:
            return [hit.article for hit in self._hits(self.embedder.encode_query(text), k)]

        return WritingDeps(self.storage, self.embedder, profile_of, related_to_text)

    def require_writing(self) -> WritingService:
        if self.writing is None:
            raise ModelUnavailable("generation is not configured on this server")
        return self.writing

    # --- lifecycle ------------------------------------------------------------------------
    def save_index(self) -> None:
        with self._write_lock:
            self.index.save(self.index_path, self.embedder.name)
            self._unsaved_changes = 0

    def start_feed_workers(
        self, settings: Settings, render: Callable[[Feed], bytes]
    ) -> FeedWorkers | None:
        """Start `settings.ranking.feed_workers` replica processes (blocking until loaded) that
        answer `render(feed)`; `render` must be importable by name (it is sent to them).
        Call before any write is accepted; returns None when off or nothing to score with."""
        count = settings.ranking.feed_workers
        if count < 1 or self.recommender is None:
            return None
        if self._unsaved_changes or not self.index_path.exists():
            self.save_index()  # replicas load the snapshot: it must hold what this process does
        spec = ReplicaSpec(
            database_url=settings.resolved_database_url,
            user_id_key=user_id_key(settings),
            index_path=self.index_path,
            model_name=self.embedder.name,
            dim=self.embedder.dim,
            index_config=self.index.config,
            ranking=settings.ranking,
            render=render,
        )
        workers = FeedWorkers(spec, count)
        workers.start()
        self.feed_workers = workers
        return workers

    def close(self) -> None:
        if self.feed_workers is not None:
            self.feed_workers.close()
        if self.writing is not None:
            self.writing.close()
        if self._unsaved_changes:
            self.save_index()
        self.storage.close()

    def _upserted(
        self, keys: np.ndarray, vectors: np.ndarray, hashes: list[str], rows: list[CatalogRow]
    ) -> None:
        # Called by the ingestor inside the write lock, after the commit and the index update.
        if self.feed_workers is not None:
            self.feed_workers.articles(keys, vectors, hashes, rows)

    def _note_changes(self, count: int) -> None:
        self._unsaved_changes += count
        if self._unsaved_changes >= self._autosave_changes:
            self.index.save(self.index_path, self.embedder.name)
            self._unsaved_changes = 0

    # --- articles -------------------------------------------------------------------------
    def ingest(self, drafts: Iterable[ArticleDraft]) -> IngestReport:
        drafts = list(drafts)
        if len(drafts) > self.max_bulk:
            raise LimitExceeded(
                f"{len(drafts)} articles in one request; the limit is {self.max_bulk}: "
                "split the batch",
                field="articles",
            )
        with self._write_lock:
            report = self.ingestor.ingest(drafts)
            self._note_changes(report.embedded)
        return report

    def ingest_stream(
        self, drafts: Iterable[ArticleDraft], batch_size: int = 1024, window: int = 8192
    ) -> Iterable[IngestReport]:
        """Offline ingest of any number of drafts, one report per batch (for progress bars).
        Drafts that break a limit are skipped with a warning instead of failing the run.

        Within a window of drafts, batches are formed from texts of similar length: the encoder
        pads every text of a batch to its longest, so length-sorted batches waste little."""
        from retrieval.embedder import article_text
        from retrieval.ingest import chunked, normalise_draft

        lead = self.embedder.lead_words
        for part in chunked(drafts, window):
            latest: dict[str, ArticleDraft] = {}
            for draft in part:
                try:
                    clean = normalise_draft(draft, self.ingestor.limits)
                except InvalidInput as exc:
                    log.warning("skipped article %s: %s", draft.id, exc.message)
                    continue
                # Last write wins for a repeated id, as across two requests.
                latest[clean.id or clean.generated_id()] = clean
            ordered = sorted(
                latest.items(),
                key=lambda item: len(article_text(item[1].title, item[1].body, lead)),
            )
            for batch in chunked(ordered, batch_size):
                with self._write_lock:
                    report = self.ingestor.upsert_normalised(dict(batch))
                    self._note_changes(report.embedded)
                yield report

    def put_article(self, article_id: str, draft: ArticleDraft) -> tuple[Article, bool]:
        """Create or replace the article `article_id`; returns (article, created)."""
        draft.id = article_id
        report = self.ingest([draft])
        return self.storage.get_article(article_id), bool(report.created)

    def get_article(self, article_id: str) -> Article:
        return self.storage.get_article(article_id)

    def delete_article(self, article_id: str) -> None:
        with self._write_lock:
            key = self.storage.delete_article(article_id)
            self.index.remove(np.array([key], dtype=np.int64))
            self.catalog.remove(key)
            self._note_changes(1)
            if self.feed_workers is not None:
                self.feed_workers.remove_article(key)
        if self.writing is not None:
            self.writing.cache.forget_article(article_id)

    # --- readers: export, deletion, retention ---------------------------------------------
    def export_user(self, user_id: str) -> dict:
        """Everything stored about a reader: events, profile, outputs written for them alone;
        `UnknownUser` (404, like deletion) when nothing is stored."""
        profile = self.recommender.profiles.get(user_id) if self.recommender else None
        generated = []
        if self.writing is not None:
            generated = self.writing.outputs_for_user(user_id)
        events = self.storage.user_events(user_id)
        if profile is None and not events and not generated:
            raise UnknownUser(user_id)
        return {
            "user_id": user_id,
            "events": events,
            "profile": None
            if profile is None
            else {
                "n_events": profile.n_events,
                "categories": profile.category_affinity(),
                "history": [
                    a.id for a in self.storage.articles_by_keys(list(profile.history)).values()
                ],
                "dismissed": [
                    a.id for a in self.storage.articles_by_keys(list(profile.dismissed)).values()
                ],
            },
            "generated": generated,
        }

    def delete_user(self, user_id: str) -> dict[str, int]:
        """Remove the reader's events, profile, per-reader outputs and their share of the live
        popularity and co-click counts (rebuilt from the remaining events)."""
        marker = self.writing.user_marker(user_id) if self.writing else "\x00"
        with self._write_lock:
            removed = self.storage.delete_user(user_id, marker)
            if self.recommender is not None:
                self.recommender.profiles.forget([user_id])
                self.recommender.reset_interactions()
                if self.feed_workers is not None:
                    self.feed_workers.reset_interactions([user_id])
            if self.writing is not None:
                self.writing.forget_user(user_id)
        if not removed["events"] and not removed["profiles"]:
            raise UnknownUser(user_id)
        return removed

    def purge_expired_events(self, retention_days: float) -> int:
        """Delete events older than the retention, and what profiles keep of them: history,
        read and dismissed entries, and their count; a profile left without events goes too.
        Returns the events deleted."""
        cutoff = utcnow() - timedelta(days=retention_days)

        def revise(
            pseudonym: str, vector: bytes, state: str, lost: int
        ) -> tuple[bytes, str] | None:
            profile = UserProfile.from_state(pseudonym, vector, state)
            profile.forget_before(cutoff.timestamp(), lost)
            return (vector, profile.state_json()) if profile.n_events else None

        with self._write_lock:
            removed = self.storage.delete_events_before(cutoff, revise)
            if removed and self.recommender is not None:
                # Cached profiles are keyed by reader id, the stored ones by pseudonym: forget
                # them all (they reload from the database as feeds ask for them).
                self.recommender.profiles.clear()
                self.recommender.reset_interactions()
                if self.feed_workers is not None:
                    self.feed_workers.reset_interactions(None)
        return removed

    # --- events, feed, rank -----------------------------------------------------------------
    def _require_recommender(self) -> Recommender:
        if self.recommender is None:
            raise ModelUnavailable(
                "no ranking head is loaded: train one with `newsroom train-ranker` or set "
                "NEWSROOM_RANKING__MODEL_DIR"
            )
        return self.recommender

    def record_events(self, drafts: list[EventDraft]) -> EventReport:
        """Store events (idempotent by the reader's event_id) and update profiles in the same
        transaction."""
        recommender = self._require_recommender()
        if len(drafts) > self.max_bulk_events:
            raise LimitExceeded(
                f"{len(drafts)} events in one request; the limit is {self.max_bulk_events}",
                field="events",
            )
        now = utcnow()
        events: list[Event] = []
        for n, draft in enumerate(drafts):
            where = f"events[{n}]." if len(drafts) > 1 else ""
            if draft.type not in EVENT_TYPES:
                raise InvalidInput(
                    f"unknown event type {draft.type!r}; use one of {', '.join(EVENT_TYPES)}",
                    field=f"{where}type",
                )
            key = self.catalog.key_of(draft.article_id)
            if key is None:
                raise InvalidInput(
                    f"article {draft.article_id!r} does not exist; ingest it before sending "
                    "events about it",
                    field=f"{where}article_id",
                )
            ts = draft.ts or now
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=now.tzinfo)
            if (ts - now).total_seconds() > 300:
                raise InvalidInput("ts is in the future", field=f"{where}ts")
            events.append(
                Event(
                    event_id=draft.event_id or uuid.uuid4().hex,
                    user_id=draft.user_id,
                    article_id=draft.article_id,
                    article_key=key,
                    type=draft.type,
                    ts=ts,
                    dwell_ms=draft.dwell_ms,
                )
            )
        with self._write_lock:
            # An event id is the reader's own: unique per (reader, id), not across readers.
            known = self.storage.known_events([(e.user_id, e.event_id) for e in events])
            fresh: dict[tuple[str, str], Event] = {}
            for event in events:
                key = (event.user_id, event.event_id)
                if key not in known:
                    fresh.setdefault(key, event)
            new = list(fresh.values())
            # New copies of the profiles: the cached ones change only once the events are
            # stored (if the write fails, the copies are dropped and nothing changed).
            profiles = recommender.apply_events(new)
            self.storage.record_events(
                new, [(p.user_id, p.vector_sum.tobytes(), p.state_json()) for p in profiles]
            )
            interactions = recommender.commit_events(new, profiles)
            if self.feed_workers is not None and new:
                self.feed_workers.events(interactions, [p.user_id for p in profiles])
        return EventReport(accepted=len(new), duplicates=len(events) - len(new))

    async def feed_json(
        self,
        user_id: str,
        k: int,
        category: str | None,
        exclude_read: bool,
        render: Callable[[Feed], bytes],
    ) -> bytes:
        """`render(feed(...))`, scored and rendered by a replica process when there are any
        (they render with the function given to `start_feed_workers`), else here, on the
        caller's thread: the event loop's, for the API. A replica that dies mid-request is
        covered by scoring here: this process always holds the full state."""
        self._check_k(k)
        recommender = self._require_recommender()
        category = category.lower() if category else None
        workers = self.feed_workers
        if workers is not None and workers.live:
            try:
                return await workers.feed(user_id, k, category, exclude_read)
            except WorkerLost as exc:
                log.warning("feed scored in-process: %s", exc)
        return render(recommender.feed(user_id, k, category, exclude_read))

    def rank(self, user_id: str, article_ids: list[str]) -> RankResult:
        recommender = self._require_recommender()
        keys, unknown = [], []
        for article_id in dict.fromkeys(article_ids):
            key = self.catalog.key_of(article_id)
            if key is None:
                unknown.append(article_id)
            else:
                keys.append(key)
        if not keys:
            raise InvalidInput("none of article_ids exists", field="article_ids")
        return RankResult(recommender.rank(user_id, keys), unknown)

    # --- retrieval ------------------------------------------------------------------------
    def _check_k(self, k: int) -> None:
        if not 1 <= k <= self.max_k:
            raise InvalidInput(f"k must be between 1 and {self.max_k}", field="k")

    def search(
        self,
        query: str,
        k: int = 10,
        category: str | None = None,
        since: datetime | None = None,
    ) -> list[SearchHit]:
        self._check_k(k)
        query = query.strip()
        if not query:
            raise InvalidInput("q must contain text", field="q")
        vector = self.embedder.encode_query(query)
        allowed = None
        if category is not None or since is not None:
            allowed = self.catalog.keys_matching(
                category.lower() if category else None, as_utc(since)
            )
        return self._hits(vector, k, allowed=allowed)

    def related(self, article_id: str, k: int = 10) -> list[SearchHit]:
        self._check_k(k)
        key, vector = self.storage.embedding_of(article_id)
        return self._hits(vector, k, exclude=np.array([key], dtype=np.int64))

    def _hits(
        self,
        vector: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        exclude: np.ndarray | None = None,
    ) -> list[SearchHit]:
        scores, keys = self.index.search(vector[None, :], k, allowed, exclude)
        found = [
            (int(key), float(s)) for key, s in zip(keys[0], scores[0], strict=True) if key >= 0
        ]
        articles = self.storage.articles_by_keys([key for key, _ in found])
        # A key can vanish between search and fetch (concurrent delete): skip it.
        return [SearchHit(articles[key], score) for key, score in found if key in articles]

    def health(self) -> Health:
        return Health(
            articles=self.storage.count_articles(),
            index_size=len(self.index),
            index_kind=self.index.kind,
            model=self.embedder.name,
            database=self.storage.engine.dialect.name,
            ranker=self.recommender.head_name if self.recommender else None,
            events=self.storage.count_events(),
            feed_workers=self.feed_workers.live if self.feed_workers is not None else 0,
        )

    def quality(self) -> dict[str, Any]:
        """What the quality dashboard shows: the evaluation reports, the served model and
        template versions, and the live counters."""
        from prompts import TEMPLATES

        health = self.health()
        models: dict[str, str | None] = {"embedder": health.model, "ranker": health.ranker}
        generation = None
        if self.writing is not None:
            for role in ("headline", "summary", "base"):
                models[role] = self.writing.writer.models.version_of(role)
            generation = self.writing.stats()
        return {
            "reports": [asdict(report) for report in read_reports(self.report_dirs)],
            "models": models,
            "templates": sorted(template.id for template in TEMPLATES.values()),
            "articles": health.articles,
            "index_size": health.index_size,
            "index_kind": health.index_kind,
            "events": health.events,
            "generation": generation,
        }

    def example_readers(self) -> list[str]:
        """Reader ids to try in the studio. Only `newsroom demo` writes them (public MIND ids
        of replayed readers): the database itself keeps pseudonyms, so it cannot list ids."""
        path = self.example_readers_path
        if path is None or not path.is_file():
            return []
        try:
            readers = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("ignoring unreadable %s", path)
            return []
        return [r for r in readers if isinstance(r, str)] if isinstance(readers, list) else []

    def write_example_readers(self, readers: list[str]) -> None:
        path = self.example_readers_path
        if path is not None:
            staging = path.with_suffix(".tmp")
            staging.write_text(json.dumps(readers), encoding="utf-8")
            os.replace(staging, path)


class RecommenderFactory:
    """Builds the recommender once the service's index and catalog exist. A missing head is not
    fatal: search and ingest still work, and feed routes answer 503 saying what to do."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, service: NewsroomService) -> Recommender | None:
        from ranking.recommend import build_recommender

        try:
            return build_recommender(
                self.settings.ranking, service.storage, service.index, service.catalog
            )
        except ValueError as exc:  # a head trained for other embeddings
            raise ModelUnavailable(str(exc)) from exc
