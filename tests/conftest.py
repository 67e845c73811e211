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
from core.settings import GenerationConfig, LearningConfig, Settings
from retrieval.embedder import Embedder
from tests.postgres import TemporaryPostgres
from tests.postgres import wanted as postgres_wanted
from tests.redis_server import TemporaryRedis

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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[TemporaryPostgres | None]:
    if not postgres_wanted():
        yield None
        return
    server = TemporaryPostgres()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[TemporaryRedis]:
    """A real redis-server for the session (shared-mode unit and end-to-end tests)."""
    server = TemporaryRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: TemporaryRedis):  # type: ignore[no-untyped-def]
    """A client on an emptied Redis."""
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def database_url(postgres_server: TemporaryPostgres | None) -> str | None:
    """None (SQLite in the data dir), or a fresh PostgreSQL database when the run asks for one
    (`NEWSROOM_TEST_DATABASE=postgresql`)."""
    return postgres_server.new_database() if postgres_server is not None else None


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    # No exploration by default: tests compare feed orders (tests/core/test_learning.py
    # turns it on where it is the subject).
    return Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "var",
        database_url=database_url,
        learning=LearningConfig(exploration=0.0),
        _env_file=None,
    )


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


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide random Llama with SmolLM2's real tokenizer: contract tests only."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from generation.lm import packaged_smollm2_gguf

    gguf = packaged_smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def served_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real packaged SmolLM2, converted once per test run (~25 s); int8 copies made by the
    tests that load them are cached beside it. Link it as `<data_dir>/models`."""
    from generation.lm import resolve_base_model

    root = tmp_path_factory.mktemp("served")
    resolve_base_model(None, root)
    return root / "models"


@pytest.fixture(scope="session")
def tiny_generation(tiny_lm_dir: Path) -> GenerationConfig:
    """Generation served by the tiny random Llama on torch, no adapters: fast contract tests."""
    return GenerationConfig(
        base_model=tiny_lm_dir,
        backend="torch",
        headline_adapter=None,
        summary_adapter=None,
        draft_adapter=None,
    )
