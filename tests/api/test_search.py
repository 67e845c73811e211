from __future__ import annotations

from tests.conftest import HEADLINES


def _load(client):
    articles = [
        {"id": i, "title": t, "body": f"{t}.", "category": c, "published_at": f"2024-01-0{n + 1}"}
        for n, (i, t, c) in enumerate(HEADLINES)
    ]
    assert client.post("/v1/articles/bulk", json={"articles": articles}).status_code == 200


def test_search_ranks_by_meaning_and_filters(client):
    _load(client)
    results = client.get("/v1/search", params={"q": "football game goals", "k": 3}).json()[
        "results"
    ]
    assert results[0]["id"] == "h2"
    assert set(results[0]) >= {"id", "title", "category", "score"}
    assert results[0]["score"] >= results[1]["score"] >= results[2]["score"]

    business = client.get("/v1/search", params={"q": "football", "k": 5, "category": "business"})
    assert {r["id"] for r in business.json()["results"]} == {"h1", "h6"}

    recent = client.get("/v1/search", params={"q": "news", "k": 10, "since": "2024-01-05"})
    assert {r["id"] for r in recent.json()["results"]} == {"h5", "h6"}


def test_related_excludes_the_article_itself(client):
    _load(client)
    results = client.get("/v1/articles/h1/related", params={"k": 2}).json()["results"]
    assert len(results) == 2 and "h1" not in [r["id"] for r in results]
    assert results[0]["id"] == "h6"  # the other banking story
    assert client.get("/v1/articles/missing/related").status_code == 404


def test_search_bad_parameters(client, service):
    for params, field in [
        ({"k": 3}, "q"),
        ({"q": ""}, "q"),
        ({"q": "x", "k": 0}, "k"),
        ({"q": "x", "k": "ten"}, "k"),
        ({"q": "x", "k": service.articles.max_k + 1}, "k"),
        ({"q": "x", "since": "not-a-date"}, "since"),
        ({"q": "   "}, "q"),
    ]:
        response = client.get("/v1/search", params=params)
        assert response.status_code == 422, params
        assert response.json()["error"]["field"] == field
    assert client.get("/v1/articles/h1/related", params={"k": 10_000}).status_code == 422


def test_health_and_docs(client, database_url):
    _load(client)
    health = client.get("/healthz").json()
    live, position = health.pop("live"), health.pop("log")
    assert live["mode"] == "embedded" and live["pid"] > 0
    assert position["changes_applied"] >= 1 and position["errors"] == 0
    assert health == {
        "status": "ok",
        "articles": 6,
        "index_size": 6,
        "index_kind": "flat",
        "model": "all-MiniLM-L6-v2",
        "database": "postgresql" if database_url else "sqlite",
        "ranker": "ranker",
        "events": 0,
        "keys_required": False,
        "mode": "embedded",
    }
    assert client.get("/docs").status_code == 200
    assert "/v1/search" in client.get("/openapi.json").json()["paths"]
    unknown = client.get("/v1/nothing-here")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
