"""API contracts for ingest and lookup, including bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

ARTICLE = {
    "id": "a-1",
    "title": "Central bank raises rates",
    "body": "The bank raised its main rate by a quarter point.",
    "category": "Business",
    "published_at": "2024-03-01T10:00:00Z",
}


def test_create_get_update_delete(client):
    created = client.post("/v1/articles", json=ARTICLE)
    assert created.status_code == 201
    body = created.json()
    assert body["id"] == "a-1" and body["category"] == "business"
    assert body["published_at"].startswith("2024-03-01T10:00:00")

    again = client.post("/v1/articles", json=ARTICLE)
    assert again.status_code == 200

    fetched = client.get("/v1/articles/a-1")
    assert fetched.status_code == 200 and fetched.json()["title"] == ARTICLE["title"]

    replaced = client.put("/v1/articles/a-1", json={**ARTICLE, "title": "Rates unchanged"})
    assert replaced.status_code == 200 and replaced.json()["title"] == "Rates unchanged"
    new = client.put("/v1/articles/a-2", json={"title": "Fresh", "body": "x"})
    assert new.status_code == 201

    assert client.delete("/v1/articles/a-1").status_code == 204
    gone = client.get("/v1/articles/a-1")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    assert client.delete("/v1/articles/a-1").status_code == 404


def test_bulk_upsert_reports_what_was_embedded(client):
    articles = [{"id": f"b{i}", "title": f"Headline number {i}", "body": "text"} for i in range(5)]
    first = client.post("/v1/articles/bulk", json={"articles": articles})
    assert first.status_code == 200
    assert first.json()["embedded"] == 5 and len(first.json()["created"]) == 5
    articles[0]["body"] = "changed text"
    second = client.post("/v1/articles/bulk", json={"articles": articles}).json()
    assert second["updated"] == ["b0"] and second["embedded"] == 1
    assert len(second["unchanged"]) == 4


def test_bad_inputs_are_precise_4xx(client, settings):
    cases = [
        ({"body": "no title"}, "title"),
        ({"title": 42}, "title"),
        ({"title": ""}, "title"),
        ({"title": "ok", "published_at": "yesterday"}, "published_at"),
        ({"title": "ok", "id": "has space"}, "id"),
        ({"title": "ok", "body": "x" * 200_001}, "body"),
    ]
    for payload, field in cases:
        response = client.post("/v1/articles", json=payload)
        assert response.status_code == 422, payload
        assert response.json()["error"]["field"] == field, response.json()

    nested = client.post("/v1/articles/bulk", json={"articles": [{"title": "a"}, {"body": "b"}]})
    assert nested.status_code == 422 and nested.json()["error"]["field"] == "articles[1].title"
    assert client.post("/v1/articles/bulk", json={"articles": []}).status_code == 422
    not_json = client.post(
        "/v1/articles", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 422
    mismatch = client.put("/v1/articles/x1", json={"id": "x2", "title": "t"})
    assert mismatch.status_code == 422 and mismatch.json()["error"]["field"] == "id"
    assert client.get("/v1/articles/" + "x" * 300).status_code == 422


def test_oversized_body_is_413(client, settings):
    limit = settings.limits.max_request_bytes
    big = {"title": "big", "body": "x" * (limit + 10)}
    response = client.post("/v1/articles", json=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"

    def chunks():  # no Content-Length: counted while streaming
        yield b'{"title": "t", "body": "'
        for _ in range(limit // 65536 + 2):
            yield b"y" * 65536
        yield b'"}'

    streamed = client.post(
        "/v1/articles", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


def test_bulk_over_the_count_limit_is_413(client, service):
    too_many = [{"title": f"t{i}"} for i in range(service.articles.max_bulk + 1)]
    response = client.post("/v1/articles/bulk", json={"articles": too_many})
    assert response.status_code == 413 and response.json()["error"]["field"] == "articles"


def test_over_long_title_or_body_is_a_clear_4xx(client, settings):
    limits = settings.limits
    body = client.post(
        "/v1/articles", json={"id": "long", "title": "T", "body": "x" * (limits.max_body_chars + 1)}
    )
    assert body.status_code in (413, 422) and body.json()["error"]["field"].endswith("body")
    title = client.post(
        "/v1/articles", json={"id": "long", "title": "t" * (limits.max_title_chars + 1)}
    )
    assert title.status_code in (413, 422) and title.json()["error"]["field"].endswith("title")


# Before year 1 or after 9999 once in UTC, or before 1900.
OUT_OF_RANGE = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1899-12-31T23:59:59"]


def test_out_of_range_datetimes_are_a_422_naming_the_field(client):
    assert client.post("/v1/articles", json=ARTICLE).status_code == 201
    event = {"user_id": "u1", "article_id": "a-1", "type": "click"}
    for moment in OUT_OF_RANGE:
        answers = {
            "published_at": client.post("/v1/articles", json={**ARTICLE, "published_at": moment}),
            "ts": client.post("/v1/events", json={**event, "ts": moment}),
            "since": client.get("/v1/search", params={"q": "rates", "since": moment}),
        }
        for field, answer in answers.items():
            assert answer.status_code == 422, (field, moment, answer.text)
            assert answer.json()["error"]["field"] == field
    now = datetime.now(UTC)
    ahead = client.post("/v1/articles", json={**ARTICLE, "published_at": str(now + timedelta(30))})
    assert ahead.status_code == 422 and ahead.json()["error"]["field"] == "published_at"
    soon = client.post("/v1/articles", json={**ARTICLE, "published_at": str(now + timedelta(0.5))})
    assert soon.status_code == 200  # an embargo of hours is fine
    # In range with any offset: converted to UTC, as before.
    far_east = {**ARTICLE, "published_at": "1900-01-01T09:00:00+09:00"}
    assert (
        client.post("/v1/articles", json=far_east)
        .json()["published_at"]
        .startswith("1900-01-01T00")
    )
    since = client.get("/v1/search", params={"q": "rates", "since": "2024-01-01T00:00:00+14:00"})
    assert since.status_code == 200 and since.json()["results"] == []  # a-1 is from 1900
