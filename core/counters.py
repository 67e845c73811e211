"""Counters that every API process must agree on: ad budgets and frequency caps, experiment and
headline-test tallies, one-per-reader-per-day claims.

One interface, two implementations (chosen by `LiveState`): `LocalCounters` in this process
(embedded mode) and `RedisCounters` (shared mode), where every operation is one atomic Redis
command or Lua script, so concurrent requests on any number of processes cannot overspend a
budget or double-count a click. Counters are fast copies: whoever uses them keeps the facts
they derive from in the database and refills them (`set_many`) when Redis comes back empty.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

PREFIX = "newsroom:c:"


class Counters(ABC):
    @abstractmethod
    def add(self, key: str, amount: float = 1.0, ttl_s: int | None = None) -> float:
        """Add `amount` (created at 0) and return the new value; `ttl_s` (re)sets its expiry."""

    @abstractmethod
    def add_if_under(
        self, key: str, amount: float, limit: float, ttl_s: int | None = None
    ) -> tuple[bool, float]:
        """Add `amount` only while the value is below `limit` (so it can end above `limit` by
        at most one `amount`): (whether it was added, the value after)."""

    @abstractmethod
    def get_many(self, keys: Sequence[str]) -> list[float]:
        """Current values (0 for a missing key)."""

    @abstractmethod
    def claim(self, key: str, ttl_s: int) -> bool:
        """True for the first caller only (until `ttl_s` passes): "count this once"."""

    @abstractmethod
    def set_many(self, values: Mapping[str, float], ttl_s: int | None = None) -> None:
        """Overwrite values (a refill from the database)."""

    @abstractmethod
    def release(self, key: str) -> None:
        """Forget `key` (undo a `claim` whose work failed)."""

    def get(self, key: str) -> float:
        return self.get_many([key])[0]


class LocalCounters(Counters):
    def __init__(self) -> None:
        self._values: dict[str, float] = {}
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> float:
        # Caller holds the lock.
        if key in self._expiry and self._expiry[key] <= now:
            self._values.pop(key, None)
            self._expiry.pop(key, None)
        return self._values.get(key, 0.0)

    def _expire(self, key: str, ttl_s: int | None, now: float) -> None:
        if ttl_s is not None:
            self._expiry[key] = now + ttl_s

    def add(self, key: str, amount: float = 1.0, ttl_s: int | None = None) -> float:
        with self._lock:
            now = time.monotonic()
            value = self._live(key, now) + amount
            self._values[key] = value
            self._expire(key, ttl_s, now)
            return value

    def add_if_under(
        self, key: str, amount: float, limit: float, ttl_s: int | None = None
    ) -> tuple[bool, float]:
        with self._lock:
            now = time.monotonic()
            value = self._live(key, now)
            if value >= limit:
                return False, value
            self._values[key] = value + amount
            self._expire(key, ttl_s, now)
            return True, value + amount

    def get_many(self, keys: Sequence[str]) -> list[float]:
        with self._lock:
            now = time.monotonic()
            return [self._live(key, now) for key in keys]

    def claim(self, key: str, ttl_s: int) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._live(key, now):
                return False
            self._values[key] = 1.0
            self._expire(key, ttl_s, now)
            return True

    def set_many(self, values: Mapping[str, float], ttl_s: int | None = None) -> None:
        with self._lock:
            now = time.monotonic()
            for key, value in values.items():
                self._values[key] = float(value)
                self._expiry.pop(key, None)
                self._expire(key, ttl_s, now)

    def release(self, key: str) -> None:
        with self._lock:
            self._values.pop(key, None)
            self._expiry.pop(key, None)


# KEYS[1]; ARGV = amount, limit, ttl (0: none). Adds only while the value is below the limit.
_ADD_IF_UNDER = """
local value = tonumber(redis.call('GET', KEYS[1]) or '0')
if value >= tonumber(ARGV[2]) then return {0, tostring(value)} end
local new = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return {1, new}
"""


class RedisCounters(Counters):
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._add_if_under = client.register_script(_ADD_IF_UNDER)

    def add(self, key: str, amount: float = 1.0, ttl_s: int | None = None) -> float:
        pipe = self.client.pipeline(transaction=True)
        pipe.incrbyfloat(PREFIX + key, amount)
        if ttl_s is not None:
            pipe.expire(PREFIX + key, ttl_s)
        return float(pipe.execute()[0])

    def add_if_under(
        self, key: str, amount: float, limit: float, ttl_s: int | None = None
    ) -> tuple[bool, float]:
        added, value = self._add_if_under(keys=[PREFIX + key], args=[amount, limit, ttl_s or 0])
        return bool(added), float(value)

    def get_many(self, keys: Sequence[str]) -> list[float]:
        if not keys:
            return []
        return [float(v or 0) for v in self.client.mget([PREFIX + k for k in keys])]

    def claim(self, key: str, ttl_s: int) -> bool:
        return bool(self.client.set(PREFIX + key, 1, nx=True, ex=ttl_s))

    def set_many(self, values: Mapping[str, float], ttl_s: int | None = None) -> None:
        pipe = self.client.pipeline(transaction=True)
        for key, value in values.items():
            pipe.set(PREFIX + key, float(value), ex=ttl_s)
        pipe.execute()

    def release(self, key: str) -> None:
        self.client.delete(PREFIX + key)
