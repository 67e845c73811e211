"""Privacy: ids pseudonymised at rest, export, deletion that leaves nothing behind, logs and
metrics without reader ids, event retention."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from core.service import NewsroomService
from core.settings import GenerationConfig, Settings
from core.storage import EventRow, GeneratedRow, ProfileRow
from retrieval.embedder import Embedder

READER = "reader-42@example"


@pytest.fixture
def setup(
    tmp_path: Path,
    tiny_generation: GenerationConfig,
    embedder: Embedder,
    headline_drafts,
    database_url,
):  # type: ignore[no-untyped-def]
    generation = tiny_generation
    settings = Settings(
        data_dir=tmp_path / "var", generation=generation, database_url=database_url, _env_file=None
    )  # type: ignore[call-arg]
    service = NewsroomService.from_settings(settings, embedder=embedder)
    service.articles.ingest(headline_drafts)
    with TestClient(create_app(settings, service)) as client:
        events = [
            {"user_id": READER, "article_id": "h2", "type": "click"},
            {"user_id": READER, "article_id": "h6", "type": "like"},
            {"user_id": READER, "article_id": "h4", "type": "dismiss"},
            {"user_id": "someone-else", "article_id": "h2", "type": "click"},
        ]
        assert client.post("/v1/events", json={"events": events}).status_code == 200
        summary = client.get(f"/v1/users/{READER}/articles/h1/summary")
        assert summary.status_code == 200 and summary.json()["cached"] is False
        yield client, service, tmp_path / "var"
    service.close()


def _database_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.glob("newsroom.db*"))


def test_reader_ids_are_pseudonymised_at_rest(setup: tuple) -> None:  # type: ignore[type-arg]
    _, service, data_dir = setup
    with service.storage.engine.connect() as conn:
        users = set(conn.execute(select(EventRow.user_id)).scalars())
        users |= set(conn.execute(select(ProfileRow.user_id)).scalars())
    assert len(users) == 2 and all(u.startswith("p_") for u in users)
    with service.storage.engine.connect() as conn:
        generated = list(conn.execute(select(GeneratedRow.cache_key, GeneratedRow.payload)))
    assert generated and not any(READER in key + payload for key, payload in generated)
    if service.storage.engine.dialect.name == "sqlite":  # and nowhere in the file itself
        assert READER.encode() not in _database_bytes(data_dir)


def test_client_event_ids_are_stored_as_per_reader_digests(setup: tuple) -> None:  # type: ignore[type-arg]
    client, service, data_dir = setup
    event_id = "reader-42-at-example-click-1"  # a client id that names its reader
    event = {"event_id": event_id, "user_id": READER, "article_id": "h3", "type": "click"}
    assert client.post("/v1/events", json=event).json()["accepted"] == 1
    with service.storage.engine.connect() as conn:
        stored = list(conn.execute(select(EventRow.event_id)).scalars())
    assert len(stored) == 5 and not any(event_id in e or "reader-42" in e for e in stored)
    if service.storage.engine.dialect.name == "sqlite":
        assert event_id.encode() not in _database_bytes(data_dir)
    # Export shows what is stored: the digest, which the same id from the reader matches.
    exported = client.get(f"/v1/users/{READER}/export").json()["events"][-1]["event_id"]
    assert exported == service.storage.event_digest(service.storage.pseudonym(READER), event_id)
    assert client.post("/v1/events", json=event).json() == {"accepted": 0, "duplicates": 1}


def test_export_returns_everything_stored_about_the_reader(setup: tuple) -> None:  # type: ignore[type-arg]
    client, _, _ = setup
    body = client.get(f"/v1/users/{READER}/export").json()
    assert body["user_id"] == READER
    assert [(e["article_id"], e["type"]) for e in body["events"]] == [
        ("h2", "click"),
        ("h6", "like"),
        ("h4", "dismiss"),
    ]
    assert body["profile"]["history"] and body["profile"]["dismissed"] == ["h4"]
    assert set(body["profile"]["categories"]) == {"sport", "business"}
    assert len(body["generated"]) == 1 and body["generated"][0]["article_id"] == "h1"


def test_export_of_a_reader_with_nothing_stored_is_404(setup: tuple) -> None:  # type: ignore[type-arg]
    client, _, _ = setup
    for reader in ("never-seen", "Someone-Else"):  # ids are case-sensitive
        answer = client.get(f"/v1/users/{reader}/export")
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
        assert client.delete(f"/v1/users/{reader}").status_code == 404
    assert client.get("/v1/users/someone-else/export").status_code == 200


def test_deletion_leaves_no_row_vector_or_cache_entry(setup: tuple) -> None:  # type: ignore[type-arg]
    client, service, _ = setup
    pseudonym = service.storage.pseudonym(READER)
    response = client.delete(f"/v1/users/{READER}")
    assert response.status_code == 200, response.text
    assert response.json()["deleted"] == {
        "events": 3,
        "profiles": 1,
        "generated": 1,
        "ad_events": 0,
    }
    with service.storage.engine.connect() as conn:
        assert not conn.execute(select(EventRow).where(EventRow.user_id == pseudonym)).first()
        assert not conn.execute(select(ProfileRow).where(ProfileRow.user_id == pseudonym)).first()
        keys = list(conn.execute(select(GeneratedRow.cache_key)).scalars())
    assert not any(pseudonym in k for k in keys)
    assert service.recommender is not None
    assert pseudonym not in service.recommender.state.recent
    assert service.recommender.profiles.get(READER) is None  # no vector left, memory or disk
    assert not any(pseudonym in str(v) for v in service.writing.cache._memory.values())  # type: ignore[union-attr]
    export = client.get(f"/v1/users/{READER}/export")  # nothing stored: 404, like DELETE
    assert export.status_code == 404 and export.json()["error"]["code"] == "not_found"
    assert client.get(f"/v1/users/{READER}/feed").json()["cold_start"] is True
    assert client.delete(f"/v1/users/{READER}").status_code == 404
    # The other reader is untouched.
    assert len(client.get("/v1/users/someone-else/export").json()["events"]) == 1


def test_logs_and_metrics_carry_route_templates_not_reader_ids(
    setup: tuple,
    caplog: pytest.LogCaptureFixture,  # type: ignore[type-arg]
) -> None:
    client, _, _ = setup
    with caplog.at_level(logging.DEBUG):
        assert client.get(f"/v1/users/{READER}/feed?k=3").status_code == 200
    # Everything the server logged (the test's own HTTP client logs its URLs: not ours).
    lines = [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]
    assert any('"route": "/v1/users/{user_id}/feed"' in line for line in lines)
    assert not any(READER in line for line in lines)
    metrics = client.get("/metrics").text
    assert 'route="/v1/users/{user_id}/feed"' in metrics and READER not in metrics
    for name in (
        "newsroom_http_request_seconds",
        "newsroom_work_seconds",
        "newsroom_generation_queue_depth",
        "newsroom_generation_cache_hit_ratio",
        "newsroom_index_vectors",
    ):
        assert name in metrics, name


def test_retention_deletes_old_events(setup: tuple) -> None:  # type: ignore[type-arg]
    client, service, _ = setup
    old = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    event = {"user_id": "old-reader", "article_id": "h3", "type": "click", "ts": old}
    assert client.post("/v1/events", json=event).status_code == 200
    assert service.readers.purge_expired_events(retention_days=30) == 1
    assert service.storage.user_events("old-reader") == []
    assert len(service.storage.user_events(READER)) == 3


def test_retention_prunes_what_profiles_keep_of_old_events(setup: tuple) -> None:  # type: ignore[type-arg]
    client, service, _ = setup
    now = datetime.now(UTC)
    old, recent = (now - timedelta(days=40)).isoformat(), (now - timedelta(days=1)).isoformat()
    events = [
        {"user_id": "old-reader", "article_id": "h3", "type": "click", "ts": old},
        {"user_id": "old-reader", "article_id": "h5", "type": "dismiss", "ts": old},
        {"user_id": "old-reader", "article_id": "h2", "type": "click", "ts": recent},
        {"user_id": "gone-reader", "article_id": "h4", "type": "click", "ts": old},
    ]
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == 4
    before = client.get("/v1/users/old-reader/export").json()["profile"]
    assert set(before["history"]) == {"h3", "h2"} and before["dismissed"] == ["h5"]
    assert service.readers.purge_expired_events(retention_days=30) == 3
    profile = client.get("/v1/users/old-reader/export").json()["profile"]
    assert profile["history"] == ["h2"] and profile["dismissed"] == [] and profile["n_events"] == 1
    # Only old events: nothing of the reader is left, the profile included.
    assert client.get("/v1/users/gone-reader/export").status_code == 404
    assert client.get("/v1/users/gone-reader/feed").json()["cold_start"] is True
    # The pruned profile is what the database holds, and what new events build on.
    click = {"user_id": "old-reader", "article_id": "h1", "type": "click"}
    assert client.post("/v1/events", json=click).json()["accepted"] == 1
    profile = client.get("/v1/users/old-reader/export").json()["profile"]
    assert set(profile["history"]) == {"h2", "h1"} and profile["n_events"] == 2
    # Another reader with recent events only is untouched.
    assert len(client.get(f"/v1/users/{READER}/export").json()["profile"]["history"]) == 2
