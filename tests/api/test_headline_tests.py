"""Headline tests through the API: the contract, validation, stickiness, the counting rules,
locks, readers' rights, a refill after the counters were lost, and a seeded simulation in which
the bandit sends most readers to the truly best headline."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.counters import LocalCounters
from core.domain import EventDraft
from core.service import NewsroomService

VARIANTS = [
    "Stocks rally as central bank holds interest rates",
    "Markets surge after rates stay put",
    "Why the bank's pause sent shares higher",
]


@pytest.fixture
def newsroom(client: TestClient, service: NewsroomService, headline_drafts) -> TestClient:  # type: ignore[no-untyped-def]
    service.articles.ingest(headline_drafts)
    return client


def _start(client: TestClient, article_id: str = "h1", **body: Any) -> dict:
    answer = client.post(
        f"/v1/articles/{article_id}/headline-tests", json={"variants": VARIANTS, **body}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def _shown(client: TestClient, reader: str, article_id: str = "h1") -> dict:
    answer = client.get(f"/v1/articles/{article_id}/headline", params={"user_id": reader})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _event(client: TestClient, reader: str, kind: str, variant: str | None, **extra: Any) -> dict:
    body = {"user_id": reader, "article_id": "h1", "type": kind, **extra}
    if variant is not None:
        body["headline_variant"] = variant
    answer = client.post("/v1/events", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _report(client: TestClient, test_id: str) -> dict:
    answer = client.get(f"/v1/headline-tests/{test_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def _counts(report: dict) -> dict[str, tuple[int, int]]:
    return {v["variant_id"]: (v["impressions"], v["clicks"]) for v in report["variants"]}


def _error(answer, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert answer.status_code == status, answer.text
    return answer.json()["error"]


def test_a_test_is_created_reported_and_listed(newsroom: TestClient) -> None:
    created = _start(newsroom)
    assert re.fullmatch(r"ht-[0-9a-f]{12}", created["test_id"])
    assert created["article_id"] == "h1" and created["status"] == "running"
    assert [(v["variant_id"], v["text"], v["source"]) for v in created["variants"]] == [
        (f"v{n + 1}", text, "editor") for n, text in enumerate(VARIANTS)
    ]
    report = _report(newsroom, created["test_id"])
    assert report["status"] == "running" and report["winner"] is None
    assert [set(v) for v in report["variants"]] == [
        {"variant_id", "text", "source", "impressions", "clicks", "ctr", "p_best"}
    ] * 3
    assert all(v["impressions"] == v["clicks"] == 0 and v["ctr"] == 0 for v in report["variants"])
    assert sum(v["p_best"] for v in report["variants"]) == pytest.approx(1, abs=1e-3)
    listed = newsroom.get("/v1/articles/h1/headline-tests").json()
    assert [t["test_id"] for t in listed["tests"]] == [created["test_id"]]
    assert newsroom.get("/v1/articles/h2/headline-tests").json()["tests"] == []


def test_bad_tests_are_refused_naming_the_field(newsroom: TestClient) -> None:
    def start(article_id: str = "h1", **body: Any):  # type: ignore[no-untyped-def]
        return newsroom.post(f"/v1/articles/{article_id}/headline-tests", json=body)

    assert _error(start(variants=["Only one"]), 422)["field"] == "variants"
    assert _error(start(variants=["A title", " a  TITLE "]), 422)["field"] == "variants[1]"
    assert _error(start(variants=["  ", "B"]), 422)["field"] == "variants[0]"
    assert _error(start(variants=["x" * 1001, "B"]), 422)["field"] == "variants[0]"
    assert _error(start(variants=[f"V {n}" for n in range(11)]), 422)["field"] == "variants"
    nine = [f"V {n}" for n in range(9)]
    assert _error(start(variants=nine, generated=2), 422)["field"] == "generated"
    assert _error(start(variants=VARIANTS, generated=-1), 422)["field"] == "generated"
    assert _error(start(variants=VARIANTS, extra=1), 422)["field"] == "extra"
    assert _error(start("nope", variants=VARIANTS), 404)["code"] == "not_found"
    assert _error(start("bad id!", variants=VARIANTS), 422)["field"] == "article_id"
    _start(newsroom)
    conflict = _error(start(variants=VARIANTS), 409)
    assert conflict["code"] == "conflict" and "stop it" in conflict["message"]
    assert _error(newsroom.get("/v1/headline-tests/ht-000000000000"), 404)["field"] == "test_id"
    assert _error(newsroom.get("/v1/headline-tests/nope"), 422)["field"] == "test_id"
    assert _error(newsroom.get("/v1/articles/nope/headline?user_id=r1"), 404)["field"] == "id"
    assert _error(newsroom.get("/v1/articles/h1/headline"), 422)["field"] == "user_id"


class FakeWriter:
    """The headline model's answer, as `WritingService.headlines` gives it."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.asked: list[tuple[str, int]] = []

    async def headlines(self, article_id: str, user_id: str | None, n: int) -> dict[str, Any]:
        self.asked.append((article_id, n))
        return {"headlines": [{"text": t} for t in self.texts[:n]]}


