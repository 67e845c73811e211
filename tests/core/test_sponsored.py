"""Delivery control on the service itself: budgets under concurrent clicks (in-process
counters and Redis), pacing by the clock, counters refilled from the ad events."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from core.ad_store import AdStore
from core.campaigns import CampaignService
from core.counters import Counters, LocalCounters, RedisCounters
from core.domain import AdEventDraft
from core.settings import AdsConfig
from core.sponsored import SponsoredService, day_share
from core.storage import make_engine
from ranking.ad_head import AdHead

PRICE = 0.4


def _encode(texts: list[str]) -> np.ndarray:
    rng = np.random.default_rng(len(texts))
    vectors = rng.normal(size=(len(texts), 8)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def sponsored_service(url: str, counters: Counters, clock=None) -> SponsoredService:  # type: ignore[no-untyped-def]
    store = AdStore(make_engine(url))
    campaigns = CampaignService(store, _encode, lambda: [])
    return SponsoredService(
        store,
        campaigns,
        counters,
        None,
        AdHead(),
        AdsConfig(),
        lambda user: f"p-{user}",
        lambda user, event_id: f"e-{user}-{event_id}",
        lambda: None,
        **({"clock": clock} if clock else {}),
    )


def campaign_spec(**changes: object) -> dict:
    return {
        "advertiser": "Acme",
        "creative": {"title": "Shoes", "url": "https://example.com"},
        "bid_cpc": PRICE,
        "daily_budget": 2.5 * PRICE,
        **changes,
    }


def _events(service: SponsoredService, drafts: list[AdEventDraft]) -> None:
    service.record_checked(service.check_events([("", d) for d in drafts]))


def click_concurrently(services: list[SponsoredService], campaign_id: str, readers: int) -> None:
    """Every reader has an impression; then all click at once, spread over `services`."""
    for n in range(readers):
        _events(services[n % len(services)], [AdEventDraft(f"r{n}", campaign_id, "impression")])

    def click(n: int) -> None:
        _events(services[n % len(services)], [AdEventDraft(f"r{n}", campaign_id, "click")])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(click, range(readers)))


@pytest.fixture(params=["local", "redis"])
def counters(request, redis_client) -> Counters:  # type: ignore[no-untyped-def]
    return LocalCounters() if request.param == "local" else RedisCounters(redis_client)


def test_daily_budget_holds_under_concurrent_clicks(tmp_path: Path, counters: Counters) -> None:
    service = sponsored_service(f"sqlite:///{tmp_path / 'ads.db'}", counters)
    campaign = service.campaigns.create(campaign_spec())
    click_concurrently([service], campaign.id, readers=40)
    report = service.report(campaign.id)
    # 2.5 clicks' worth: the third click crosses it, the fourth never gets in.
    assert report["billed_clicks"] == 3 and report["clicks"] == 40
    assert report["spend"] == pytest.approx(3 * PRICE)
    assert report["spend"] <= campaign.daily_budget + PRICE
    assert report["pacing"]["spend_today"] == pytest.approx(report["spend"])


def test_total_budget_holds_across_days(tmp_path: Path) -> None:
    service = sponsored_service(f"sqlite:///{tmp_path / 'ads.db'}", LocalCounters())
    campaign = service.campaigns.create(campaign_spec(daily_budget=10.0, total_budget=PRICE))
    yesterday = datetime.now(UTC) - timedelta(days=1)
    for n, ts in enumerate([yesterday, datetime.now(UTC)]):
        _events(service, [AdEventDraft(f"r{n}", campaign.id, "impression", ts=ts)])
        _events(service, [AdEventDraft(f"r{n}", campaign.id, "click", ts=ts)])
    report = service.report(campaign.id)
    assert report["billed_clicks"] == 1 and report["spend"] == pytest.approx(PRICE)
    assert [d["billed_clicks"] for d in report["days"]] == [1, 0]


def test_counters_are_refilled_from_the_ad_events(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ads.db'}"
    first = sponsored_service(url, LocalCounters())
    campaign = first.campaigns.create(campaign_spec(frequency_cap=1))
    _events(first, [AdEventDraft("r1", campaign.id, "impression")])
    _events(first, [AdEventDraft("r1", campaign.id, "click")])
    # A restart: new, empty counters, refilled from the database.
    again = sponsored_service(url, LocalCounters())
    again.refill_counters()
    assert again.pacing(campaign)["spend_today"] == pytest.approx(PRICE)
    view = again.reader_view(None)
    (state,) = again.eligibility([campaign], view, "p-r1", datetime.now(UTC))
    assert state.blocked == "frequency cap reached for this reader today"


def test_pacing_follows_the_clock(tmp_path: Path) -> None:
    midnight = datetime(2030, 5, 1, tzinfo=UTC)
    moment = {"now": midnight + timedelta(hours=12)}
    service = sponsored_service(
        f"sqlite:///{tmp_path / 'ads.db'}", LocalCounters(), clock=lambda: moment["now"]
    )
    campaign = service.campaigns.create(campaign_spec(daily_budget=10 * PRICE))
    assert day_share(midnight + timedelta(hours=6)) == pytest.approx(0.25)
    today = moment["now"].date()
    service.counters.add(f"ads:spend:{campaign.id}:{today}", 6 * PRICE)  # 60% at noon
    view = service.reader_view(None)
    (state,) = service.eligibility([campaign], view, None, moment["now"])
    assert state.blocked == "ahead of its pace for the day"
    assert service.pacing(campaign)["state"] == "ahead"
    moment["now"] = midnight + timedelta(hours=18)  # 75% + slack allowed by now
    (state,) = service.eligibility([campaign], view, None, moment["now"])
    assert state.blocked is None and service.pacing(campaign)["state"] == "on_pace"
