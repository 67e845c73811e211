"""Shared counters: a budget is never overspent by more than one amount, even under concurrent
spenders, and a claim is won once; the same contract in process and on Redis."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from core.counters import LocalCounters, RedisCounters


@pytest.fixture(params=["local", "redis"])
def counters(request, redis_client):  # type: ignore[no-untyped-def]
    return LocalCounters() if request.param == "local" else RedisCounters(redis_client)


def test_concurrent_spend_stops_within_one_amount_of_the_limit(counters) -> None:  # type: ignore[no-untyped-def]
    def spend(_n: int) -> bool:
        return counters.add_if_under("budget", 0.3, 10.0)[0]

    with ThreadPoolExecutor(8) as pool:
        accepted = sum(pool.map(spend, range(200)))
    total = counters.get("budget")
    assert total == pytest.approx(accepted * 0.3)
    assert 10.0 <= total < 10.0 + 0.3 + 1e-9


def test_claims_adds_and_refills(counters) -> None:  # type: ignore[no-untyped-def]
    assert counters.claim("click:r1:c1", ttl_s=60) is True
    assert counters.claim("click:r1:c1", ttl_s=60) is False
    assert counters.add("views", 2) == 2 and counters.add("views") == 3
    counters.set_many({"views": 7, "other": 1.5})
    assert counters.get_many(["views", "other", "missing"]) == [7.0, 1.5, 0.0]