def test_generated_variants_join_the_editors(
    newsroom: TestClient, service: NewsroomService
) -> None:
    original = service.headlines.writer
    try:
        service.headlines.writer = None
        off = _error(newsroom.post("/v1/articles/h2/headline-tests", json={"generated": 2}), 503)
        assert off["field"] == "generated" and "generation is off" in off["message"]
        # One generated headline repeats the editor's: it is left out.
        writer = FakeWriter(["Derby win for United", "striker scores TWICE as united beat city"])
        service.headlines.writer = writer
        body = {"variants": ["Striker scores twice as United beat City"], "generated": 2}
        answer = newsroom.post("/v1/articles/h2/headline-tests", json=body)
        assert answer.status_code == 201, answer.text
        assert writer.asked == [("h2", 2)]
        assert [(v["variant_id"], v["source"]) for v in answer.json()["variants"]] == [
            ("v1", "editor"),
            ("v2", "generated"),
        ]
        only_repeats = FakeWriter(["Stocks rally as central bank holds interest rates"])
        service.headlines.writer = only_repeats
        body = {"variants": [VARIANTS[0]], "generated": 1}
        too_few = newsroom.post("/v1/articles/h1/headline-tests", json=body)
        assert _error(too_few, 422)["field"] == "generated"
    finally:
        service.headlines.writer = original


def test_readers_keep_their_variant_and_feeds_carry_it(newsroom: TestClient) -> None:
    untested = _shown(newsroom, "r1", "h2")
    assert untested == {
        "article_id": "h2",
        "test_id": None,
        "variant_id": None,
        "text": "Striker scores twice as United beat City in derby",
    }
    test_id = _start(newsroom)["test_id"]
    seen: dict[str, str] = {}
    for n in range(30):
        reader = f"reader-{n}"
        first = _shown(newsroom, reader)
        assert first["test_id"] == test_id
        assert first["text"] == VARIANTS[int(first["variant_id"][1:]) - 1]
        assert all(_shown(newsroom, reader) == first for _ in range(3))  # sticky
        seen[reader] = first["variant_id"]
    assert len(set(seen.values())) > 1  # new readers are spread by the bandit's draws
    feed = newsroom.get("/v1/users/reader-0/feed", params={"k": 6, "exclude_read": False})
    assert feed.status_code == 200, feed.text
    items = {i["id"]: i for i in feed.json()["items"]}
    assert items["h1"]["headline_variant"] == seen["reader-0"]
    assert items["h1"]["title"] == VARIANTS[int(seen["reader-0"][1:]) - 1]
    assert all(i["headline_variant"] is None for a, i in items.items() if a != "h1")
    # A reader first met in a feed keeps that variant on the CMS's teaser too.
    fresh = newsroom.get("/v1/users/feed-first/feed", params={"k": 6}).json()["items"]
    (teaser,) = [i for i in fresh if i["id"] == "h1"]
    assert _shown(newsroom, "feed-first")["variant_id"] == teaser["headline_variant"]


