"""Generation caches: one lookup is one hit or one miss; outputs outlive the fast layer in the
table; a reader's own outputs can be found and dropped."""

from __future__ import annotations

import pytest

from core.storage import Storage
from generation.cache import LocalGenerationCache, RedisGenerationCache, reader_segment


@pytest.fixture(params=["local", "redis"])
def make_cache(request, tmp_path, redis_client):  # type: ignore[no-untyped-def]
    storage = Storage(f"sqlite:///{tmp_path / 'db.sqlite'}")

    def make():  # type: ignore[no-untyped-def]
        if request.param == "local":
            return LocalGenerationCache(storage, 16)
        return RedisGenerationCache(storage, redis_client)

    return make


def test_a_cold_lookup_counts_one_miss_and_a_put_is_a_hit_after(make_cache) -> None:  # type: ignore[no-untyped-def]
    cache = make_cache()
    assert cache.get("k1") is None
    assert cache.counts() == (0, 1)
    cache.put("k1", "a1", {"article_id": "a1", "segment": "generic", "summary": "s"})
    assert cache.get("k1")["summary"] == "s"
    assert cache.counts() == (1, 1) and cache.hit_rate == 0.5


def test_outputs_survive_in_the_table_and_a_readers_own_are_forgotten(make_cache) -> None:  # type: ignore[no-untyped-def]
    cache = make_cache()
    mine = reader_segment("p_x")
    cache.put("k2", "a1", {"article_id": "a1", "segment": mine, "summary": "for x"})
    cache.forget_segment(mine)
    # The fast copy is gone; the table still has it until the reader's rows are deleted.
    fresh = make_cache()
    assert fresh.get("k2")["summary"] == "for x"
