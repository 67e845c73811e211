"""`newsroom pregenerate`: segments fitted once, every (article, segment) summary cached, and a
second run generates nothing."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from core.cli import app
from core.domain import EventDraft
from core.service import NewsroomService
from core.settings import GenerationConfig, Settings
from retrieval.embedder import Embedder


def test_pregenerate_fills_the_cache_once(
    tmp_path: Path,
    tiny_lm_dir: Path,
    tiny_generation: GenerationConfig,
    embedder: Embedder,
    headline_drafts,
) -> None:  # type: ignore[no-untyped-def]
    generation = tiny_generation
    settings = Settings(data_dir=tmp_path / "var", generation=generation, _env_file=None)  # type: ignore[call-arg]
    service = NewsroomService.from_settings(settings, embedder=embedder)
    service.articles.ingest(headline_drafts)
    events = [
        EventDraft(user_id=f"u{n}", article_id=article, type="click")
        for n in range(6)
        for article in (("h2", "h4") if n % 2 else ("h1", "h6"))
    ]
    service.readers.record_events(events)
    service.close()

    env = {
        **os.environ,
        "NEWSROOM_DATA_DIR": str(tmp_path / "var"),
        "NEWSROOM_GENERATION__BASE_MODEL": str(tiny_lm_dir),
        "NEWSROOM_GENERATION__BACKEND": "torch",
        "NEWSROOM_GENERATION__HEADLINE_ADAPTER": "",
        "NEWSROOM_GENERATION__SUMMARY_ADAPTER": "",
        "NEWSROOM_GENERATION__DRAFT_ADAPTER": "",
    }
    runner = CliRunner()
    first = runner.invoke(app, ["pregenerate", "--top", "2", "--segments", "2"], env=env)
    assert first.exit_code == 0, first.output
    assert "2 segments from 6 readers" in first.output
    # 2 articles x (generic + 2 segments)
    assert "6 summaries generated, 0 already cached (2 articles)" in first.output
    second = runner.invoke(app, ["pregenerate", "--top", "2"], env=env)
    assert second.exit_code == 0, second.output
    assert "0 summaries generated, 6 already cached" in second.output
