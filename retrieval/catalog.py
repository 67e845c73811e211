"""In-memory article metadata (no bodies) for the hot path: id <-> key, title, category, age.

The feed touches hundreds of candidates per request; reading them from SQL each time would
cost more than scoring them. The catalog is loaded once at start and kept in step by ingest
and delete.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

# (key, article id, title, category, published_at): what the catalog keeps of an article.
CatalogRow = tuple[int, str, str, str | None, datetime | None]


@dataclass(slots=True, frozen=True)
class CatalogEntry:
    key: int
    id: str
    title: str
    category: str | None
    published_at: datetime | None
    seq: int  # arrival order: stands in for publication time when none is given
    published_ts: float  # published_at in epoch seconds, NaN when unknown: the feed's freshness


class ArticleCatalog:
    def __init__(self) -> None:
        self._by_key: dict[int, CatalogEntry] = {}
        self._by_category: dict[str | None, set[int]] = {}
        self._key_of: dict[str, int] = {}
        self._seq = 0
        self._lock = threading.Lock()
        self._fresh: list[int] | None = None  # keys newest first, rebuilt lazily

    def __len__(self) -> int:
        return len(self._by_key)

    def upsert(
        self,
        rows: Iterable[CatalogRow],
    ) -> None:
        with self._lock:
            for key, article_id, title, category, published in rows:
                previous = self._by_key.get(key)
                seq = previous.seq if previous else self._seq
                self._seq += previous is None
                if previous is not None:
                    self._by_category.get(previous.category, set()).discard(key)
                self._by_key[key] = CatalogEntry(
                    key,
                    article_id,
                    title,
                    category,
                    published,
                    seq,
                    published.timestamp() if published else math.nan,
                )
                self._by_category.setdefault(category, set()).add(key)
                self._key_of[article_id] = key
            self._fresh = None

    def remove(self, key: int) -> None:
        with self._lock:
            entry = self._by_key.pop(key, None)
            if entry:
                self._key_of.pop(entry.id, None)
                self._by_category.get(entry.category, set()).discard(key)
            self._fresh = None

    def get(self, key: int) -> CatalogEntry | None:
        return self._by_key.get(key)

    def key_of(self, article_id: str) -> int | None:
        return self._key_of.get(article_id)

    def entries(self, keys: Sequence[int]) -> list[CatalogEntry | None]:
        return list(map(self._by_key.get, keys))

    def keys_in_category(self, category: str) -> np.ndarray:
        return np.fromiter(self._by_category.get(category, ()), dtype=np.int64)

    def keys_matching(self, category: str | None, since: datetime | None) -> np.ndarray:
        """Keys passing the search filters, from memory (no SQL on the search path)."""
        if since is None:
            if category is None:
                return np.fromiter(self._by_key, dtype=np.int64)
            return self.keys_in_category(category)
        pool = self._by_category.get(category, set()) if category is not None else self._by_key
        return np.fromiter(
            (
                k
                for k in list(pool)
                if (e := self._by_key.get(k)) and e.published_at and e.published_at >= since
            ),
            dtype=np.int64,
        )

    def newest(self, n: int, category: str | None = None) -> list[int]:
        """Keys of the `n` most recently published (else most recently added) articles."""
        fresh = self._fresh
        if fresh is None:
            with self._lock:
                entries = list(self._by_key.values())
            stamps = np.array(
                [e.published_at.timestamp() if e.published_at else -np.inf for e in entries]
            )
            seqs = np.array([e.seq for e in entries])
            order = np.lexsort((-seqs, -stamps))  # by time, then newest arrival
            fresh = [entries[i].key for i in order]
            self._fresh = fresh
        if category is None:
            return fresh[:n]
        picked = []
        for key in fresh:
            entry = self._by_key.get(key)
            if entry and entry.category == category:
                picked.append(key)
                if len(picked) == n:
                    break
        return picked
