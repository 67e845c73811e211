"""Feeds scored in replica processes (NEWSROOM_RANKING__FEED_WORKERS): the same feeds as the
serving process, and every write visible to the next feed, whichever process scores it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.datasets import read_articles
from core.service import NewsroomService
from core.settings import Settings
from ranking.workers import FeedWorkers, ReplicaSpec, _frame
from retrieval.index import IndexConfig
from tests.api.test_feed import NEW_RECIPE
from tests.conftest import data_path

READERS = ("fan", "cook", "trader")


@pytest.fixture
def replicated(settings: Settings, service: NewsroomService) -> Iterator[TestClient]:
    settings.ranking.feed_workers = 1
    with TestClient(create_app(settings, service)) as client:
        yield client
    assert service.feed_workers is None, "replicas stop with the app"


def _click(client: TestClient, user: str, article_id: str, kind: str = "click", **extra) -> None:
    body = {"user_id": user, "article_id": article_id, "type": kind, **extra}
    response = client.post("/v1/events", json=body)
    assert response.status_code == 200, response.json()


def _feed(client: TestClient, user: str, **params) -> dict:
    response = client.get(f"/v1/users/{user}/feed", params={"k": 20, **params})
    assert response.status_code == 200, response.json()
    return response.json()


def _in_process(service: NewsroomService, user: str, k: int = 20) -> list[tuple[str, str]]:
    assert service.recommender is not None
    feed = service.recommender.feed(user, k)
    return [(i.entry.id, i.explanation.text) for i in feed.items]


def test_replica_feeds_match_and_follow_every_write(
    replicated: TestClient, service: NewsroomService
) -> None:
    client = replicated
    workers = service.feed_workers
    assert workers is not None and workers.live == 1
    assert client.get("/healthz").json()["feed_workers"] == 1
    # Articles arrive after the replica started: it learns them from the serving process.
    drafts = list(islice(read_articles(data_path("mind_demo_news"), "mind"), 300))
    for start in range(0, len(drafts), 100):
        service.ingest(drafts[start : start + 100])
    by_category: dict[str, list[str]] = {}
    for draft in drafts:
        by_category.setdefault(draft.category or "", []).append(draft.id or "")
    for user, category in zip(READERS, ("sports", "foodanddrink", "finance"), strict=True):
        for article_id in by_category[category][:4]:
            _click(client, user, article_id)
    for n, article_id in enumerate([d.id for d in drafts[:30]]):
        _click(client, f"other{n % 3}", article_id or "")

    # Same candidates, scores and explanations as scoring in the serving process.
    for user in (*READERS, "newcomer"):
        served_before = workers.served
        feed = _feed(client, user)
        assert workers.served == served_before + 1, "scored by the replica"
        assert [(i["id"], i["explanation"]["text"]) for i in feed["items"]] == _in_process(
            service, user
        )

    # A click and a dismissal leave the very next feed.
    first = _feed(client, "fan")["items"]
    _click(client, "fan", first[0]["id"])
    _click(client, "fan", first[1]["id"], "dismiss")
    after = {i["id"] for i in _feed(client, "fan")["items"]}
    assert not {first[0]["id"], first[1]["id"]} & after

    # A new article is reachable at once; a deleted one is gone at once.
    created = client.post("/v1/articles", json=NEW_RECIPE)
    assert created.status_code == 201, created.json()
    feed = _feed(client, "cook", k=50, category="foodanddrink")
    assert "new-recipe" in {i["id"] for i in feed["items"]}
    assert client.delete("/v1/articles/new-recipe").status_code == 204
    feed = _feed(client, "cook", k=50, category="foodanddrink")
    assert "new-recipe" not in {i["id"] for i in feed["items"]}

    # A deleted reader is a stranger at once; the counts their events fed are rebuilt.
    assert client.delete("/v1/users/trader").status_code == 200
    gone = _feed(client, "trader")
    assert gone["cold_start"] and all(
        i["explanation"]["because_you_read"] is None for i in gone["items"]
    )
    # Retention: purging old events resets the replica's counts from the database too.
    old = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    _click(client, "old-reader", drafts[5].id or "", ts=old)
    assert service.purge_expired_events(retention_days=30) == 1
    for user in ("fan", "cook", "old-reader"):  # counts rebuilt alike on both sides
        feed = _feed(client, user)
        assert [(i["id"], i["explanation"]["text"]) for i in feed["items"]] == _in_process(
            service, user
        )
    assert workers.live == 1, "every change applied without the replica failing"


def test_a_replica_that_dies_is_covered_in_process(
    replicated: TestClient, service: NewsroomService
) -> None:
    client = replicated
    drafts = list(islice(read_articles(data_path("mind_demo_news"), "mind"), 60))
    service.ingest(drafts)
    _click(client, "fan", drafts[0].id or "")
    workers = service.feed_workers
    assert workers is not None and workers.live == 1
    os.kill(workers.pids[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while workers.live and time.monotonic() < deadline:  # noticed on the event loop
        client.get("/healthz")
        time.sleep(0.05)
    assert client.get("/healthz").json()["feed_workers"] == 0
    feed = _feed(client, "fan", k=10)
    assert [(i["id"], i["explanation"]["text"]) for i in feed["items"]] == _in_process(
        service, "fan", 10
    )
    # Writes go on without the replica.
    _click(client, "fan", feed["items"][0]["id"])
    assert feed["items"][0]["id"] not in {i["id"] for i in _feed(client, "fan", k=10)["items"]}


def test_a_replica_that_cannot_load_leaves_feeds_in_process(
    settings: Settings, service: NewsroomService, tmp_path: Path
) -> None:
    spec = ReplicaSpec(
        database_url=settings.resolved_database_url,
        user_id_key=None,
        index_path=service.index_path,
        model_name=service.embedder.name,
        dim=service.embedder.dim,
        index_config=IndexConfig(),
        ranking=settings.ranking.model_copy(update={"model_dir": tmp_path / "no-head"}),
    )
    workers = FeedWorkers(spec, 1, start_timeout_s=120)
    workers.start()
    try:
        assert workers.live == 0
        assert not any(w.process.is_alive() for w in workers._workers)
    finally:
        workers.close()


def test_a_replica_keeps_reading_while_its_replies_wait(
    settings: Settings, service: NewsroomService
) -> None:
    """A replica whose replies are not being read (the serving loop is busy, e.g. waiting to
    send) must still take in a large change; were it stuck writing, both would wait for ever."""
    import asyncio
    import threading

    import numpy as np

    from api.routes.feed import render_feed

    service.ingest(list(islice(read_articles(data_path("mind_demo_news"), "mind"), 150)))
    settings.ranking.feed_workers = 1
    workers = service.start_feed_workers(settings, render_feed)
    assert workers is not None and workers.live == 1
    try:
        worker = workers._workers[0]
        # ~40 KB answers, nobody reading them: far past the socket buffers.
        for n in range(150):
            worker.sock.sendall(_frame(("feed", n, f"cold-{n}", 100, None, True)))
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((1000, service.embedder.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        keys = np.arange(10**6, 10**6 + 1000, dtype=np.int64)
        rows = [(int(k), f"bulk-{k}", "Bulk", "news", None) for k in keys]
        sender = threading.Thread(
            target=workers.articles, args=(keys, vectors, [f"h{k}" for k in keys], rows)
        )
        sender.start()
        sender.join(timeout=60)
        assert not sender.is_alive(), "the change never got through: replica stuck writing"

        async def one_more_feed() -> bytes:
            workers.attach(asyncio.get_running_loop())
            return await workers.feed("cold-last", 5, None, True)

        assert b'"items"' in asyncio.run(one_more_feed())
        assert workers.live == 1
    finally:
        service.feed_workers = None
        workers.close()
