"""Cache of generated outputs: a fast layer in front of the database table.

Keys carry the article's content hash, the reader segment, the template version and the model
version, so a changed article, template or adapter never serves a stale output. The table keeps
`pregenerate`'s work across restarts; the fast layer answers repeat requests without it:
- `LocalGenerationCache` (embedded mode): an LRU in this process;
- `RedisGenerationCache` (shared mode): Redis, shared by every API process and generation
  worker, with hit and miss counts kept there too (the rate is the newsroom's, not one
  process's).
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import redis


class GeneratedStore(Protocol):
    def get_generated(self, cache_key: str) -> str | None: ...
    def put_generated(self, cache_key: str, article_id: str | None, payload: str) -> None: ...


def cache_key(*parts: str) -> str:
    return "|".join(parts)


def reader_segment(pseudonym: str) -> str:
    """The segment name of outputs written for one reader alone (pseudonymous, like the rows):
    a reader's deletion removes every output whose key holds it."""
    return f"user-{pseudonym}"


class GenerationCache(ABC):
    def __init__(self, store: GeneratedStore) -> None:
        self.store = store

    def get(self, key: str) -> dict[str, Any] | None:
        """One lookup is one hit or one miss (a cold request asks once: the route checks the
        cache before queueing, and the job does not look again)."""
        found = self._fast_get(key)
        if found is None:
            payload = self.store.get_generated(key)
            if payload is not None:
                found = json.loads(payload)
                self._fast_put(key, found)
        self._count(found is not None)
        return found

    def put(self, key: str, article_id: str | None, value: dict[str, Any]) -> None:
        self.store.put_generated(key, article_id, json.dumps(value))
        self._fast_put(key, value)

    @abstractmethod
    def _fast_get(self, key: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def _fast_put(self, key: str, value: dict[str, Any]) -> None: ...

    @abstractmethod
    def _count(self, hit: bool) -> None: ...

    @abstractmethod
    def counts(self) -> tuple[int, int]:
        """(hits, misses) since start (embedded) or since Redis was last emptied (shared)."""

    @abstractmethod
    def forget_article(self, article_id: str) -> None: ...

    @abstractmethod
    def forget_segment(self, segment: str) -> None:
        """Drop the fast copies of outputs written for `segment` (a reader's own marker)."""

    @property
    def hits(self) -> int:
        return self.counts()[0]

    @property
    def misses(self) -> int:
        return self.counts()[1]

    @property
    def hit_rate(self) -> float:
        hits, misses = self.counts()
        return hits / (hits + misses) if hits + misses else 0.0


class LocalGenerationCache(GenerationCache):
    def __init__(self, store: GeneratedStore, capacity: int = 4096) -> None:
        super().__init__(store)
        self.capacity = capacity
        self._memory: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def _fast_get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._memory.get(key)
            if found is not None:
                self._memory.move_to_end(key)
            return found

    def _fast_put(self, key: str, value: dict[str, Any]) -> None:
        if self.capacity == 0:
            return
        with self._lock:
            self._memory[key] = value
            self._memory.move_to_end(key)
            while len(self._memory) > self.capacity:
                self._memory.popitem(last=False)

    def _count(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self._hits += 1
            else:
                self._misses += 1

    def counts(self) -> tuple[int, int]:
        return self._hits, self._misses

    def _forget(self, field: str, value: str) -> None:
        with self._lock:
            for key in [k for k, v in self._memory.items() if v.get(field) == value]:
                del self._memory[key]

    def forget_article(self, article_id: str) -> None:
        self._forget("article_id", article_id)

    def forget_segment(self, segment: str) -> None:
        self._forget("segment", segment)


class RedisGenerationCache(GenerationCache):
    """`newsroom:g:<cache key>` per output (a week's TTL: the table keeps them for good);
    outputs written for one reader are also listed under their segment, so a reader's deletion
    can find them without scanning the keyspace."""

    TTL_S = 7 * 86400
    STATS_KEY = "newsroom:g:stats"

    def __init__(self, store: GeneratedStore, client: redis.Redis) -> None:
        super().__init__(store)
        self.client = client

    @staticmethod
    def _key(key: str) -> str:
        return "newsroom:g:" + key

    @staticmethod
    def _segment_key(segment: str) -> str:
        return "newsroom:gs:{" + segment + "}"

    def _fast_get(self, key: str) -> dict[str, Any] | None:
        raw = self.client.get(self._key(key))
        return json.loads(raw) if raw is not None else None

    def _fast_put(self, key: str, value: dict[str, Any]) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self._key(key), json.dumps(value), ex=self.TTL_S)
        segment = value.get("segment")
        if isinstance(segment, str) and segment.startswith("user-"):
            pipe.sadd(self._segment_key(segment), key)
            pipe.expire(self._segment_key(segment), self.TTL_S)
        pipe.execute()

    def _count(self, hit: bool) -> None:
        self.client.hincrby(self.STATS_KEY, "hits" if hit else "misses", 1)

    def counts(self) -> tuple[int, int]:
        raw = self.client.hmget(self.STATS_KEY, "hits", "misses")
        return int(raw[0] or 0), int(raw[1] or 0)

    def forget_article(self, article_id: str) -> None:
        # Keys carry the article's content hash, and the table rows are deleted with the
        # article: a fast copy left behind can never be served again and expires by itself.
        pass

    def forget_segment(self, segment: str) -> None:
        members = self.client.smembers(self._segment_key(segment))
        keys = [self._key(m.decode()) for m in members]
        if keys:
            self.client.delete(*keys)
        self.client.delete(self._segment_key(segment))
