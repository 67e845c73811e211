"""Article ingest: validate, skip unchanged content, embed what changed, store, index."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from core.domain import ArticleDraft, IngestReport, as_utc, clean_text
from core.errors import InvalidInput
from core.storage import ArticleWrite, Storage
from retrieval.catalog import ArticleCatalog, CatalogRow
from retrieval.embedder import Embedder
from retrieval.index import ArticleIndex

log = logging.getLogger(__name__)
T = TypeVar("T")
# Embedded keys, their vectors and content hashes, and the catalog rows of one applied upsert.
UpsertListener = Callable[[np.ndarray, np.ndarray, list[str], list[CatalogRow]], None]


@dataclass(slots=True)
class ArticleLimits:
    max_title_chars: int = 1000
    max_body_chars: int = 200_000


def normalise_draft(draft: ArticleDraft, limits: ArticleLimits) -> ArticleDraft:
    """Clean text and enforce limits; raises InvalidInput naming the field."""
    title = clean_text(draft.title)
    body = clean_text(draft.body or "")
    if not title:
        raise InvalidInput("title must not be empty", field="title")
    if len(title) > limits.max_title_chars:
        raise InvalidInput(
            f"title has {len(title)} characters; the limit is {limits.max_title_chars}",
            field="title",
        )
    if len(body) > limits.max_body_chars:
        raise InvalidInput(
            f"body has {len(body)} characters; the limit is {limits.max_body_chars}", field="body"
        )
    category = clean_text(draft.category).lower() if draft.category else None
    return ArticleDraft(
        id=draft.id.strip() if draft.id else None,
        title=title,
        body=body,
        category=category or None,
        url=draft.url,
        language=draft.language,
        published_at=draft.published_at,
    )


class ArticleIngestor:
    """Upserts batches of drafts. Unchanged content (same hash, same model) is not re-embedded;
    metadata-only changes are stored without touching the vector."""

    def __init__(
        self,
        storage: Storage,
        embedder: Embedder,
        index: ArticleIndex,
        catalog: ArticleCatalog,
        limits: ArticleLimits | None = None,
    ) -> None:
        self.storage = storage
        self.embedder = embedder
        self.index = index
        self.catalog = catalog
        self.limits = limits or ArticleLimits()
        # Told of every applied upsert (embedded keys, their vectors and hashes, catalog rows):
        # how feed replicas follow this process's index and catalog.
        self.on_upsert: UpsertListener | None = None

    def ingest(self, drafts: Iterable[ArticleDraft]) -> IngestReport:
        # Last write wins inside one batch, as it would across two requests.
        by_id: dict[str, ArticleDraft] = {}
        for draft in drafts:
            clean = normalise_draft(draft, self.limits)
            by_id[clean.id or clean.generated_id()] = clean
        return self.upsert_normalised(by_id)

    def upsert_normalised(self, by_id: dict[str, ArticleDraft]) -> IngestReport:
        """Upsert drafts already passed through `normalise_draft`, keyed by article id."""
        report = IngestReport()
        if not by_id:
            return report
        existing = self.storage.existing(list(by_id))
        writes: list[ArticleWrite] = []
        to_embed: list[int] = []
        for article_id, draft in by_id.items():
            content_hash = draft.content_hash()
            stored = existing.get(article_id)
            same_text = (
                stored is not None
                and stored.content_hash == content_hash
                and stored.embedding_model == self.embedder.name
            )
            if not same_text:
                to_embed.append(len(writes))
            writes.append(
                ArticleWrite(
                    draft=draft,
                    article_id=article_id,
                    content_hash=content_hash,
                    vector=None,
                    key=stored.key if stored else None,
                )
            )
        vectors = self.embedder.encode_articles([writes[i].draft for i in to_embed])
        for row, vector in zip(to_embed, vectors, strict=True):
            writes[row].vector = vector
        keys = self.storage.write_articles(writes, self.embedder.name)
        # The database commit above is the acknowledgement; the index follows it (and is
        # repaired from the database on start if the process dies in between).
        embedded_keys = np.array([keys[i] for i in to_embed], dtype=np.int64)
        hashes = [writes[i].content_hash for i in to_embed]
        if to_embed:
            self.index.add(embedded_keys, vectors, hashes)
        rows = [
            (key, w.article_id, w.draft.title, w.draft.category, as_utc(w.draft.published_at))
            for key, w in zip(keys, writes, strict=True)
        ]
        self.catalog.upsert(rows)
        if self.on_upsert is not None:
            self.on_upsert(embedded_keys, vectors, hashes, rows)
        for write in writes:
            if write.key is None:
                report.created.append(write.article_id)
            elif write.vector is not None:
                report.updated.append(write.article_id)
            else:
                report.unchanged.append(write.article_id)
        report.embedded = len(to_embed)
        return report


def chunked(items: Iterable[T], size: int) -> Iterable[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
