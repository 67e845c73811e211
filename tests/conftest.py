"""Shared fixtures. The real packaged MiniLM is cheap, so it is loaded once per session and
shared; every artifact lives under `tmp_path`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.domain import ArticleDraft
from core.service import NewsroomService
from core.settings import Settings
from retrieval.embedder import Embedder

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"

HEADLINES = [
    ("h1", "Stocks rally as central bank holds interest rates", "business"),
    ("h2", "Striker scores twice as United beat City in derby", "sport"),
    ("h3", "New smartphone chip promises longer battery life", "tech"),
    ("h4", "Parliament votes on election reform bill", "politics"),
    ("h5", "Oscar nominations announced for best picture", "entertainment"),
    ("h6", "Bank profits rise on higher lending margins", "business"),
]


def data_path(*parts: str) -> Path:
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"shared data missing at {path}: tests read ../shared/data beside the repo")
    return path


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder(Settings().retrieval.model_path())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "var", _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def headline_drafts() -> list[ArticleDraft]:
    return [
        ArticleDraft(id=i, title=t, body=f"{t}. More details follow.", category=c)
        for i, t, c in HEADLINES
    ]


@pytest.fixture
def service(settings: Settings, embedder: Embedder) -> Iterator[NewsroomService]:
    svc = NewsroomService.from_settings(settings, embedder=embedder)
    yield svc
    svc.close()


@pytest.fixture
def client(settings: Settings, service: NewsroomService) -> Iterator[TestClient]:
    with TestClient(create_app(settings, service)) as test_client:
        yield test_client
