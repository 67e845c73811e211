"""Sponsored content through the API: campaigns, placement in feeds, targeting, caps, pacing,
charging, reports (counts equal to the events sent; k-anonymity and DP), readers' rights.

One newsroom per module (MIND news, readers with real profiles); each test makes its own
campaigns and readers and deletes its campaigns after, so no test depends on another."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.datasets import read_articles
from core.service import NewsroomService
from core.settings import AdsConfig, Settings
from generation.segments import InterestSegments
from retrieval.embedder import Embedder
from tests.conftest import data_path

BID = 5.0


@pytest.fixture(scope="module")
def newsroom(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, postgres_server
) -> Iterator[tuple[TestClient, NewsroomService, dict[str, list[str]]]]:  # type: ignore[no-untyped-def]
    root: Path = tmp_path_factory.mktemp("ads")
    database_url = postgres_server.new_database() if postgres_server is not None else None
    settings = Settings(
        data_dir=root / "var",
        database_url=database_url,
        ads=AdsConfig(report_min_readers=3),
        _env_file=None,
    )  # type: ignore[call-arg]
    service = NewsroomService.from_settings(settings, embedder=embedder, generation=False)
    drafts = list(islice(read_articles(data_path("mind_demo_news"), "mind"), 200))
    service.articles.ingest(drafts)
    by_category: dict[str, list[str]] = {}
    for draft in drafts:
        by_category.setdefault(draft.category or "", []).append(draft.id or "")
    # Segments of a few sports and food readers (what `GET /v1/segments` lists).
    readers = [(f"seed-sports-{n}", "sports") for n in range(4)]
    readers += [(f"seed-food-{n}", "foodanddrink") for n in range(4)]
    with TestClient(create_app(settings, service)) as client:
        for reader, category in readers:
            _read(client, reader, by_category[category][:6])
        profiles = [service.recommender.profiles.get(r) for r, _ in readers]  # type: ignore[union-attr]
        vectors = np.stack([p.vector for p in profiles])  # type: ignore[union-attr]
        InterestSegments.fit(vectors, [p.category_affinity() for p in profiles], k=2).save(  # type: ignore[union-attr]
            settings.data_dir / "segments"
        )
        yield client, service, by_category
    service.close()


def _read(client: TestClient, reader: str, article_ids: list[str]) -> None:
    events = [{"user_id": reader, "article_id": a, "type": "click"} for a in article_ids]
    answer = client.post("/v1/events", json={"events": events})
    assert answer.status_code == 200, answer.text


@pytest.fixture
def ads(newsroom) -> Iterator[Ads]:  # type: ignore[no-untyped-def]
    client, service, by_category = newsroom
    helper = Ads(client, service, by_category)
    yield helper
    for campaign_id in helper.created:
        client.delete(f"/v1/campaigns/{campaign_id}")
    service.sponsored.clock = helper.original_clock


class Ads:
    def __init__(self, client: TestClient, service: NewsroomService, by_category) -> None:  # type: ignore[no-untyped-def]
        self.client, self.service, self.by_category = client, service, by_category
        self.created: list[str] = []
        self.original_clock = service.sponsored.clock

    def campaign(self, **changes: object) -> dict:
        body = {
            "advertiser": "Acme Outdoors",
            "creative": {
                "title": "Trail running shoes for every season",
                "body": "Light, grippy and waterproof.",
                "url": "https://example.com/shoes",
                "category": "sports",
            },
            "bid_cpc": BID,
            "daily_budget": 100.0,
            **changes,
        }
        answer = self.client.post("/v1/campaigns", json=body)
        assert answer.status_code == 201, answer.text
        self.created.append(answer.json()["id"])
        return answer.json()

    def reader(self, category: str) -> str:
        reader = f"{category}-{uuid.uuid4().hex[:8]}"
        _read(self.client, reader, self.by_category[category][:6])
        return reader

    def feed(self, reader: str, ads: int = 2, k: int = 10) -> list[dict]:
        answer = self.client.get(f"/v1/users/{reader}/feed", params={"k": k, "ads": ads})
        assert answer.status_code == 200, answer.text
        return answer.json()["items"]

    def sponsored(self, reader: str, campaign_id: str, ads: int = 2) -> list[dict]:
        return [i for i in self.feed(reader, ads) if i.get("campaign_id") == campaign_id]

    def event(self, reader: str, campaign_id: str, kind: str, **extra: object) -> dict:
        body = {"user_id": reader, "campaign_id": campaign_id, "type": kind, **extra}
        answer = self.client.post("/v1/events", json=body)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def report(self, campaign_id: str) -> dict:
        answer = self.client.get(f"/v1/campaigns/{campaign_id}/report")
        assert answer.status_code == 200, answer.text
        return answer.json()


# --- campaigns ---------------------------------------------------------------------------------
def test_campaigns_are_created_read_changed_and_deleted(ads: Ads) -> None:
    made = ads.campaign(targeting={"categories": ["Sports"]}, frequency_cap=3)
    assert made["id"].startswith("c-") and made["status"] == "active"
    assert made["targeting"]["categories"] == ["sports"]
    client = ads.client
    assert client.get(f"/v1/campaigns/{made['id']}").json()["bid_cpc"] == BID
    assert made["id"] in [c["id"] for c in client.get("/v1/campaigns").json()["campaigns"]]
    changed = client.patch(
        f"/v1/campaigns/{made['id']}",
        json={"status": "paused", "creative": {"title": "Winter trail shoes"}},
    ).json()
    assert changed["status"] == "paused" and changed["creative"]["title"] == "Winter trail shoes"
    assert changed["creative"]["url"] == "https://example.com/shoes"  # merged, not replaced
    assert made["id"] in [
        c["id"]
        for c in client.get("/v1/campaigns", params={"status": "paused"}).json()["campaigns"]
    ]
    assert client.delete(f"/v1/campaigns/{made['id']}").status_code == 204
    assert client.get(f"/v1/campaigns/{made['id']}").status_code == 404
    assert client.delete(f"/v1/campaigns/{made['id']}").status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"bid_cpc": 0}, "bid_cpc"),
        ({"bid_cpc": -1.5}, "bid_cpc"),
        ({"daily_budget": 0}, "daily_budget"),
        ({"daily_budget": 1.0}, "daily_budget"),  # below one click at the bid
        ({"total_budget": -3}, "total_budget"),
        ({"start": "2030-01-02T00:00:00Z", "end": "2030-01-01T00:00:00Z"}, "end"),
        ({"targeting": {"segments": ["segment-99"]}}, "targeting.segments"),
        ({"creative": {"title": "x" * 121, "url": "https://e.com"}}, "creative.title"),
        ({"creative": {"title": "t", "url": "https://e.com", "body": "b" * 501}}, "creative.body"),
        ({"creative": {"title": "t", "url": "javascript:alert(1)"}}, "creative.url"),
        ({"frequency_cap": 0}, "frequency_cap"),
        ({"status": "running"}, "status"),
        ({"bid": 2}, "bid"),
    ],
)
def test_bad_campaigns_are_422_naming_the_field(ads: Ads, change: dict, field: str) -> None:
    body = {
        "advertiser": "A",
        "creative": {"title": "T", "url": "https://example.com"},
        "bid_cpc": BID,
        "daily_budget": 100.0,
        **change,
    }
    answer = ads.client.post("/v1/campaigns", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field


def test_a_patch_is_checked_as_a_whole(ads: Ads) -> None:
    made = ads.campaign(start="2030-01-01T00:00:00Z")
    path = f"/v1/campaigns/{made['id']}"
    for body, field in [
        ({"end": "2029-01-01T00:00:00Z"}, "end"),
        ({"bid_cpc": None}, "bid_cpc"),
        ({"targeting": {"segments": ["segment-7"]}}, "targeting.segments"),
    ]:
        answer = ads.client.patch(path, json=body)
        assert answer.status_code == 422 and answer.json()["error"]["field"] == field, body
    assert ads.client.patch("/v1/campaigns/c-0123456789ab", json={}).status_code == 404


# --- placement ---------------------------------------------------------------------------------
def test_sponsored_items_are_added_never_first_and_explained(ads: Ads) -> None:
    reader = ads.reader("sports")
    organic = ads.feed(reader, ads=0)
    made = ads.campaign()
    second = ads.campaign(
        advertiser="Beta Bikes",
        creative={
            "title": "Road bikes for sport riders",
            "url": "https://example.com/bikes",
            "category": "sports",
        },
    )
    items = ads.feed(reader, ads=2)
    sponsored = [n for n, item in enumerate(items) if item["sponsored"]]
    assert sponsored and 0 not in sponsored and len(sponsored) <= 2
    assert all(b - a > 1 for a, b in pairwise(sponsored))
    # The k organic items are all there, in their order.
    assert [i["id"] for i in items if not i["sponsored"]] == [i["id"] for i in organic]
    for n in sponsored:
        item = items[n]
        assert item["campaign_id"] in (made["id"], second["id"])
        assert item["url"].startswith("https://example.com/")
        assert item["explanation"]["text"].startswith(f"Sponsored by {item['advertiser']}.")
        assert item["explanation"]["targeting"] == ["untargeted"]
    assert ads.feed(reader, ads=0) == organic  # ads=0: no sponsored item
    too_many = ads.client.get(f"/v1/users/{reader}/feed", params={"ads": 11})
    assert too_many.status_code == 422 and too_many.json()["error"]["field"] == "ads"


def test_a_pause_holds_from_the_next_feed(ads: Ads) -> None:
    reader = ads.reader("sports")
    made = ads.campaign()
    assert ads.sponsored(reader, made["id"])
    ads.client.patch(f"/v1/campaigns/{made['id']}", json={"status": "paused"})
    assert not ads.sponsored(reader, made["id"])
    ads.client.patch(f"/v1/campaigns/{made['id']}", json={"status": "active"})
    assert ads.sponsored(reader, made["id"])


def test_schedule_start_and_end(ads: Ads) -> None:
    reader = ads.reader("sports")
    now = datetime.now(UTC)
    later = ads.campaign(start=(now + timedelta(hours=1)).isoformat())
    over = ads.campaign(
        start=(now - timedelta(days=2)).isoformat(), end=(now - timedelta(days=1)).isoformat()
    )
    running = ads.campaign(end=(now + timedelta(days=1)).isoformat())
    shown = {i["campaign_id"] for i in ads.feed(reader, ads=3) if i["sponsored"]}
    assert running["id"] in shown and later["id"] not in shown and over["id"] not in shown


def test_targeting_by_category_segment_and_audience(ads: Ads) -> None:
    sports, food = ads.reader("sports"), ads.reader("foodanddrink")
    by_category = ads.campaign(targeting={"categories": ["sports"]})
    assert ads.sponsored(sports, by_category["id"])
    assert not ads.sponsored(food, by_category["id"])
    (item,) = ads.sponsored(sports, by_category["id"])
    assert "you often read sports" in item["explanation"]["text"]
    assert item["explanation"]["targeting"] == ["category:sports"]
    ads.client.delete(f"/v1/campaigns/{by_category['id']}")

    sports_segment = ads.service.sponsored.reader_view(
        ads.service.recommender.profiles.get(sports)  # type: ignore[union-attr]
    ).segment
    assert sports_segment is not None
    by_segment = ads.campaign(targeting={"segments": [sports_segment]})
    assert ads.sponsored(sports, by_segment["id"])
    assert not ads.sponsored(food, by_segment["id"])
    ads.client.delete(f"/v1/campaigns/{by_segment['id']}")

    by_audience = ads.campaign(
        targeting={"audience": "cooks who love recipes, restaurants and dinner ideas"}
    )
    assert ads.sponsored(food, by_audience["id"])
    assert not ads.sponsored(sports, by_audience["id"])
    (item,) = ads.sponsored(food, by_audience["id"])
    assert "cooks who love recipes" in item["explanation"]["text"]
    # Never the reader's history: no title they read is in the explanation.
    read_titles = [
        ads.service.storage.get_article(a).title for a in ads.by_category["foodanddrink"][:6]
    ]
    assert not any(title in item["explanation"]["text"] for title in read_titles)


def test_frequency_cap_counts_impressions_per_reader_per_day(ads: Ads) -> None:
    reader, other = ads.reader("sports"), ads.reader("sports")
    made = ads.campaign(frequency_cap=2)
    for _ in range(2):
        assert ads.sponsored(reader, made["id"])
        ads.event(reader, made["id"], "impression")
    assert not ads.sponsored(reader, made["id"])
    assert ads.sponsored(other, made["id"])  # another reader's cap is their own


# --- charging and reports ----------------------------------------------------------------------
def test_clicks_are_charged_once_after_an_impression_and_reported(ads: Ads) -> None:
    made = ads.campaign()
    cid = made["id"]
    readers = [ads.reader("sports") for _ in range(4)]
    charged = 0.0
    for reader in readers[:3]:
        assert ads.sponsored(reader, cid)
        ads.event(reader, cid, "impression", event_id="imp-1")
        assert ads.event(reader, cid, "impression", event_id="imp-1") == {
            "accepted": 0,
            "duplicates": 1,
        }
    # A click without an impression (reader 4), a repeat click (reader 1): not charged.
    ads.event(readers[3], cid, "click")
    for reader in readers[:2]:
        ads.event(reader, cid, "click")
    ads.event(readers[0], cid, "click")
    ads.event(readers[0], cid, "conversion")
    ads.event(readers[2], cid, "conversion")  # no click first: not attributed
    report = ads.report(cid)
    assert report["impressions"] == 3
    assert report["billed_clicks"] == 2
    assert report["conversions"] == 1
    assert 0 < report["spend"] <= 2 * BID
    charged = report["spend"] / 2
    assert report["avg_cpc"] == pytest.approx(charged, abs=1e-3)
    assert report["ecpm"] == pytest.approx(1000 * report["spend"] / 3, rel=1e-3)
    (today,) = report["days"]
    assert today["impressions"] == 3 and today["spend"] == report["spend"]
    assert report["pacing"]["spend_today"] == pytest.approx(report["spend"])


def test_a_click_costs_its_feed_s_second_price_not_the_bid(ads: Ads) -> None:
    reader = ads.reader("sports")
    ads.campaign(bid_cpc=1.0)  # the runner-up: sets the winner's price
    rich = ads.campaign(bid_cpc=50.0, daily_budget=500.0)
    items = ads.sponsored(reader, rich["id"], ads=1)
    assert items
    ads.event(reader, rich["id"], "impression")
    ads.event(reader, rich["id"], "click")
    spend = ads.report(rich["id"])["spend"]
    assert 0 < spend < 50.0  # the runner-up (cheap) set the price, far below the bid


def test_daily_budget_stops_delivery_and_caps_spend(ads: Ads) -> None:
    made = ads.campaign(bid_cpc=BID, daily_budget=2 * BID)
    cid = made["id"]
    readers = [ads.reader("sports") for _ in range(5)]
    for reader in readers:
        ads.event(reader, cid, "impression")  # unpriced impressions cost the bid
        ads.event(reader, cid, "click")
    report = ads.report(cid)
    assert report["spend"] == pytest.approx(2 * BID)
    assert report["billed_clicks"] == 2 and report["clicks"] == 5
    assert report["pacing"]["state"] == "budget_spent"
    assert not ads.sponsored(ads.reader("sports"), cid)


def test_pacing_throttles_a_campaign_ahead_of_the_day(ads: Ads) -> None:
    made = ads.campaign(bid_cpc=BID, daily_budget=20 * BID)
    cid = made["id"]
    reader = ads.reader("sports")
    ads.event(reader, cid, "impression")
    ads.event(reader, cid, "click")  # 5 of 100 spent
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    # At 00:36 the even pace allows 100 x (0.025 + 0.05 slack) = 7.5: on pace.
    ads.service.sponsored.clock = lambda: today + timedelta(minutes=36)
    fresh = ads.reader("sports")
    assert ads.sponsored(fresh, cid)
    # At midnight it allows 5 (the slack): at 5 spent the campaign waits for the day.
    ads.service.sponsored.clock = lambda: today
    assert not ads.sponsored(fresh, cid)
    assert ads.report(cid)["pacing"]["state"] == "ahead"


def test_audience_breakdowns_are_k_anonymous_noisy_and_name_no_reader(ads: Ads) -> None:
    made = ads.campaign()
    cid = made["id"]
    sports = [ads.reader("sports") for _ in range(8)]
    food = [ads.reader("foodanddrink") for _ in range(2)]  # under k = 3
    for reader in sports + food:
        ads.event(reader, cid, "impression")
    for reader in sports[:4]:
        ads.event(reader, cid, "click")
    report = ads.report(cid)
    audience = report["audience"]
    assert audience["min_readers"] == 3 and audience["epsilon"] == pytest.approx(1.0)
    assert "Laplace" in audience["mechanism"]
    categories = {c["cell"]: c for c in audience["by_category"]}
    assert "foodanddrink" not in categories  # 2 readers: hidden
    assert audience["cells_hidden"] >= 1
    for cell in audience["by_category"] + audience["by_segment"]:
        assert cell["readers"] >= 3 and 0 <= cell["clickers"] <= cell["readers"]
    text = ads.client.get(f"/v1/campaigns/{cid}/report").text
    storage = ads.service.storage
    for reader in sports + food:
        assert reader not in text and storage.pseudonym(reader) not in text
    # Noise: over repeated reports the sports count is not always the true 8.
    counts = {
        next((c["readers"] for c in ads.report(cid)["audience"]["by_category"]), None)
        for _ in range(12)
    }
    assert len(counts) > 1


def test_ad_events_are_exported_and_unlinked_on_deletion(ads: Ads) -> None:
    made = ads.campaign()
    reader = ads.reader("sports")
    ads.event(reader, made["id"], "impression")
    ads.event(reader, made["id"], "click")
    exported = ads.client.get(f"/v1/users/{reader}/export").json()
    assert [e["type"] for e in exported["ad_events"]] == ["impression", "click"]
    deleted = ads.client.delete(f"/v1/users/{reader}").json()
    assert deleted["deleted"]["ad_events"] == 2
    report = ads.report(made["id"])
    assert report["impressions"] == 1 and report["billed_clicks"] == 1  # totals stay
    assert ads.service.sponsored.user_events(reader) == []


def test_ad_events_are_validated(ads: Ads) -> None:
    made = ads.campaign()
    reader = ads.reader("sports")
    cases = [
        ({"user_id": reader, "campaign_id": made["id"], "type": "like"}, "type"),
        ({"user_id": reader, "campaign_id": "c-0123456789ab", "type": "click"}, "campaign_id"),
        ({"user_id": reader, "type": "click"}, "body"),
        (
            {"user_id": reader, "campaign_id": made["id"], "article_id": "x", "type": "click"},
            "body",
        ),
    ]
    for body, field in cases:
        answer = ads.client.post("/v1/events", json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["field"] == field, body
    # In a batch, a bad ad event stores nothing of the batch.
    article = ads.by_category["sports"][10]
    batch = {
        "events": [
            {"user_id": "batch-reader", "article_id": article, "type": "click"},
            {"user_id": "batch-reader", "campaign_id": "c-0123456789ab", "type": "click"},
        ]
    }
    answer = ads.client.post("/v1/events", json=batch)
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "events[1].campaign_id"
    assert ads.client.get("/v1/users/batch-reader/export").status_code == 404


def test_preview_says_which_example_readers_would_see_it(ads: Ads) -> None:
    sports, food = ads.reader("sports"), ads.reader("foodanddrink")
    ads.service.status.write_example_readers([sports, food])
    made = ads.campaign(targeting={"categories": ["sports"]})
    rows = ads.client.get(f"/v1/campaigns/{made['id']}/preview").json()["readers"]
    assert [r["eligible"] for r in rows] == [True, False]
    assert rows[0]["why"].startswith("Sponsored by") and "targeting" in rows[1]["why"]
    assert all(r["reader"].startswith("example reader") for r in rows)
    assert 0 < rows[0]["pctr"] < 1