def test_impressions_and_clicks_count_once_per_reader(
    newsroom: TestClient, service: NewsroomService
) -> None:
    test_id = _start(newsroom)["test_id"]
    variant = _shown(newsroom, "r1")["variant_id"]
    other = next(v for v in ("v1", "v2", "v3") if v != variant)
    assert _event(newsroom, "r1", "click", variant) == {"accepted": 1, "duplicates": 0}
    assert _counts(_report(newsroom, test_id))[variant] == (0, 0)  # no impression yet
    for _ in range(3):
        _event(newsroom, "r1", "impression", variant)
    _event(newsroom, "r1", "impression", other)  # the reader saw another variant elsewhere
    _event(newsroom, "r1", "click", variant)
    _event(newsroom, "r1", "click", variant, event_id="again")
    _event(newsroom, "r2", "impression", variant)
    counts = _counts(_report(newsroom, test_id))
    assert counts[variant] == (2, 1) and counts[other] == (1, 0)
    report = _report(newsroom, test_id)
    row = next(v for v in report["variants"] if v["variant_id"] == variant)
    assert row["ctr"] == pytest.approx(0.5)
    assert sum(v["p_best"] for v in report["variants"]) == pytest.approx(1, abs=1e-3)
    # The normal events are all stored as before (the headline tally is alongside them).
    assert newsroom.get("/healthz").json()["events"] == 8
    # A batch: an impression and its click in one request count (oldest first).
    batch = {
        "events": [
            {"user_id": "r3", "article_id": "h1", "type": "click", "headline_variant": "v1"},
            {
                "user_id": "r3",
                "article_id": "h1",
                "type": "impression",
                "headline_variant": "v1",
                "ts": "2020-01-01T00:00:00Z",
            },
        ]
    }
    assert newsroom.post("/v1/events", json=batch).status_code == 200
    assert _counts(_report(newsroom, test_id))["v1"][1] == 1 + (variant == "v1")
    export = newsroom.get("/v1/users/r1/export").json()["headline_events"]
    assert [(e["headline_variant"], e["type"]) for e in export] == [
        (variant, "impression"),
        (other, "impression"),
        (variant, "click"),
    ]


def test_bad_headline_variants_are_refused_naming_the_field(newsroom: TestClient) -> None:
    def send(body: dict) -> dict:
        return _error(newsroom.post("/v1/events", json=body), 422)

    event = {"user_id": "r1", "article_id": "h1", "type": "impression", "headline_variant": "v1"}
    untested = send(event)  # h1 has no test yet
    assert untested["field"] == "headline_variant" and "no running" in untested["message"]
    _start(newsroom)
    assert send({**event, "headline_variant": "v7"})["field"] == "headline_variant"
    assert send({**event, "headline_variant": "best"})["field"] == "headline_variant"
    assert send({**event, "type": "dwell"})["field"] == "headline_variant"
    assert send({**event, "article_id": "h2"})["field"] == "headline_variant"
    del event["article_id"]
    ad = {**event, "campaign_id": "c-000000000000"}
    assert send(ad)["field"] == "headline_variant"
    good = {"user_id": "r1", "article_id": "h1", "type": "impression"}
    batch = {"events": [good, {**good, "headline_variant": "v9"}]}
    assert send(batch)["field"] == "events[1].headline_variant"
    assert newsroom.get("/healthz").json()["events"] == 0  # nothing of those was stored


def test_a_lock_shows_the_winner_to_everyone_and_stop_ends_the_test(
    newsroom: TestClient,
) -> None:
    test_id = _start(newsroom)["test_id"]
    no_data = newsroom.post(f"/v1/headline-tests/{test_id}/lock", json={})
    assert _error(no_data, 422)["field"] == "variant_id"
    wrong = newsroom.post(f"/v1/headline-tests/{test_id}/lock", json={"variant_id": "v9"})
    assert _error(wrong, 422)["field"] == "variant_id"
    # v2 gets clicks, the others none: the likeliest best.
    for n in range(12):
        reader = f"r{n}"
        for variant in ("v1", "v2", "v3"):
            _event(newsroom, reader, "impression", variant)
        _event(newsroom, reader, "click", "v2")
    for n in range(12):  # assigned before the lock, whichever variant they drew
        _shown(newsroom, f"r{n}")
    locked = newsroom.post(f"/v1/headline-tests/{test_id}/lock")
    assert locked.status_code == 200, locked.text
    assert locked.json()["status"] == "locked" and locked.json()["winner"] == "v2"
    p_best = {v["variant_id"]: v["p_best"] for v in locked.json()["variants"]}
    assert p_best["v2"] > 0.95
    assert all(_shown(newsroom, f"r{n}")["variant_id"] == "v2" for n in range(12))
    assert _shown(newsroom, "newcomer")["text"] == VARIANTS[1]
    _event(newsroom, "late", "impression", "v2")  # a locked test still counts
    assert _counts(_report(newsroom, test_id))["v2"] == (13, 12)
    relock = newsroom.post(f"/v1/headline-tests/{test_id}/lock", json={"variant_id": "v3"})
    assert relock.json()["winner"] == "v3" and _shown(newsroom, "r0")["variant_id"] == "v3"
    stopped = newsroom.post(f"/v1/headline-tests/{test_id}/stop")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    assert _shown(newsroom, "r0")["variant_id"] is None
    assert _shown(newsroom, "r0")["text"] == "Stocks rally as central bank holds interest rates"
    after = newsroom.post(f"/v1/headline-tests/{test_id}/lock", json={"variant_id": "v1"})
    assert _error(after, 409)["field"] == "test_id"
    stale = {"user_id": "r0", "article_id": "h1", "type": "click", "headline_variant": "v3"}
    assert _error(newsroom.post("/v1/events", json=stale), 422)["field"] == "headline_variant"
    second = _start(newsroom)  # the article is free for a new test
    tests = newsroom.get("/v1/articles/h1/headline-tests").json()["tests"]
    assert [t["test_id"] for t in tests] == [test_id, second["test_id"]]


