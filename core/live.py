"""Where live state lives: in this process (embedded mode) or in Redis (shared mode).

`LiveState` is the one interface the service composes with; `EmbeddedLiveState` and
`SharedLiveState` are its two implementations, chosen by `live_state(settings)` from
`Settings.mode`. Nothing else in the code base asks which mode it runs in.

What differs between the modes:
- reader profiles: an in-process LRU, or one copy per reader in Redis that every process reads;
- following the change log: after this process's own writes only (it is the only writer), or
  also in a background thread woken by other processes' writes;
- generation: an in-process pool, or a queue on Redis served by `newsroom generation-worker`;
- generation outputs: an in-process LRU, or Redis (both over the `generated` table);
- a lock for once-per-newsroom jobs (the retention purge, a refill): a no-op, or Redis;
- counters every process must agree on (`core.counters`): a dict, or atomic Redis commands.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from core.counters import Counters, LocalCounters, RedisCounters
from core.settings import Settings

if TYPE_CHECKING:
    import redis

    from core.changes import ChangeFollower
    from core.storage import Storage
    from generation.cache import GenerationCache
    from generation.jobs import JobRunner
    from generation.queue import GenerationQueue
    from ranking.profile_store import ProfileCache

log = logging.getLogger(__name__)


class LiveState(ABC):
    mode: str
    counters: Counters  # shared tallies (budgets, caps, experiment counts): see core.counters

    @abstractmethod
    def profile_cache(self, dim: int) -> ProfileCache: ...

    @abstractmethod
    def generation_cache(self, storage: Storage, capacity: int) -> GenerationCache: ...

    @abstractmethod
    def generation_queue(
        self, settings: Settings, runner: Callable[[], JobRunner]
    ) -> GenerationQueue:
        """Where generation jobs run; `runner()` builds this process's models when a local
        queue first needs them."""

    @abstractmethod
    def follow(self, follower: ChangeFollower) -> None:
        """Keep `follower` applying other processes' writes (no-op when there are none)."""

    @abstractmethod
    def changed(self) -> None:
        """This process committed a change: wake the other processes' followers."""

    @abstractmethod
    def once(self, name: str, ttl_s: int) -> contextlib.AbstractContextManager[bool]:
        """A context that yields whether this process should do job `name` now (one process
        of the newsroom at a time)."""

    @abstractmethod
    def on_reset(self, listener: Callable[[], None]) -> None:
        """`listener()` runs when the shared store lost its data (never, in embedded mode)."""

    @abstractmethod
    def on_counters_lost(self, listener: Callable[[], None]) -> None:
        """`listener()` runs whenever `counters` start empty: now, for a process's own
        counters; when the shared store lost its data, for Redis's."""

    @abstractmethod
    def start_watching(self, every_tick: Callable[[], None] | None = None) -> None:
        """Begin noticing the shared store losing its data; `every_tick()` also runs on each
        check (repairs that wait for the shared store to come back)."""

    def status(self) -> dict[str, Any]:
        return {"mode": self.mode, "pid": os.getpid()}

    @abstractmethod
    def close(self) -> None: ...


