"""Reader profiles as the feed reads them: a cache in front of the `profiles` table.

One interface, two implementations, chosen from `Settings` by the service:
- `LocalProfileCache` (embedded mode): an LRU of profile objects in this process.
- `RedisProfileCache` (shared mode): one copy per reader in Redis, read by every API process,
  so a click or dismiss recorded through any process is in the very next feed from any other.

The database is the source of truth. Every cached copy carries its `version` (see
`core.storage.profile_version`), and a copy only ever replaces an older one: a slow writer, or
a feed that loaded a profile just before an event changed it, cannot put back a stale copy; a
deleted reader leaves a tombstone at a version above everything they had, so nothing brings
them back.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.storage import Storage, StoredProfile
from ranking.profile import UserProfile

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class Lookup:
    """What a cache knows of a reader: `known` False means ask the database."""

    known: bool
    profile: UserProfile | None = None


UNKNOWN = Lookup(False)
ABSENT = Lookup(True, None)


@dataclass(slots=True, frozen=True)
class VersionedProfile:
    profile: UserProfile
    version: int


class ProfileCache(ABC):
    """Keyed by pseudonym: raw reader ids never reach a cache."""

    @abstractmethod
    def lookup(self, pseudonym: str) -> Lookup: ...

    @abstractmethod
    def fill(self, pseudonym: str, stored: VersionedProfile | None) -> None:
        """After a database read: keep it unless a newer copy (or a tombstone) is there."""

    @abstractmethod
    def publish(self, profiles: Sequence[VersionedProfile]) -> None:
        """After a commit: the new profiles, each replacing only older copies."""

    @abstractmethod
    def forget(self, pseudonym: str, version: int) -> None:
        """A deleted reader: drop the copy, and refuse any copy older than `version`."""

    def refill(self, storage: Storage) -> int:
        """Load every stored profile (after the cache lost its data); returns how many."""
        return 0


class LocalProfileCache(ProfileCache):
    """An LRU of profile objects (embedded mode: this process is the only writer)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, VersionedProfile] = OrderedDict()
        self._tombstones: dict[str, int] = {}
        self._lock = threading.Lock()

    def lookup(self, pseudonym: str) -> Lookup:
        with self._lock:
            found = self._items.get(pseudonym)
            if found is None:
                return ABSENT if pseudonym in self._tombstones else UNKNOWN
            self._items.move_to_end(pseudonym)
            return Lookup(True, found.profile)

    def _put(self, pseudonym: str, item: VersionedProfile) -> None:
        # Caller holds the lock.
        current = self._items.get(pseudonym)
        if current is not None and current.version >= item.version:
            return
        if self._tombstones.get(pseudonym, -1) >= item.version:
            return
        self._tombstones.pop(pseudonym, None)
        self._items[pseudonym] = item
        self._items.move_to_end(pseudonym)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def fill(self, pseudonym: str, stored: VersionedProfile | None) -> None:
        if stored is None:
            return  # an unknown reader is asked of the database each time (no negative entry)
        with self._lock:
            self._put(pseudonym, stored)

    def publish(self, profiles: Sequence[VersionedProfile]) -> None:
        with self._lock:
            for item in profiles:
                self._put(item.profile.user_id, item)

    def forget(self, pseudonym: str, version: int) -> None:
        with self._lock:
            self._items.pop(pseudonym, None)
            self._tombstones[pseudonym] = version


# KEYS[1] = the reader's key; ARGV = version, blob ('' for a tombstone), tombstone TTL seconds.
# Replaces the copy only when ARGV's version is newer than the stored one (copy or tombstone).
_PUT_IF_NEWER = """
local current = redis.call('HGET', KEYS[1], 'v')
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], 'b')
  redis.call('HSET', KEYS[1], 'v', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
else
  redis.call('HSET', KEYS[1], 'v', ARGV[1], 'b', ARGV[2])
  redis.call('PERSIST', KEYS[1])
end
return 1
"""


