"""A headline test in shared mode: this process and a second one (spawned, with its own engine
and Redis connection) over one PostgreSQL and one Redis. A reader keeps one variant whichever
process serves them, an impression sent to both is counted once, both report the same counts,
a lock made on one holds on the other, and a refill after Redis lost its data restores them."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from core.counters import RedisCounters
from core.domain import Article, EventDraft, utcnow
from core.headline_tests import HeadlineStore, HeadlineTestService
from core.storage import make_engine
from tests.postgres import TemporaryPostgres
from tests.redis_server import TemporaryRedis

TITLE = "Stocks rally as central bank holds interest rates"
VARIANTS = [TITLE, "Markets surge after rates stay put", "Why the pause sent shares higher"]
CACHE_TTL_S = 0.3
_SERVICES: dict[tuple[str, str], HeadlineTestService] = {}  # one per process and newsroom


def _article(article_id: str) -> Article:
    now = utcnow()
    return Article(article_id, 1, TITLE, "", None, None, None, None, now, now, "hash")


def headline_service(url: str, redis_url: str) -> HeadlineTestService:
    """This process's service: its own engine and Redis connection."""
    key = (url, redis_url)
    if key not in _SERVICES:
        import redis

        _SERVICES[key] = HeadlineTestService(
            HeadlineStore(make_engine(url)),
            RedisCounters(redis.Redis.from_url(redis_url)),
            _article,
            lambda user: f"p-{user}",
            lambda user, event_id: f"e-{user}-{event_id}",
            max_chars=1000,
            cache_ttl_s=CACHE_TTL_S,
        )
    return _SERVICES[key]


def serve(service: HeadlineTestService, readers: list[str]) -> list[str | None]:
    """Each reader's variant, and their impression of it reported (on 4 threads at once)."""

    def one(reader: str) -> str | None:
        shown = service.headline("a1", reader)
        draft = EventDraft(reader, "a1", "impression", headline_variant=shown.variant_id)
        service.record_checked(service.check_events([("", draft)]))
        return shown.variant_id

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, readers))


def counts(service: HeadlineTestService, test_id: str) -> dict[str, Any]:
    report = service.report(test_id)
    return {
        "status": report.test.status,
        "winner": report.test.winner,
        "variants": {v.variant.variant_id: (v.impressions, v.clicks) for v in report.variants},
        "p_best": [v.p_best for v in report.variants],
    }


def in_other_process(url: str, redis_url: str, step: str, *args: Any) -> Any:
    """Run in the spawned process: `step` on its own service."""
    service = headline_service(url, redis_url)
    if step == "serve":
        return serve(service, *args)
    if step == "counts":
        return counts(service, *args)
    if step == "refill":
        return service.refill_counters()
    raise ValueError(step)


def test_one_headline_test_across_two_processes(
    shared_postgres: TemporaryPostgres, shared_redis: TemporaryRedis
) -> None:
    url, redis_url = shared_postgres.new_database(), shared_redis.url
    shared_redis.client().flushall()
    here = headline_service(url, redis_url)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as other:

        def there(step: str, *args: Any) -> Any:
            return other.submit(in_other_process, url, redis_url, step, *args).result(120)

        test = asyncio.run(here.create("a1", VARIANTS))
        time.sleep(CACHE_TTL_S)
        readers = [f"reader-{n}" for n in range(40)]
        # Every reader is served by both processes at once: one assignment, one impression.
        mine = other.submit(in_other_process, url, redis_url, "serve", readers)
        assert serve(here, readers) == mine.result(120)
        assert None not in mine.result()
        expected = counts(here, test.id)
        assert sum(n for n, _ in expected["variants"].values()) == 40
        assert there("counts", test.id) == expected  # same counts, same p_best

        # Redis loses its data: a refill on the other process restores the tallies and the
        # assignments, and no impression is counted twice.
        shared_redis.client().flushall()
        there("refill")
        assert serve(here, readers[:10]) == mine.result()[:10]
        assert there("counts", test.id) == counts(here, test.id) == expected

        locked = here.lock(test.id, "v2")
        assert locked.test.status == "locked" and locked.test.winner == "v2"
        time.sleep(CACHE_TTL_S)  # the other process's cache of live tests expires
        assert there("serve", [*readers[:5], "newcomer"]) == ["v2"] * 6
        after = there("counts", test.id)
        assert after["status"] == "locked" and after["winner"] == "v2"
        assert after == counts(here, test.id)
