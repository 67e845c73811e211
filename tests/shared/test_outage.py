"""PostgreSQL unreachable: writes answer a clear 503 within the timeout (never a hang), feeds
keep coming from Redis and memory, and everything recovers without a restart."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from retrieval.embedder import Embedder
from tests.postgres import TemporaryPostgres
from tests.redis_server import TemporaryRedis
from tests.shared.conftest import READERS, Newsroom, headers, seed, seed_articles

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def outage_room(
    shared_redis: TemporaryRedis, embedder: Embedder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Newsroom, TemporaryPostgres]]:
    postgres = TemporaryPostgres()  # its own server: this test stops it
    postgres.start()
    room = Newsroom(
        postgres.new_database(),
        shared_redis.url.removesuffix("/0") + "/1",  # its own Redis database
        tmp_path_factory.mktemp("outage"),
        seed_articles()[:12],
    )
    try:
        seed(room, embedder)
        yield room, postgres
    finally:
        room.stop()
        postgres.stop()


def test_database_outage_gives_503s_within_the_timeout_and_recovers(outage_room) -> None:
    room, postgres = outage_room
    server = room.serve("host-a", NEWSROOM_SHARED__DATABASE_TIMEOUT_SECONDS="3")
    server.wait_ready()
    reader = READERS[0]
    event = {"user_id": reader, "article_id": room.articles[5].id, "type": "click"}

    def post() -> httpx.Response:
        body = {**event, "event_id": uuid.uuid4().hex}
        return httpx.post(f"{server.base}/v1/events", json=body, headers=headers("app"), timeout=30)

    assert post().status_code == 200
    postgres.pause()
    try:
        started = time.monotonic()
        refused = post()
        elapsed = time.monotonic() - started
        assert refused.status_code == 503, refused.text
        assert "database" in refused.json()["error"]["message"]
        assert refused.headers.get("retry-after")
        assert elapsed < 10, f"took {elapsed:.1f} s"
        feed = httpx.get(
            f"{server.base}/v1/users/{reader}/feed", headers=headers("app"), timeout=30
        )
        assert feed.status_code == 200 and not feed.json()["cold_start"]  # Redis + memory
    finally:
        postgres.resume()
    deadline = time.monotonic() + 30
    while post().status_code != 200:
        assert time.monotonic() < deadline, "writes did not recover"
        time.sleep(0.5)
