"""`newsroom eval-drafts` on a tiny random Llama: the command, the report's schema and that its
shares add up (the real model's figures are measured in the README)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from core.cli import app
from tests.conftest import data_path


def test_eval_drafts_cli_reports_each_system(tiny_lm_dir: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "NEWSROOM_DATA_DIR": str(tmp_path / "var"),
        "NEWSROOM_GENERATION__BASE_MODEL": str(tiny_lm_dir),
        "NEWSROOM_GENERATION__BACKEND": "torch",
        "NEWSROOM_GENERATION__DRAFT_ADAPTER": str(tmp_path / "no-adapter"),
    }
    out = tmp_path / "drafts.json"
    result = CliRunner().invoke(
        app,
        [
            "eval-drafts",
            "--data",
            str(data_path("bbc_news_summary")),
            "--json",
            str(out),
            "--limit",
            "2",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    skipped = report["systems"]["draft adapter"]
    assert skipped == {"skipped": f"no draft adapter at {tmp_path / 'no-adapter'}"}
    base = report["systems"]["base"]
    assert base["drafts"] == 2 and base["sentences"] >= 2
    # A random model's sentences fail the checks: its drafts are extracts, nothing unsupported.
    assert 0.0 <= base["model_grounded"] <= 1.0 and base["unsupported"] <= 0.01
    assert base["draft_s"] >= base["ttft_s"] > 0
    for draft in base["examples"]:
        for sentence in draft["sentences"]:
            assert sentence["origin"] in ("model", "extract") and sentence["citations"]
    assert "| base |" in result.output
