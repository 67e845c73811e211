"""Shared mode on real servers: PostgreSQL 15 and Redis started by the tests (Debian's
binaries), and real `newsroom serve` / `newsroom generation-worker` processes over them."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.datasets import read_bbc
from core.domain import ArticleDraft, EventDraft
from core.service import NewsroomService
from core.settings import Settings
from retrieval.embedder import Embedder
from tests.conftest import data_path
from tests.postgres import TemporaryPostgres
from tests.redis_server import TemporaryRedis
from tests.servers import NewsroomProcess, ServeProcess, clean_env

KEYS = {role: secrets.token_hex(12) for role in ("cms", "writer", "app", "ads", "admin")}
SECRET = secrets.token_hex(32)
READERS = [f"reader-{n}" for n in range(8)]


def headers(role: str = "admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}"}


@pytest.fixture(scope="session")
def shared_postgres() -> Iterator[TemporaryPostgres]:
    server = TemporaryPostgres()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shared_redis(redis_server: TemporaryRedis) -> TemporaryRedis:
    return redis_server


def seed_articles() -> list[ArticleDraft]:
    by_category: dict[str, list[ArticleDraft]] = {}
    for article in read_bbc(data_path("bbc_news_summary")):
        by_category.setdefault(article.category or "", [])
        if len(by_category[article.category or ""]) < 8:
            by_category[article.category or ""].append(article)
    return [a for group in by_category.values() for a in group]


@dataclass
class Newsroom:
    """One newsroom's stores and the environment its processes share."""

    database_url: str
    redis_url: str
    root: Path
    articles: list[ArticleDraft]
    processes: list[NewsroomProcess] = field(default_factory=list)

    def env(self, host: str, **extra: str) -> dict[str, str]:
        """The environment of a process on `host` (its own data dir, as on another machine)."""
        data_dir = self.root / host
        data_dir.mkdir(parents=True, exist_ok=True)
        return clean_env(
            NEWSROOM_DATA_DIR=str(data_dir),
            NEWSROOM_DATABASE_URL=self.database_url,
            NEWSROOM_REDIS_URL=self.redis_url,
            NEWSROOM_USER_ID_SECRET=SECRET,
            NEWSROOM_API_KEYS=",".join(f"{role}={key}" for role, key in KEYS.items()),
            NEWSROOM_GENERATION__WORKER_HEARTBEAT_SECONDS="3",
            **extra,
        )

    def serve(self, host: str, workers: int = 1, **extra: str) -> ServeProcess:
        server = ServeProcess(self.env(host, **extra), self.root / f"{host}.log", workers)
        self.processes.append(server)
        return server

    def settings(self, host: str) -> Settings:
        return Settings(
            data_dir=self.root / host,
            database_url=self.database_url,
            redis_url=self.redis_url,
            user_id_secret=SECRET,
            _env_file=None,  # type: ignore[call-arg]
        )

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def seed(newsroom: Newsroom, embedder: Embedder) -> None:
    """Articles and a few readers' clicks, written through an in-process service."""
    service = NewsroomService.from_settings(
        newsroom.settings("seed"), embedder=embedder, generation=False
    )
    try:
        service.articles.ingest(newsroom.articles)
        events = [
            EventDraft(reader, article.id or "", "click", event_id=f"seed-{reader}-{n}")
            for r, reader in enumerate(READERS)
            for n, article in enumerate(newsroom.articles[r * 3 : r * 3 + 4])
        ]
        service.readers.record_events(events)
    finally:
        service.close()


@pytest.fixture(scope="module")
def newsroom(
    shared_postgres: TemporaryPostgres,
    shared_redis: TemporaryRedis,
    embedder: Embedder,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Newsroom]:
    shared_redis.client().flushall()
    room = Newsroom(
        shared_postgres.new_database(),
        shared_redis.url,
        tmp_path_factory.mktemp("newsroom"),
        seed_articles(),
    )
    seed(room, embedder)
    yield room
    room.stop()
