"""`NewsroomService`: the composition root the API and the CLI talk to.

It builds the stages from `Settings` and hands each concern its own service, each complete from
its constructor: `articles` (ingest, search, related), `readers` (events, export, deletion,
retention), `feeds` (feed, rank, with sponsored items), `campaigns` and `sponsored`
(advertisers' campaigns, their delivery and reports), `headlines` (headline tests served by a
bandit), `status` (health, quality dashboard), `writing` (generation), `experiments` and
`learning` (the exposure log, exploration, the model registry: `core.learning`).
Where state lives (this process, or Redis for many processes) is `live`, chosen by mode; the
change-log `follower` keeps this process's index, catalog and live counts in step with writes
made anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from typing import TYPE_CHECKING

from core.ad_store import AdStore
from core.articles import ArticleService
from core.campaigns import CampaignService
from core.changes import ChangeFollower, LogCursor
from core.domain import Event
from core.errors import ModelUnavailable
from core.feeds import FeedService, Learning
from core.headline_tests import HeadlineStore, HeadlineTestService
from core.learning import (
    ChampionWatch,
    ExperimentService,
    ExposureLog,
    ModelRegistry,
    TopSlotExploration,
    use_champion,
)
from core.learning_store import LearningStore, LoggedFeed
from core.live import LiveState, live_state
from core.readers import ReaderService
from core.settings import Settings
from core.sponsored import SponsoredService
from core.status import StatusService
from core.storage import LoggedChange, LoggedEvent, LogSnapshot, Storage
from generation.segments import SegmentsFile
from ranking.ad_head import AdHead
from ranking.recommend import InteractionState, Recommender, build_recommender
from retrieval.catalog import ArticleCatalog
from retrieval.embedder import Embedder
from retrieval.index import IndexConfig
from retrieval.ingest import ArticleLimits
from retrieval.sync import SyncReport, open_index

if TYPE_CHECKING:
    from core.writing import WritingService

log = logging.getLogger(__name__)

EXAMPLE_READERS_FILE = "example_readers.json"


def user_id_key(settings: Settings) -> bytes:
    """The pseudonymisation key: from settings, else created once beside the data (0600).
    Shared mode needs it set: every host must compute the same pseudonyms."""
    if settings.user_id_secret is not None:
        return settings.user_id_secret.get_secret_value().encode()
    if settings.mode == "shared":
        raise ModelUnavailable(
            "shared mode needs NEWSROOM_USER_ID_SECRET, the same on every host (reader ids are "
            "pseudonymised with it): e.g. the output of `openssl rand -hex 32`"
        )
    path = settings.data_dir / "user_id_secret"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return path.read_bytes().strip()
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def _cursor(head: int, missing: list[int]) -> LogCursor:
    now = time.monotonic()
    return LogCursor(high=head, gaps=dict.fromkeys(missing, now))


class LogApplier:
    """What the follower does with new log entries in this process."""

    def __init__(
        self,
        articles: ArticleService,
        recommender: Recommender | None,
        registry: ModelRegistry,
    ) -> None:
        self.articles = articles
        self.recommender = recommender
        self.registry = registry
        self.follower: ChangeFollower | None = None
        # Reader deletions already reflected in counts reloaded from a snapshot: (change head
        # of that snapshot, change seqs it could not see).
        self._reflected: tuple[int, set[int]] = (0, set())

    def events(self, events: list[LoggedEvent]) -> None:
        if self.recommender is not None:
            self.recommender.apply_logged(events)

    def changes(self, changes: list[LoggedChange]) -> None:
        articles = [c.article_key for c in changes if c.kind == "article" and c.article_key]
        if articles:
            self.articles.sync(articles)
        if self.recommender is None:
            return
        if any(c.kind == "counts_reset" for c in changes):
            self._reload_counts()
        if any(c.kind == "champion" for c in changes):
            use_champion(self.recommender, self.registry)
        for change in changes:
            deleted = change.kind == "reader_deleted" and change.payload
            if deleted and not self._reflected_in(change):
                self._subtract_reader(json.loads(change.payload or "{}"))

    def _reflected_in(self, change: LoggedChange) -> bool:
        head, unseen = self._reflected
        return change.seq <= head and change.seq not in unseen

    def _subtract_reader(self, payload: dict) -> None:
        """Take a deleted reader's events out of the counts: only those this process applied
        (an event deleted before it was read here never reached them)."""
        assert self.recommender is not None and self.follower is not None
        cursor = self.follower.events
        applied = [
            (key, kind)
            for seq, key, kind in payload["interactions"]
            if seq <= cursor.high and seq not in cursor.gaps
        ]
        for seq, _, _ in payload["interactions"]:
            cursor.gaps.pop(seq, None)  # deleted: never coming
        self.recommender.state.subtract_user(payload["user"], applied)

    def _reload_counts(self) -> None:
        """After a retention purge: fold the counts again from a snapshot and resume the events
        log from it (the purge changed history, so no subtraction is exact)."""
        assert self.recommender is not None and self.follower is not None
        started = time.perf_counter()
        state, snapshot = InteractionState.from_storage(self.articles.storage)
        self.recommender.state = state
        self.recommender._popular_cache = None
        self.follower.events = _cursor(snapshot.event_head, snapshot.missing_events)
        self._reflected = (snapshot.change_head, set(snapshot.missing_changes))
        log.info("live counts reloaded in %.2fs", time.perf_counter() - started)


class NewsroomService:
    def __init__(
        self,
        storage: Storage,
        live: LiveState,
        articles: ArticleService,
        readers: ReaderService,
        feeds: FeedService,
        status: StatusService,
        follower: ChangeFollower,
        recommender: Recommender | None,
        campaigns: CampaignService,
        sponsored: SponsoredService,
        learning: Learning,
        headlines: HeadlineTestService,
    ) -> None:
        self.storage = storage
        self.headlines = headlines
        self.learning = learning
        self.experiments = learning.experiments
        self.campaigns = campaigns
        self.sponsored = sponsored
        self.live = live
        self.articles = articles
        self.readers = readers
        self.feeds = feeds
        self.status = status
        self.follower = follower
        self.recommender = recommender
        self.writing: WritingService | None = None
        self.sync_report: SyncReport | None = None
        self._started = False
        self._champion_watch: ChampionWatch | None = None
        self._champion_poll_s = 2.0

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        progress: bool = False,
        embedder: Embedder | None = None,
        generation: bool = True,
        encoder_threads: int | None = None,
    ) -> NewsroomService:
        """Open storage, load the embedder (unless one is shared in), the index, the live
        counts, and (with `generation`) the writing service. Call `start()` before serving.
        `encoder_threads`: 0 lets an offline job's encoder use every core (a serving process
        keeps `ranking.torch_threads`, as requests run side by side)."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        live = live_state(settings)
        storage = Storage(
            settings.resolved_database_url,
            user_id_key(settings),
            timeout_s=settings.shared.database_timeout_seconds,
        )
        rc = settings.retrieval
        if embedder is None:
            embedder = Embedder(
                rc.model_path(),
                rc.batch_size,
                rc.lead_words,
                rc.query_cache_size,
                threads=(
                    settings.ranking.torch_threads if encoder_threads is None else encoder_threads
                ),
                precision=rc.precision,
            )
        index_config = IndexConfig(
            hnsw_threshold=rc.hnsw_threshold,
            hnsw_m=rc.hnsw_m,
            hnsw_ef_construction=rc.hnsw_ef_construction,
            hnsw_ef_search=rc.hnsw_ef_search,
        )
        # Article changes from here on are re-read after loading (syncing is idempotent).
        _, changes_before_index = storage.log_heads()
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
        catalog = ArticleCatalog()
        catalog.upsert(storage.catalog_rows())
        write_lock = threading.Lock()
        limits = ArticleLimits(settings.limits.max_title_chars, settings.limits.max_body_chars)

        # Filled in below: the writers' after-write hook needs the follower, built last.
        hooks: list[ChangeFollower] = []

        def after_write() -> None:
            hooks[0].catch_up()
            live.changed()

        articles = ArticleService(
            storage,
            embedder,
            index,
            settings.index_path,
            catalog,
            limits,
            write_lock,
            after_write,
            max_k=settings.limits.max_k,
            max_bulk=settings.limits.max_bulk_articles,
        )
        try:
            recommender, snapshot = build_recommender(
                settings.ranking, storage, index, catalog, live.profile_cache(index.dim)
            )
        except ValueError as exc:  # a head trained for other embeddings
            raise ModelUnavailable(str(exc)) from exc
        learning_store = LearningStore(storage.engine)
        registry = ModelRegistry(learning_store)
        committed = recommender.scorer if recommender is not None else None
        if recommender is not None:
            use_champion(recommender, registry)
        applier = LogApplier(articles, recommender, registry)
        follower = ChangeFollower(
            storage,
            applier.events,
            applier.changes,
            _cursor(snapshot.event_head, snapshot.missing_events),
            _cursor(snapshot.change_head, snapshot.missing_changes),
            gap_timeout_s=settings.shared.gap_timeout_seconds,
        )
        applier.follower = follower
        hooks.append(follower)
        _resync_articles(storage, articles, changes_before_index, snapshot)

        segments = SegmentsFile(settings.data_dir / "segments")
        ad_store = AdStore(storage.engine)
        campaigns = CampaignService(ad_store, embedder.encode, segments.names)
        sponsored = SponsoredService(
            ad_store,
            campaigns,
            live.counters,
            recommender,
            AdHead.load_or_identity(settings.ads.head_dir),
            settings.ads,
            storage.pseudonym,
            storage.event_digest,
            segments,
        )

        def refill_ad_counters() -> None:
            with live.once("refill-ad-counters", ttl_s=600) as mine:
                if mine:
                    sponsored.refill_counters()

        live.on_counters_lost(refill_ad_counters)
        readers = ReaderService(
            storage,
            recommender,
            articles.key_of,
            write_lock,
            after_write,
            sponsored,
            max_bulk_events=settings.limits.max_bulk_events,
        )
        lc = settings.learning
        exposures = ExposureLog(learning_store, lc)
        learning = Learning(
            exposures,
            TopSlotExploration(lc.exploration, lc.exploration_pool),
            ExperimentService(learning_store, registry, storage.pseudonym, lc),
            registry,
            committed,
        )
        pseudonym = storage.pseudonym

        def join_clicks(events: list[Event]) -> None:
            exposures.join_clicks(
                [(pseudonym(e.user_id), e.article_key, e.ts) for e in events if e.type == "click"]
            )

        def exported_exposures(user_id: str) -> list[dict]:
            exposures.flush()  # feeds still queued are part of what is stored about them
            feeds = learning_store.user_feeds(pseudonym(user_id))
            return [exposure_record(f, storage) for f in feeds]

        def forget_exposures(user_id: str) -> None:
            exposures.flush()  # else a queued feed of theirs would be written after
            learning_store.forget_user(pseudonym(user_id))

        readers.on_recorded.append(join_clicks)
        readers.on_deleted.append(forget_exposures)
        readers.on_purged.append(learning_store.purge_before)
        readers.exports["exposures"] = exported_exposures
        feeds = FeedService(
            recommender, articles.key_of, articles.check_k, sponsored, learning, pseudonym
        )
        headlines = HeadlineTestService(
            HeadlineStore(storage.engine),
            live.counters,
            storage.get_article,
            storage.pseudonym,
            storage.event_digest,
            settings.limits.max_title_chars,
        )

        def refill_headline_counters() -> None:
            with live.once("refill-headline-counters", ttl_s=600) as mine:
                if mine:
                    headlines.refill_counters()

        live.on_counters_lost(refill_headline_counters)
        readers.headlines = feeds.headlines = headlines
        readers.on_deleted.append(headlines.forget_user)
        readers.exports["headline_events"] = headlines.user_events
        articles.on_deleted.append(headlines.forget_article)
        status = StatusService(
            articles,
            recommender,
            live,
            follower,
            (settings.ranking.model_dir, settings.reports_dir),
            settings.data_dir / EXAMPLE_READERS_FILE,
        )
        service = cls(
            storage,
            live,
            articles,
            readers,
            feeds,
            status,
            follower,
            recommender,
            campaigns,
            sponsored,
            learning,
            headlines,
        )
        service.sync_report = report
        service._champion_poll_s = lc.champion_poll_seconds
        if report.changed:
            articles.save_index()
        if recommender is not None:
            cache = recommender.profiles.cache

            def refill_profiles() -> None:
                with live.once("refill-profiles", ttl_s=600) as mine:
                    if mine:
                        count = cache.refill(storage)
                        log.info("profile cache refilled: %d profiles", count)

            live.on_reset(refill_profiles)
        if generation:
            from core.writing import WritingService

            service.attach_writing(WritingService.from_settings(settings, service))
        return service

    def attach_writing(self, writing: WritingService) -> None:
        self.writing = writing
        self.status.writing = writing
        self.articles.on_deleted.append(writing.forget_article)
        self.readers.on_deleted.append(writing.forget_user)
        self.headlines.writer = writing  # `generated` headline variants

    def require_writing(self) -> WritingService:
        if self.writing is None:
            raise ModelUnavailable("generation is not configured on this server")
        return self.writing

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Begin following other processes' writes and watching the shared store (no-ops in
        embedded mode). Idempotent."""
        if self._started:
            return
        self._started = True
        self.live.start_watching(every_tick=self._repair)
        self.live.follow(self.follower)
        self.learning.exposures.start()
        if self.recommender is not None:
            self._champion_watch = ChampionWatch(
                self.recommender, self.learning.registry, self._champion_poll_s
            )
            self._champion_watch.start()

    def _repair(self) -> None:
        try:
            self.readers.repair()
        except Exception as exc:
            log.debug("profile repair still waiting: %s", exc)

    def close(self) -> None:
        if self._champion_watch is not None:
            self._champion_watch.stop()
        self.learning.exposures.close()
        self.live.close()
        if self.writing is not None:
            self.writing.close()
        if self.articles.unsaved_changes:
            self.articles.save_index()
        self.storage.close()


def _resync_articles(
    storage: Storage, articles: ArticleService, since_seq: int, snapshot: LogSnapshot
) -> None:
    """Article changes committed while the index was loading: apply them now (the follower
    starts after the snapshot, which was read later)."""
    keys: list[int] = []
    seq = since_seq
    while seq < snapshot.change_head:
        batch = storage.changes_after(seq)
        if not batch:
            break
        keys += [c.article_key for c in batch if c.kind == "article" and c.article_key]
        seq = batch[-1].seq
    if keys:
        articles.sync(keys)


def exposure_record(feed: LoggedFeed, storage: Storage) -> dict:
    """One logged feed as a reader's export shows it (article ids, not internal keys)."""
    articles = storage.articles_by_keys([i.article_key for i in feed.items])
    return {
        "ts": feed.ts.isoformat(),
        "surface": feed.surface,
        "model_version": feed.model_version,
        "experiment_id": feed.experiment_id,
        "arm": feed.arm,
        "items": [
            {
                "article_id": articles[i.article_key].id if i.article_key in articles else None,
                "position": i.position,
                "clicked": i.clicked,
            }
            for i in feed.items
        ],
    }
