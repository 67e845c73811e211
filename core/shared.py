"""Shared mode's Redis: one client per process, the key layout, and knowing when Redis lost its
data.

PostgreSQL is the source of truth; Redis holds copies that must be shared between processes and
fast (reader profiles, generation outputs, queue state, delivery counters). Every key starts
with `newsroom:`; per-reader keys carry the reader's pseudonym in braces
(`newsroom:p:{p_abc…}`), so under Redis Cluster all of one reader's keys hash to one slot.

Redis restarted empty (or flushed) is noticed by its *epoch*: a random id this module writes
once; when it is gone, the data that went with it is too, and `RedisEpoch.check` says so once to
every process, which then refill what they keep there from PostgreSQL (one of them does the
bulk work, under `refill_lock`).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

PREFIX = "newsroom:"
EPOCH_KEY = PREFIX + "epoch"
CHANGES_CHANNEL = PREFIX + "changes"  # a wake-up call for change-log followers


def reader_key(kind: str, pseudonym: str) -> str:
    """A per-reader key, hash-tagged by the pseudonym (Redis Cluster keeps a reader together)."""
    return f"{PREFIX}{kind}:{{{pseudonym}}}"


def connect(url: str, timeout_s: float) -> redis.Redis:
    """A redis-py client (hiredis parses replies when installed). Short socket timeouts: a
    Redis that stops answering costs a request `timeout_s`, not a hang."""
    import redis

    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
        retry_on_timeout=False,
    )


class RedisEpoch:
    """Notices Redis losing its data (a restart without persistence, FLUSHALL)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.current: str | None = None
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def on_reset(self, listener: Callable[[], None]) -> None:
        """`listener()` runs (on the checking thread) each time Redis is found empty."""
        self._listeners.append(listener)

    def check(self) -> bool:
        """Read the epoch (setting it if absent). True when Redis had lost it since the last
        check: the listeners have been told. Raises redis errors when Redis is unreachable."""
        with self._lock:
            fresh = secrets.token_hex(8)
            # SET NX GET: one round trip that sets the epoch if missing and says what it was.
            previous = self.client.set(EPOCH_KEY, fresh, nx=True, get=True)
            value = fresh if previous is None else previous.decode()
            reset = self.current is not None and value != self.current
            if previous is None and self.current is None:
                # Our first look and Redis was empty: whatever we keep there must be filled too.
                reset = True
            self.current = value
        if reset:
            log.warning("Redis holds none of this newsroom's data (new or emptied): refilling")
            for listener in self._listeners:
                try:
                    listener()
                except Exception:
                    log.exception("refill after a Redis reset failed; will retry on next reset")
        return reset


@contextmanager
def redis_lock(client: redis.Redis, name: str, ttl_s: int) -> Iterator[bool]:
    """A best-effort mutex across processes: yields whether this process holds it. It expires
    after `ttl_s` (a holder that dies does not block others forever)."""
    key = f"{PREFIX}lock:{name}"
    token = secrets.token_hex(8)
    held = bool(client.set(key, token, nx=True, ex=ttl_s))
    try:
        yield held
    finally:
        if held:
            # Delete only our own lock (it may have expired and been taken by another).
            client.eval(
                "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
                "end return 0",
                1,
                key,
                token,
            )
