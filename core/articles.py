"""`ArticleService`: articles in (ingest, replace, delete) and out (get, search, related).

It owns this process's copy of the article state the hot paths read from memory: the FAISS
index and the catalog. Writes go to the database first (the acknowledgement), then to the local
copy; other processes bring theirs in step from the change log (`sync`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from core.domain import Article, ArticleDraft, IngestReport, SearchHit, as_utc
from core.errors import InvalidInput, LimitExceeded
from core.storage import Storage
from retrieval.catalog import ArticleCatalog
from retrieval.embedder import Embedder
from retrieval.index import ArticleIndex
from retrieval.ingest import ArticleIngestor, ArticleLimits

log = logging.getLogger(__name__)


class ArticleService:
    def __init__(
        self,
        storage: Storage,
        embedder: Embedder,
        index: ArticleIndex,
        index_path: Path,
        catalog: ArticleCatalog,
        limits: ArticleLimits,
        write_lock: threading.Lock,
        after_write: Callable[[], None],
        max_k: int = 100,
        max_bulk: int = 1000,
        autosave_changes: int = 20_000,
    ) -> None:
        """`after_write()` runs after each committed write, inside `write_lock` (it applies the
        change log to this process and wakes the others)."""
        self.storage = storage
        self.embedder = embedder
        self.index = index
        self.index_path = index_path
        self.catalog = catalog
        self.ingestor = ArticleIngestor(storage, embedder, index, catalog, limits)
        self.max_k = max_k
        self.max_bulk = max_bulk
        self._write_lock = write_lock
        self._after_write = after_write
        self._autosave_changes = autosave_changes
        self._unsaved_changes = 0
        self._save_lock = threading.Lock()
        self.on_deleted: list[Callable[[str], None]] = []  # told an article id was deleted

    # --- writes -----------------------------------------------------------------------------
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
            self._after_write()
        return report

    def ingest_stream(
        self, drafts: Iterable[ArticleDraft], batch_size: int = 64, window: int = 8192
    ) -> Iterable[IngestReport]:
        """Offline ingest of any number of drafts, one report per batch of `batch_size` (a
        progress bar moves every few seconds; on short AG News texts 9% of the ingest time is
        outside the encoder, and ingest keeps up with one raw encode call:
        `bench.ingest_throughput`).
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
                    self._after_write()
                yield report

    def put_article(self, article_id: str, draft: ArticleDraft) -> tuple[Article, bool]:
        """Create or replace the article `article_id`; returns (article, created)."""
        draft.id = article_id
        report = self.ingest([draft])
        return self.storage.get_article(article_id), bool(report.created)

    def delete_article(self, article_id: str) -> None:
        with self._write_lock:
            key = self.storage.delete_article(article_id)
            self.index.remove(np.array([key], dtype=np.int64))
            self.catalog.remove(key)
            self._note_changes(1)
            self._after_write()
        for listener in self.on_deleted:
            listener(article_id)

    # --- following other processes' writes ----------------------------------------------------
    def sync(self, keys: Sequence[int]) -> int:
        """Make this process's index and catalog agree with the stored state of `keys`
        (changed or deleted elsewhere); returns how many entries changed. Idempotent: a change
        this process made itself, or saw before, costs one read and no index work."""
        stored = self.storage.articles_for_sync(keys)
        removed = [k for k in set(keys) if k not in stored]
        changed = 0
        for key in removed:
            entry = self.catalog.get(key)
            if entry is not None or key in self.index:
                self.index.remove(np.array([key], dtype=np.int64))
                self.catalog.remove(key)
                changed += 1
                if entry is not None:
                    for listener in self.on_deleted:
                        listener(entry.id)
        stale = [a for a in stored.values() if self.index.hash_of(a.key) != a.content_hash]
        if stale:
            self.index.add(
                np.array([a.key for a in stale], dtype=np.int64),
                np.stack([a.embedding for a in stale]),
                [a.content_hash for a in stale],
            )
        self.catalog.upsert(
            (a.key, a.id, a.title, a.category, a.published_at) for a in stored.values()
        )
        changed += len(stale)
        self._note_changes(changed)
        return changed

    # --- reads ------------------------------------------------------------------------------
    def get_article(self, article_id: str) -> Article:
        return self.storage.get_article(article_id)

    def key_of(self, article_id: str) -> int | None:
        """The article's key from the catalog, else from the database: an article ingested
        through another process a moment ago may not have reached this one's log yet."""
        key = self.catalog.key_of(article_id)
        return key if key is not None else self.storage.article_key_of(article_id)

    def check_k(self, k: int) -> None:
        if not 1 <= k <= self.max_k:
            raise InvalidInput(f"k must be between 1 and {self.max_k}", field="k")

    def search(
        self,
        query: str,
        k: int = 10,
        category: str | None = None,
        since: datetime | None = None,
    ) -> list[SearchHit]:
        self.check_k(k)
        query = query.strip()
        if not query:
            raise InvalidInput("q must contain text", field="q")
        vector = self.embedder.encode_query(query)
        allowed = None
        if category is not None or since is not None:
            allowed = self.catalog.keys_matching(
                category.lower() if category else None, as_utc(since)
            )
        return self.hits(vector, k, allowed=allowed)

    def related(self, article_id: str, k: int = 10) -> list[SearchHit]:
        self.check_k(k)
        key, vector = self.storage.embedding_of(article_id)
        return self.hits(vector, k, exclude=np.array([key], dtype=np.int64))

    def related_to_text(self, text: str, k: int) -> list[Article]:
        return [hit.article for hit in self.hits(self.embedder.encode_query(text), k)]

    def hits(
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

    # --- the index snapshot ---------------------------------------------------------------------
    def save_index(self) -> None:
        with self._save_lock:
            self.index.save(self.index_path, self.embedder.name)
            self._unsaved_changes = 0

    @property
    def unsaved_changes(self) -> int:
        return self._unsaved_changes

    def _note_changes(self, count: int) -> None:
        self._unsaved_changes += count
        if self._unsaved_changes >= self._autosave_changes:
            self.save_index()
