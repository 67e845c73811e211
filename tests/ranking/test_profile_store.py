"""Profile caches: a copy only ever replaces an older one, a deleted reader stays deleted, and
the Redis cache answers like the local one."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from core.storage import Storage, StoredProfile, profile_version, rewrite_version
from ranking.profile import ProfileConfig, UserProfile
from ranking.profile_store import (
    LocalProfileCache,
    ProfileStore,
    RedisProfileCache,
    VersionedProfile,
)


def _profile(user: str, clicks: int) -> UserProfile:
    profile = UserProfile(user, 4)
    for key in range(clicks):
        vector = np.eye(4, dtype=np.float32)[key % 4]
        profile.apply("click", key, vector, "sport", datetime.now(UTC), ProfileConfig())
    profile.apply("dismiss", 99, np.ones(4, np.float32), None, datetime.now(UTC), ProfileConfig())
    return profile


def test_blob_round_trip_keeps_every_field() -> None:
    profile = _profile("p_1", 7)
    copy = UserProfile.from_blob("p_1", profile.to_blob())
    assert copy.state_json() == profile.state_json()
    np.testing.assert_array_equal(copy.vector_sum, profile.vector_sum)


@pytest.fixture(params=["local", "redis"])
def cache(request, redis_client):  # type: ignore[no-untyped-def]
    return LocalProfileCache() if request.param == "local" else RedisProfileCache(redis_client, 4)


def test_an_older_copy_never_replaces_a_newer_one(cache) -> None:  # type: ignore[no-untyped-def]
    newer = VersionedProfile(_profile("p_a", 3), profile_version(9))
    older = VersionedProfile(_profile("p_a", 1), profile_version(4))
    cache.publish([newer])
    cache.fill("p_a", older)  # a feed that read the database before the write
    cache.publish([older])  # a slow writer
    found = cache.lookup("p_a")
    assert found.known and found.profile.n_events == newer.profile.n_events


def test_a_deleted_reader_is_never_brought_back(cache) -> None:  # type: ignore[no-untyped-def]
    cache.publish([VersionedProfile(_profile("p_b", 2), profile_version(5))])
    cache.forget("p_b", rewrite_version(8))
    cache.fill("p_b", VersionedProfile(_profile("p_b", 2), profile_version(5)))  # stale read
    found = cache.lookup("p_b")
    assert found.known and found.profile is None
    # The reader comes back with a new event: its seq is above the tombstone.
    cache.publish([VersionedProfile(_profile("p_b", 1), profile_version(9))])
    assert cache.lookup("p_b").profile is not None


def test_redis_cache_is_complete_after_a_refill(tmp_path, redis_client) -> None:  # type: ignore[no-untyped-def]
    storage = Storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    profile = _profile("p_c", 2)
    storage.record_events(
        [],
        lambda _stored: [
            StoredProfile("p_c", profile.vector_sum.tobytes(), profile.state_json(), 6)
        ],
    )
    cache = RedisProfileCache(redis_client, 4)
    assert not cache.lookup("p_nobody").known  # incomplete: ask the database
    assert not cache.lookup("p_c").known
    assert cache.refill(storage) == 1
    assert cache.lookup("p_c").profile is not None
    assert cache.lookup("p_nobody").known  # complete now: an unknown reader has no profile


def test_store_reads_through_and_survives_a_cache_outage(tmp_path, redis_client) -> None:  # type: ignore[no-untyped-def]
    import redis

    storage = Storage(f"sqlite:///{tmp_path / 'db.sqlite'}", b"k" * 32)
    store = ProfileStore(storage, RedisProfileCache(redis_client, 4), 4)
    assert store.get("someone") is None
    broken = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    offline = ProfileStore(storage, RedisProfileCache(broken, 4), 4)
    assert offline.get("someone") is None  # the database answered instead