def test_a_deleted_reader_is_unlinked_and_the_counts_stay(
    newsroom: TestClient, service: NewsroomService
) -> None:
    test_id = _start(newsroom)["test_id"]
    variant = _shown(newsroom, "leaver")["variant_id"]
    _event(newsroom, "leaver", "impression", variant)
    _event(newsroom, "leaver", "click", variant)
    assert newsroom.delete("/v1/users/leaver").status_code == 200
    assert service.headlines.user_events("leaver") == []
    assert _counts(_report(newsroom, test_id))[variant] == (1, 1)
    pseudonym = service.storage.pseudonym("leaver")
    assert service.live.counters.get(f"hl:as:{test_id}:{pseudonym}") == 0


def test_counters_lost_are_refilled_from_the_counted_events(
    newsroom: TestClient, service: NewsroomService
) -> None:
    test_id = _start(newsroom)["test_id"]
    variant = _shown(newsroom, "r1")["variant_id"]
    _event(newsroom, "r1", "impression", variant)
    _event(newsroom, "r1", "click", variant)
    _event(newsroom, "r2", "impression", "v1")
    headlines = service.headlines
    original = headlines.counters
    try:
        headlines.counters = LocalCounters()  # as if Redis came back empty
        # Before the refill: the rows still refuse a second count.
        _event(newsroom, "r2", "impression", "v1")
        headlines.refill_counters()
        assert _shown(newsroom, "r1")["variant_id"] == variant  # assignment restored
        keys = [f"hl:n:{test_id}:{variant}:{k}" for k in ("i", "c")]
        assert headlines.counters.get_many(keys) == original.get_many(keys)
        assert _counts(_report(newsroom, test_id))["v1"][0] == 1 + (variant == "v1")
    finally:
        headlines.counters = original


def test_the_bandit_sends_most_readers_to_the_best_headline(
    newsroom: TestClient, service: NewsroomService
) -> None:
    """3 headlines with true click rates 3 %, 6 % and 15 %; 900 readers arrive one by one,
    each sees their variant, and clicks with its rate. Seeded: the same run every time."""
    headlines = service.headlines
    headlines.rng = np.random.default_rng(7)
    world = np.random.default_rng(11)
    truth = {"v1": 0.03, "v2": 0.06, "v3": 0.15}
    test_id = _start(newsroom)["test_id"]
    for n in range(900):
        reader = f"sim-{n}"
        shown = headlines.headline("h1", reader)
        drafts = [EventDraft(reader, "h1", "impression", headline_variant=shown.variant_id)]
        if world.random() < truth[shown.variant_id or ""]:
            drafts.append(EventDraft(reader, "h1", "click", headline_variant=shown.variant_id))
        headlines.record_checked(headlines.check_events([("", d) for d in drafts]))
    report = _report(newsroom, test_id)
    shares = {v["variant_id"]: v["impressions"] / 900 for v in report["variants"]}
    p_best = {v["variant_id"]: v["p_best"] for v in report["variants"]}
    assert sum(v["impressions"] for v in report["variants"]) == 900
    assert shares["v3"] > 0.6, shares  # most traffic went to the truly best
    assert shares["v3"] > shares["v2"] and shares["v3"] > shares["v1"]
    assert p_best["v3"] > 0.8, p_best
    assert max(p_best, key=p_best.__getitem__) == "v3"