class EmbeddedLiveState(LiveState):
    mode = "embedded"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.counters = LocalCounters()

    def profile_cache(self, dim: int) -> ProfileCache:
        from ranking.profile_store import LocalProfileCache

        return LocalProfileCache()

    def generation_cache(self, storage: Storage, capacity: int) -> GenerationCache:
        from generation.cache import LocalGenerationCache

        return LocalGenerationCache(storage, capacity)

    def generation_queue(
        self, settings: Settings, runner: Callable[[], JobRunner]
    ) -> GenerationQueue:
        from generation.queue import LocalGenerationQueue

        config = settings.generation
        # A job thread per batch member: requests waiting together decode as one batch, while
        # `workers` decoder threads (one per core) do the model work.
        return LocalGenerationQueue(config.workers * config.batch_size, config.queue_size, runner)

    def follow(self, follower: ChangeFollower) -> None:
        pass  # the writer calls `catch_up` after each commit; nothing else writes

    def changed(self) -> None:
        pass

    def once(self, name: str, ttl_s: int) -> contextlib.AbstractContextManager[bool]:
        return contextlib.nullcontext(True)

    def on_reset(self, listener: Callable[[], None]) -> None:
        pass  # in-process state is lost only with the process

    def on_counters_lost(self, listener: Callable[[], None]) -> None:
        listener()  # this process's counters were born empty

    def start_watching(self, every_tick: Callable[[], None] | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class SharedLiveState(LiveState):
    """Redis (redis-py with hiredis) beside PostgreSQL. Also watches Redis's epoch: when
    Redis comes back empty, the reset listeners refill it from the database without a
    restart."""

    mode = "shared"

    def __init__(self, settings: Settings) -> None:
        from core.shared import RedisEpoch, connect

        assert settings.redis_url is not None
        self.settings = settings
        self.redis: redis.Redis = connect(settings.redis_url, settings.shared.redis_timeout_seconds)
        self.epoch = RedisEpoch(self.redis)
        self.counters = RedisCounters(self.redis)
        self._followers: list[ChangeFollower] = []
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._every_tick: Callable[[], None] | None = None
        self.resets = 0

    def profile_cache(self, dim: int) -> ProfileCache:
        from ranking.profile_store import RedisProfileCache

        return RedisProfileCache(self.redis, dim)

    def generation_cache(self, storage: Storage, capacity: int) -> GenerationCache:
        from generation.cache import RedisGenerationCache

        return RedisGenerationCache(storage, self.redis)

    def generation_queue(
        self, settings: Settings, runner: Callable[[], JobRunner]
    ) -> GenerationQueue:
        from generation.queue import RedisGenerationQueue

        assert settings.redis_url is not None
        return RedisGenerationQueue(settings.redis_url, self.redis, settings.generation)

    def follow(self, follower: ChangeFollower) -> None:
        follower.start(self.settings.shared.change_poll_seconds, wake=self.redis)
        self._followers.append(follower)

    def changed(self) -> None:
        from core.shared import CHANGES_CHANNEL

        try:
            self.redis.publish(CHANGES_CHANNEL, b"1")
        except Exception as exc:  # the followers poll anyway: a lost wake-up costs a poll
            log.debug("could not wake followers: %s", exc)

    def once(self, name: str, ttl_s: int) -> contextlib.AbstractContextManager[bool]:
        from core.shared import redis_lock

        return redis_lock(self.redis, name, ttl_s)

    def on_reset(self, listener: Callable[[], None]) -> None:
        self.epoch.on_reset(listener)

    def on_counters_lost(self, listener: Callable[[], None]) -> None:
        self.epoch.on_reset(listener)

    def start_watching(self, every_tick: Callable[[], None] | None = None) -> None:
        """Check the epoch now (refilling a new or emptied Redis) and then every
        `shared.health_seconds` in a daemon thread."""
        self._every_tick = every_tick
        try:
            self._check()
        except Exception as exc:
            log.warning("Redis unreachable at start: %s", exc)
        self._watcher = threading.Thread(target=self._watch, name="newsroom-redis", daemon=True)
        self._watcher.start()

    def _check(self) -> None:
        if self.epoch.check():
            self.resets += 1
        if self._every_tick is not None:
            self._every_tick()

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.shared.health_seconds):
            try:
                self._check()
            except Exception as exc:
                log.warning("Redis unreachable: %s", exc)

    def status(self) -> dict[str, Any]:
        try:
            reachable = bool(self.redis.ping())
        except Exception:
            reachable = False
        return {
            "mode": self.mode,
            "pid": os.getpid(),
            "redis": reachable,
            "redis_resets": self.resets,
        }

    def close(self) -> None:
        self._stop.set()
        for follower in self._followers:
            follower.stop()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        self.redis.close()


def live_state(settings: Settings) -> LiveState:
    """The implementation for `settings.mode`."""
    return SharedLiveState(settings) if settings.mode == "shared" else EmbeddedLiveState(settings)


@contextlib.contextmanager
def suppressed(what: str) -> Iterator[None]:
    """Log and swallow a failure of best-effort work (a wake-up, a cache write)."""
    try:
        yield
    except Exception as exc:
        log.warning("%s failed: %s", what, exc)
