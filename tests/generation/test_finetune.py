from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from generation.data import load_examples, select_split
from generation.finetune import FinetuneConfig, batch_order, main
from tests.conftest import data_path


def _config(tiny_lm_dir: Path, out: Path, steps: int) -> FinetuneConfig:
    return FinetuneConfig(
        task="headline",
        data=data_path("bbc_news_summary"),
        format="bbc",
        out=out,
        data_dir=out.parent,
        base_model=tiny_lm_dir,
        batch_size=2,
        max_steps=steps,
        val_examples=4,
        eval_every=2,
        save_every=1,
        learning_rate=5e-3,
        threads=1,
    )


def test_a_step_changes_the_lora_weights_and_resume_continues(
    tiny_lm_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "adapter"
    report = main(_config(tiny_lm_dir, out, steps=1), progress=False)
    weights = load_file(out / "adapter_model.safetensors")
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b and any(float(t.abs().sum()) > 0 for t in lora_b)  # B starts at zero
    assert report["steps"] == 1
    assert {t.dtype for t in weights.values()} == {torch.float16}  # served copy: half the bytes

    resumed = main(_config(tiny_lm_dir, out, steps=3), progress=False)
    assert resumed["steps"] == 3
    assert [s for s, _ in resumed["history"]["train"]] == [1, 2, 3]
    assert (out / "loss.png").stat().st_size > 0
    meta = json.loads((out / "newsroom_adapter.json").read_text())
    assert meta["task"] == "headline" and meta["template"] == "headline@v1"
    after = load_file(out / "adapter_model.safetensors")
    assert any(not after[n].equal(weights[n]) for n in weights)


def test_split_is_stable_disjoint_and_keeps_duplicates_together() -> None:
    examples = load_examples("headline", data_path("bbc_news_summary"), "bbc")
    train = select_split(examples, "train", 0.1)
    val = select_split(examples, "val", 0.1)
    assert len(train) + len(val) == len(examples) and 0.05 < len(val) / len(examples) < 0.15
    train_sources = {" ".join(e.source.lower().split()) for e in train}
    assert not any(" ".join(e.source.lower().split()) in train_sources for e in val)


def test_xsum_has_no_headlines() -> None:
    with pytest.raises(ValueError, match="no headlines"):
        load_examples("headline", data_path("xsum_sample"), "xsum")


def test_batch_order_is_a_resumable_function_of_the_step() -> None:
    assert batch_order(10, 4, 3, seed=1) == batch_order(10, 4, 3, seed=1)
    epoch = [i for step in range(2) for i in batch_order(10, 4, step, seed=1)]
    assert len(set(epoch)) == 8
