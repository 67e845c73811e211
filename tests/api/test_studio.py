"""The studio's pages and the JSON routes it added: segments, per-segment summaries, draft
audiences, the quality report and example readers. The browser tests drive the same pages."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.routes.studio import ASSETS_DIR, PAGES, STUDIO_DIR
from core.reports import kind_of, read_reports
from core.service import NewsroomService
from core.settings import REPO_ROOT, GenerationConfig, Settings
from retrieval.embedder import Embedder

ARTICLES = [
    (
        "council",
        "Council approves bus budget",
        "The city council approved a budget of 12 million "
        "pounds on Tuesday. Mayor Ellen Park said the money would fund 40 new buses.",
        "politics",
    ),
    (
        "match",
        "United win the derby",
        "United beat City 2-1 on Sunday. Sam Lee scored twice.",
        "sport",
    ),
    ("cup", "Rovers reach the cup final", "Rovers beat Town 3-0 to reach the final.", "sport"),
    (
        "chips",
        "New chip doubles battery life",
        "A chip maker said its design doubles phone battery life.",
        "tech",
    ),
]


@pytest.fixture
def studio_client(
    tmp_path: Path,
    tiny_generation: GenerationConfig,
    embedder: Embedder,
    database_url: str | None,
) -> Iterator[tuple[TestClient, NewsroomService]]:
    settings = Settings(
        data_dir=tmp_path / "var",
        generation=tiny_generation,
        database_url=database_url,
        _env_file=None,
    )  # type: ignore[call-arg]
    service = NewsroomService.from_settings(settings, embedder=embedder)
    with TestClient(create_app(settings, service)) as client:
        body = {
            "articles": [{"id": i, "title": t, "body": b, "category": c} for i, t, b, c in ARTICLES]
        }
        assert client.post("/v1/articles/bulk", json=body).status_code == 200
        events = [
            {"user_id": "fan", "article_id": "match", "type": "click"},
            {"user_id": "fan", "article_id": "cup", "type": "click"},
            {"user_id": "geek", "article_id": "chips", "type": "click"},
        ]
        assert client.post("/v1/events", json={"events": events}).status_code == 200
        yield client, service
    service.close()


def test_every_page_is_served_with_its_assets_and_a_strict_policy(
    studio_client: tuple[TestClient, NewsroomService],
) -> None:
    client, _ = studio_client
    assert client.get("/studio", follow_redirects=False).headers["location"] == "/studio/"
    for path, (title, name) in PAGES.items():
        page = client.get(f"/studio/{path}")
        assert page.status_code == 200, path
        assert f"<title>{title} · Newsroom studio</title>" in page.text
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "unsafe-inline" not in policy
        # Every script and stylesheet the page names is served from here (no CDN).
        for asset in re.findall(r'(?:src|href)="(/studio/assets/[^"]+)"', page.text):
            assert client.get(asset).status_code == 200, asset
        assert (ASSETS_DIR / f"{name}.js").is_file()
        assert "http://" not in page.text and "https://" not in page.text
    assert client.get("/studio/nope").status_code == 404
    # No inline script or handler anywhere: the policy forbids them, so they would not run.
    for html in [STUDIO_DIR / "shell.html", *(STUDIO_DIR / "pages").glob("*.html")]:
        text = html.read_text()
        assert "<script>" not in text and not re.search(r"\son[a-z]+=", text), html.name


def test_segments_and_a_summary_per_segment(
    studio_client: tuple[TestClient, NewsroomService],
) -> None:
    client, service = studio_client
    assert client.get("/v1/segments").json() == {"segments": [{"id": "generic", "interests": []}]}
    assert service.writing is not None
    service.writing.fit_segments(k=2)
    listed = client.get("/v1/segments").json()["segments"]
    assert [s["id"] for s in listed] == ["generic", "segment-0", "segment-1"]
    assert {"sport"} in [set(s["interests"]) for s in listed]

    sport = next(s["id"] for s in listed if s["interests"] == ["sport"])
    first = client.get(f"/v1/articles/council/summaries/{sport}")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["segment"] == sport and body["interests"] == ["sport"]
    assert body["user_id"] is None and body["cached"] is False and body["grounded"] is True
    again = client.get(f"/v1/articles/council/summaries/{sport}").json()
    assert again["cached"] is True and again["summary"] == body["summary"]
    # The fan belongs to that segment, so the app's summary for them is the same one.
    assert client.get("/v1/users/fan/articles/council/summary").json()["summary"] == body["summary"]

    assert client.get("/v1/articles/council/summaries/segment-7").status_code == 404
    assert client.get("/v1/articles/council/summaries/everyone").status_code == 422
    assert client.get("/v1/articles/nope/summaries/generic").status_code == 404


def test_a_draft_written_for_a_segment_or_a_reader_says_for_whom(
    studio_client: tuple[TestClient, NewsroomService],
) -> None:
    client, service = studio_client
    assert service.writing is not None
    service.writing.fit_segments(k=2)
    sport = next(
        s["id"]
        for s in client.get("/v1/segments").json()["segments"]
        if s["interests"] == ["sport"]
    )
    brief = {"brief": "Rovers and United both won", "related_k": 1}
    for audience, expected in (
        ({"segment": sport}, "readers interested in sport"),
        (
            {"user_id": "fan", "audience": "match-day readers"},
            "match-day readers; readers interested in sport",
        ),
        ({}, ""),
    ):
        response = client.post("/v1/drafts", json={**brief, **audience})
        assert response.status_code == 200, response.text
        assert response.json()["audience"] == expected
        assert set(response.json()["draft"]) >= {"text", "grounded", "unsupported"}
    both = client.post("/v1/drafts", json={**brief, "segment": sport, "user_id": "fan"})
    assert both.status_code == 422 and both.json()["error"]["field"] == "segment"
    assert client.post("/v1/drafts", json={**brief, "segment": "segment-9"}).status_code == 404
    assert client.post("/v1/drafts", json={**brief, "segment": "all"}).status_code == 422


def test_quality_reports_the_committed_evaluations_and_live_counters(
    studio_client: tuple[TestClient, NewsroomService],
) -> None:
    client, _ = studio_client
    client.get("/v1/users/fan/articles/council/summary")
    client.get("/v1/users/fan/articles/council/summary")  # a cache hit
    body = client.get("/v1/quality").json()
    kinds = {r["kind"]: r for r in body["reports"]}
    assert set(kinds) == {"ranking", "generation", "personalization"}
    ranking = next(r for r in body["reports"] if r["name"] == "eval_mind_heldout.json")
    committed = json.loads((REPO_ROOT / "models/ranker/eval_mind_heldout.json").read_text())
    assert ranking["report"] == committed
    assert {r["report"]["task"] for r in body["reports"] if r["kind"] == "generation"} == {
        "headline",
        "summary",
    }
    assert body["articles"] == body["index_size"] == len(ARTICLES) and body["events"] == 3
    assert body["models"]["ranker"] == "ranker" and body["models"]["summary"]
    assert "draft@v1" in body["templates"] and "summary@v1" in body["templates"]
    assert body["generation"]["cache_hit_rate"] > 0


def test_reports_are_told_apart_by_shape_and_bad_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "rank.json").write_text(json.dumps({"n_impressions": 3, "systems": {}}))
    (tmp_path / "gen.json").write_text(json.dumps({"task": "summary", "n": 1, "systems": {}}))
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    (tmp_path / "broken.json").write_text("{not json")
    found = read_reports([tmp_path, tmp_path / "missing"])
    assert sorted((r.name, r.kind) for r in found) == [
        ("gen.json", "generation"),
        ("rank.json", "ranking"),
    ]
    assert kind_of([1, 2]) is None and kind_of({"uplift": 0.1, "pairs": 3}) == "personalization"


def test_example_readers_come_from_the_demo_file_only(
    studio_client: tuple[TestClient, NewsroomService],
) -> None:
    client, service = studio_client
    assert client.get("/v1/example-readers").json() == {"readers": []}
    service.status.write_example_readers(["mind-u1", "mind-u2"])
    assert client.get("/v1/example-readers").json() == {"readers": ["mind-u1", "mind-u2"]}
    assert service.status.example_readers_path is not None
    service.status.example_readers_path.write_text("{broken")
    assert client.get("/v1/example-readers").json() == {"readers": []}
