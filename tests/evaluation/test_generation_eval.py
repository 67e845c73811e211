"""`finetune` then `eval-generation` through the CLI, on a tiny random Llama: the commands, the
adapter files and the exact report schema (quality is measured on the real model, see README)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from core.cli import app
from evaluation.generation import rouge_scores, unsupported_rate
from tests.conftest import data_path


def test_finetune_then_eval_generation_cli(tiny_lm_dir: Path, tmp_path: Path) -> None:
    adapter = tmp_path / "lora-headline"
    env = {
        **os.environ,
        "NEWSROOM_DATA_DIR": str(tmp_path / "var"),
        "NEWSROOM_GENERATION__BASE_MODEL": str(tiny_lm_dir),
        "NEWSROOM_GENERATION__BACKEND": "torch",
        "NEWSROOM_GENERATION__HEADLINE_ADAPTER": str(adapter),
    }
    runner = CliRunner()
    bbc = str(data_path("bbc_news_summary"))
    trained = runner.invoke(
        app,
        [
            "finetune",
            "--task",
            "headline",
            "--data",
            bbc,
            "--format",
            "bbc",
            "--out",
            str(adapter),
            "--steps",
            "1",
            "--batch-size",
            "1",
        ],
        env=env,
    )
    assert trained.exit_code == 0, trained.output
    for name in ("adapter_model.safetensors", "adapter_config.json", "eval.json", "loss.png"):
        assert (adapter / name).is_file(), name

    out = tmp_path / "report.json"
    evaluated = runner.invoke(
        app,
        [
            "eval-generation",
            "--task",
            "headline",
            "--data",
            bbc,
            "--format",
            "bbc",
            "--limit",
            "2",
            "--json",
            str(out),
        ],
        env=env,
    )
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(out.read_text())
    assert set(report) == {"task", "n", "systems"} and report["n"] == 2
    assert set(report["systems"]) == {"lead", "base", "finetuned", "served"}
    for row in report["systems"].values():
        assert set(row) == {"rouge1", "rouge2", "rougeL", "unsupported_rate"}
    assert report["systems"]["served"]["unsupported_rate"] == 0.0  # the guard's promise
    assert "served" in evaluated.output  # the table is printed

    bad = runner.invoke(
        app,
        [
            "eval-generation",
            "--task",
            "headline",
            "--data",
            bbc,
            "--format",
            "xsum",
            "--json",
            str(out),
        ],
        env=env,
    )
    assert bad.exit_code != 0


def test_rouge_and_unsupported_rate_on_hand_computed_examples() -> None:
    scores = rouge_scores(["the cat sat"], ["the cat sat on the mat"])
    # ROUGE-1: P = 3/3, R = 3/6 -> F1 = 2*1*0.5/1.5 = 66.67
    assert scores["rouge1"] == 66.67 and scores["rouge2"] == 57.14  # P=2/2, R=2/5
    source = "Police say Smith paid 5 pounds."
    outputs = ["Police say Smith paid 5 pounds", "Police say Jones paid 7 pounds"]
    # Checked: Smith, 5 (both supported) | Jones, 7 (neither): 2 of 4 unsupported.
    assert unsupported_rate(outputs, [source, source]) == 0.5