class RedisProfileCache(ProfileCache):
    """One hash per reader (`v` version, `b` the profile blob). `newsroom:profiles:complete`
    says every stored profile is here (set by a refill, gone when Redis is emptied): then a
    missing reader is a reader without a profile, and no feed needs the database."""

    COMPLETE_KEY = "newsroom:profiles:complete"
    TOMBSTONE_TTL_S = 7 * 86400

    def __init__(self, client: redis.Redis, dim: int) -> None:
        from core.shared import reader_key

        self.client = client
        self.dim = dim
        self._key = lambda pseudonym: reader_key("p", pseudonym)
        self._put_if_newer = client.register_script(_PUT_IF_NEWER)

    def lookup(self, pseudonym: str) -> Lookup:
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(self._key(pseudonym), "v", "b")
        pipe.exists(self.COMPLETE_KEY)
        (version, blob), complete = pipe.execute()
        if blob:
            return Lookup(True, UserProfile.from_blob(pseudonym, blob))
        if version is not None or complete:
            return ABSENT  # a tombstone, or a complete cache without them
        return UNKNOWN

    def _put(self, pipe: redis.client.Pipeline, pseudonym: str, version: int, blob: bytes) -> None:
        self._put_if_newer(
            keys=[self._key(pseudonym)],
            args=[version, blob, self.TOMBSTONE_TTL_S],
            client=pipe,
        )

    def fill(self, pseudonym: str, stored: VersionedProfile | None) -> None:
        if stored is None:
            return
        pipe = self.client.pipeline(transaction=False)
        self._put(pipe, pseudonym, stored.version, stored.profile.to_blob())
        pipe.execute()

    def publish(self, profiles: Sequence[VersionedProfile]) -> None:
        if not profiles:
            return
        pipe = self.client.pipeline(transaction=False)
        for item in profiles:
            self._put(pipe, item.profile.user_id, item.version, item.profile.to_blob())
        pipe.execute()

    def forget(self, pseudonym: str, version: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        self._put(pipe, pseudonym, version, b"")
        pipe.execute()

    def refill(self, storage: Storage, batch: int = 500) -> int:
        """Copy every stored profile in (never over a newer copy), then mark the cache
        complete. Feeds read the database for readers not copied yet meanwhile."""
        count = 0
        pipe = self.client.pipeline(transaction=False)
        for stored in storage.iter_profiles():
            profile = to_profile(stored)
            self._put(pipe, stored.pseudonym, stored.version, profile.to_blob())
            count += 1
            if count % batch == 0:
                pipe.execute()
        pipe.execute()
        self.client.set(self.COMPLETE_KEY, "1")
        return count


def to_profile(stored: StoredProfile) -> UserProfile:
    return UserProfile.from_state(stored.pseudonym, stored.vector, stored.state)


class ProfileStore:
    """Profiles by reader id: the cache first, the database on a miss (read-through)."""

    def __init__(self, storage: Storage, cache: ProfileCache, dim: int) -> None:
        self.storage = storage
        self.cache = cache
        self.dim = dim

    def get(self, user_id: str) -> UserProfile | None:
        return self.get_by_pseudonym(self.storage.pseudonym(user_id))

    def get_by_pseudonym(self, pseudonym: str) -> UserProfile | None:
        try:
            found = self.cache.lookup(pseudonym)
        except Exception as exc:  # Redis unreachable: the database still answers
            if not _is_cache_outage(exc):
                raise
            log.warning("profile cache unavailable (%s): reading the database", exc)
            return self._from_database(pseudonym, fill=False)
        if found.known:
            return found.profile
        return self._from_database(pseudonym, fill=True)

    def _from_database(self, pseudonym: str, fill: bool) -> UserProfile | None:
        stored = self.storage.load_profile(pseudonym)
        if stored is None:
            return None
        item = VersionedProfile(to_profile(stored), stored.version)
        if fill:
            try:
                self.cache.fill(pseudonym, item)
            except Exception as exc:
                if not _is_cache_outage(exc):
                    raise
        return item.profile

    def publish(self, stored: Iterable[StoredProfile]) -> list[VersionedProfile]:
        items = [VersionedProfile(to_profile(s), s.version) for s in stored]
        self.cache.publish(items)
        return items

    def forget(self, user_id: str, version: int) -> None:
        self.cache.forget(self.storage.pseudonym(user_id), version)


def _is_cache_outage(exc: Exception) -> bool:
    try:
        import redis
    except ImportError:  # pragma: no cover - redis is a dependency
        return False
    return isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError)
