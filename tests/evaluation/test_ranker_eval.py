"""`eval-ranker` on a real slice of MIND impressions, through the CLI, with the shipped head."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from core.cli import app
from core.settings import Settings
from ranking.data import read_impressions, split_of
from ranking.model import read_metadata
from tests.conftest import data_path


@pytest.mark.slow
def test_eval_ranker_reports_four_systems_on_unseen_impressions(tmp_path):
    source = data_path("mind_small_dev_impressions")
    training = read_metadata(Settings().ranking.model_dir)["training"]
    # A directory of the same layout holding 60 held-out and 20 training impressions: only the
    # held-out ones may be scored.
    lines = (source / "impressions.jsonl").read_text().splitlines()
    impressions = read_impressions(source)
    split = [
        split_of(
            i.impression_id, training["seed"], training["val_fraction"], training["test_fraction"]
        )
        for i in impressions
    ]
    held = [line for line, s in zip(lines, split, strict=True) if s == "test"][:60]
    seen = [line for line, s in zip(lines, split, strict=True) if s == "train"][:20]
    data = tmp_path / "slice"
    data.mkdir()
    (data / "impressions.jsonl").write_text("\n".join(held + seen) + "\n")
    shutil.copy(source / "news.tsv", data / "news.tsv")

    out = tmp_path / "report.json"
    env = {"NEWSROOM_DATA_DIR": str(tmp_path / "var")}
    result = CliRunner().invoke(
        app, ["eval-ranker", "--data", str(data), "--json", str(out)], env=env
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report) == {"n_impressions", "systems"}
    assert set(report["systems"]) == {"random", "popularity", "content_cosine", "ranker"}
    for metrics in report["systems"].values():
        assert set(metrics) == {"auc", "mrr", "ndcg@5", "ndcg@10"}
        assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert 0 < report["n_impressions"] <= 60  # never the 20 training impressions
    assert out.with_suffix(".png").stat().st_size > 1000
    assert "| ranker |" in result.output
