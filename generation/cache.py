"""Cache of generated outputs: an in-memory LRU in front of the database table.

Memory answers repeat requests in microseconds; the table keeps `pregenerate`'s work across
restarts. Keys carry the article's content hash, the reader segment, the template version and
the model version, so a changed article, template or adapter never serves a stale output.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol


class GeneratedStore(Protocol):
    def get_generated(self, cache_key: str) -> str | None: ...
    def put_generated(self, cache_key: str, article_id: str | None, payload: str) -> None: ...


def cache_key(*parts: str) -> str:
    return "|".join(parts)


class GenerationCache:
    def __init__(self, store: GeneratedStore, capacity: int = 4096) -> None:
        self.store = store
        self.capacity = capacity
        self._memory: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._memory.get(key)
            if found is not None:
                self._memory.move_to_end(key)
                self.hits += 1
                return found
        payload = self.store.get_generated(key)
        if payload is None:
            with self._lock:
                self.misses += 1
            return None
        value = json.loads(payload)
        self._remember(key, value)
        with self._lock:
            self.hits += 1
        return value

    def put(self, key: str, article_id: str | None, value: dict[str, Any]) -> None:
        self.store.put_generated(key, article_id, json.dumps(value))
        self._remember(key, value)

    def forget_article(self, article_id: str) -> None:
        self.forget_where(lambda value: value.get("article_id") == article_id)

    def forget_where(self, predicate: Callable[[dict[str, Any]], bool]) -> None:
        with self._lock:
            for key in [k for k, v in self._memory.items() if predicate(v)]:
                del self._memory[key]

    def _remember(self, key: str, value: dict[str, Any]) -> None:
        if self.capacity == 0:
            return
        with self._lock:
            self._memory[key] = value
            self._memory.move_to_end(key)
            while len(self._memory) > self.capacity:
                self._memory.popitem(last=False)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
