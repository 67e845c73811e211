"""`newsroom eval-checker` on real BBC articles: the labelled set is what it claims to be, and the
semantic check catches corruptions that the lexical guard passes by construction."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from core.cli import app
from evaluation.checker import EvalCheckerConfig, build_cases
from generation.guard import SourceFacts
from tests.conftest import data_path


def test_corrupted_cases_keep_every_fact_inside_the_sources(tmp_path: Path) -> None:
    config = EvalCheckerConfig(
        data=data_path("bbc_news_summary"), json_out=tmp_path / "c.json", limit=40
    )
    cases, sources = build_cases(config)
    kinds = {c.kind for c in cases}
    assert kinds == {"faithful", "number", "subject"}
    for case in cases:
        title, rest = sources[case.article_id]
        if case.kind != "faithful":
            assert case.sentence != case.original
        # the lexical guard cannot see these corruptions: every number and name is in the sources
        assert SourceFacts([title, rest]).check(case.sentence).grounded, case


def test_eval_checker_cli_reports_the_semantic_check_beating_the_lexical_one(
    tmp_path: Path,
) -> None:
    out = tmp_path / "checker.json"
    result = CliRunner().invoke(
        app,
        [
            "eval-checker",
            "--data",
            str(data_path("bbc_news_summary")),
            "--json",
            str(out),
            "--limit",
            "60",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "| semantic |" in result.output
    report = json.loads(out.read_text())
    assert report["cases"] > 30
    assert report["lexical"]["recall"] == 0.0
    assert report["semantic"]["recall"] > 0.5
    assert report["semantic"]["faithful_rejected"] < 0.2
