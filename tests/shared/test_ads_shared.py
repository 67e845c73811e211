"""Budgets in shared mode: two "processes" (own engines and Redis connections) over one
PostgreSQL and one Redis take concurrent clicks on one campaign; the day's spend still ends at
most one click above its budget, and the report counts what was sent."""

from __future__ import annotations

import pytest

from core.counters import RedisCounters
from tests.core.test_sponsored import PRICE, campaign_spec, click_concurrently, sponsored_service
from tests.postgres import TemporaryPostgres
from tests.redis_server import TemporaryRedis


def test_budget_holds_across_processes_on_postgres_and_redis(
    shared_postgres: TemporaryPostgres, shared_redis: TemporaryRedis
) -> None:
    url = shared_postgres.new_database()
    clients = [shared_redis.client() for _ in range(2)]
    clients[0].flushall()
    services = [sponsored_service(url, RedisCounters(c)) for c in clients]
    campaign = services[0].campaigns.create(campaign_spec())
    click_concurrently(services, campaign.id, readers=60)
    for service in services:  # both processes see the same facts and the same counters
        report = service.report(campaign.id)
        assert report["impressions"] == 60 and report["clicks"] == 60
        assert report["billed_clicks"] == 3
        assert report["spend"] == pytest.approx(3 * PRICE)
        assert report["spend"] <= campaign.daily_budget + PRICE
        assert report["pacing"]["spend_today"] == pytest.approx(report["spend"])
    for client in clients:
        client.close()
