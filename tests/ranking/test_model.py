"""Ranking head contracts: save/load identity, a training step moves every weight, and a few
epochs on a real MIND slice lower the validation loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ranking.data import ImpressionArrays
from ranking.features import FEATURE_NAMES
from ranking.model import RankingHead, RankingHeadConfig
from ranking.scorer import ClickScorer
from ranking.train import TrainRankerConfig, collate, feature_index, loss_of, main, score_arrays
from tests.conftest import data_path

DIM = 16


def _arrays(rng: np.random.Generator, n: int) -> list[ImpressionArrays]:
    out = []
    for _ in range(n):
        c = int(rng.integers(2, 6))
        labels = np.zeros(c, np.float32)
        labels[0] = 1
        out.append(
            ImpressionArrays(
                history=rng.standard_normal((int(rng.integers(0, 4)), DIM)).astype(np.float32),
                candidates=rng.standard_normal((c, DIM)).astype(np.float32),
                categories=["sport", None] + ["tech"] * (c - 2),
                features=rng.random((c, len(FEATURE_NAMES))).astype(np.float32),
                labels=labels,
            )
        )
    return out


def _tiny() -> RankingHead:
    torch.manual_seed(0)
    return RankingHead(RankingHeadConfig(dim=DIM, hidden=8, heads=2, categories=["sport", "tech"]))


def test_save_load_round_trip_gives_identical_scores(tmp_path):
    model = _tiny()
    model.eval()
    arrays = _arrays(np.random.default_rng(0), 5)
    before = score_arrays(model, arrays, model.config.features)
    model.save(tmp_path / "head", extra={"note": "x"})
    loaded = RankingHead.load(tmp_path / "head")
    after = score_arrays(loaded, arrays, loaded.config.features)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.config == model.config
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        RankingHead.load(tmp_path / "missing")


def test_one_training_step_changes_every_parameter():
    model = _tiny()
    model.train()
    batch = collate(model, _arrays(np.random.default_rng(1), 8), feature_index(list(FEATURE_NAMES)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # Adam: its step does not shrink with tiny gradients (the pooling ones are ~1e-8 here)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = loss_of(model, batch)
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    for name, param in model.named_parameters():
        if name.startswith("dwell"):
            continue  # no dwell labels in this batch: its loss is masked out by design
        assert not torch.equal(before[name], param), f"Parameter {name} has not changed."


def test_empty_history_is_scored_without_nan():
    model = _tiny()
    model.eval()
    arrays = _arrays(np.random.default_rng(2), 3)
    for a in arrays:
        a.history = np.empty((0, DIM), np.float32)
    for scores in score_arrays(model, arrays, model.config.features):
        assert np.isfinite(scores).all()


@pytest.mark.slow
def test_few_epochs_on_a_real_slice_lower_validation_loss(tmp_path, embedder):
    config = TrainRankerConfig(
        data=data_path("mind_small_dev_impressions"),
        out=tmp_path / "head",
        cache_dir=tmp_path / "cache",
        limit=250,
        epochs=4,
        patience=4,
        progress=False,
    )
    summary = main(config, embedder=embedder)
    losses = [h["val_loss"] for h in summary["history"]]
    assert min(losses[1:]) < losses[0]
    assert (tmp_path / "head" / "model.safetensors").exists()
    assert RankingHead.load(tmp_path / "head").config.categories


@pytest.mark.parametrize("use_attention", [True, False])
@pytest.mark.parametrize("history_length", [0, 1, 7])
def test_click_scorer_matches_the_torch_forward(use_attention, history_length, tmp_path):
    torch.manual_seed(0)
    model = RankingHead(
        RankingHeadConfig(
            dim=DIM, hidden=8, heads=2, categories=["sport", "tech"], use_attention=use_attention
        )
    )
    model.eval()
    rng = np.random.default_rng(history_length)
    history = rng.standard_normal((history_length, DIM)).astype(np.float32)
    candidates = rng.standard_normal((9, DIM)).astype(np.float32)
    categories = ["sport", None, "tech", "unknown-to-the-head", "sport", "tech", None, "x", "tech"]
    features = rng.random((9, len(FEATURE_NAMES))).astype(np.float32)
    with torch.inference_mode():
        padded = history if history_length else np.zeros((1, DIM), np.float32)
        expected, _ = model(
            torch.from_numpy(padded).unsqueeze(0),
            torch.full((1, len(padded)), history_length > 0),
            torch.from_numpy(candidates).unsqueeze(0),
            model.category_ids(categories).unsqueeze(0),
            torch.from_numpy(features).unsqueeze(0),
        )
    scorer = model.click_scorer()
    got = scorer.click_logits(history, candidates, scorer.category_ids(categories), features)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected[0].numpy(), rtol=0, atol=1e-5)
    # What serving loads: the saved head read into numpy, torch never involved.
    model.save(tmp_path / "head")
    served = ClickScorer.load(tmp_path / "head")
    again = served.click_logits(history, candidates, served.category_ids(categories), features)
    np.testing.assert_allclose(again, expected[0].numpy(), rtol=0, atol=1e-5)
