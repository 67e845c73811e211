"""The ranking head's click logit in numpy: what a serving process loads.

Training needs torch (`ranking.model`); serving does not. Loading the weights straight from
`model.safetensors` into numpy keeps torch out of the API processes altogether (~210 MB of RSS
each, measured in `bench/feed_load`), and replays the same eval-mode computation (dropout off,
dwell head skipped). `tests/ranking/test_model.py` checks it against `RankingHead.forward`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np

from ranking.features import FEATURE_NAMES

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class RankingHeadConfig:
    dim: int = 384
    hidden: int = 128
    heads: int = 4
    category_dim: int = 16
    dropout: float = 0.1
    categories: list[str] = field(default_factory=list)  # index 0 is "unknown"
    features: list[str] = field(default_factory=lambda: list(FEATURE_NAMES))
    use_attention: bool = True  # ablation switch: False drops the learned user encoder
    max_history: int = 50


def read_metadata(directory: Path) -> dict:
    return json.loads((Path(directory) / CONFIG_FILE).read_text())


class ClickScorer:
    """The head's click logit for one user and a few hundred candidates, without autograd.

    For that size the torch forward spends most of its time in per-module and per-op dispatch
    (17 modules, ~0.9 ms), not in arithmetic; here every layer is one `x @ w + b` on weights
    stored transposed, (in, out). Build a new scorer after changing the head's parameters.
    """

    def __init__(self, config: RankingHeadConfig, weights: Mapping[str, np.ndarray]) -> None:
        self.config = config
        self.use_attention = config.use_attention
        self.heads = config.heads
        # None is looked up as "" there (`c or ""`): the same here, in one C-level map.
        self.category_index: dict[str | None, int] = {
            c: i + 1 for i, c in enumerate(config.categories)
        }
        self.category_index[None] = self.category_index.get("", 0)

        def array(name: str, transpose: bool = False) -> np.ndarray:
            value = np.asarray(weights[name], dtype=np.float32)
            return np.ascontiguousarray(value.T if transpose else value)

        self.project_w, self.project_b = array("project.weight", True), array("project.bias")
        self.in_w = array("self_attention.in_proj_weight", True)
        self.in_b = array("self_attention.in_proj_bias")
        self.out_w = array("self_attention.out_proj.weight", True)
        self.out_b = array("self_attention.out_proj.bias")
        self.pool_w, self.pool_b = array("pool.0.weight", True), array("pool.0.bias")
        self.pool_v = array("pool.2.weight")[0]
        self.category_table = array("category.weight")
        self.trunk1_w, self.trunk1_b = array("trunk.0.weight", True), array("trunk.0.bias")
        self.trunk2_w, self.trunk2_b = array("trunk.3.weight", True), array("trunk.3.bias")
        self.click_w, self.click_b = array("click.weight")[0], float(array("click.bias")[0])

    @classmethod
    def load(cls, directory: Path) -> ClickScorer:
        """From what `RankingHead.save` wrote: config.json beside model.safetensors."""
        from safetensors.numpy import load_file

        directory = Path(directory)
        config_path = directory / CONFIG_FILE
        if not config_path.exists():
            raise FileNotFoundError(f"no ranking head at {directory} (missing {CONFIG_FILE})")
        payload = json.loads(config_path.read_text())
        return cls(RankingHeadConfig(**payload["config"]), load_file(str(directory / WEIGHTS_FILE)))

    def category_ids(self, categories: Sequence[str | None]) -> np.ndarray:
        """Like `RankingHead.category_ids`: unknown or missing categories map to 0."""
        return np.fromiter(
            map(self.category_index.get, categories, repeat(0)), np.int64, len(categories)
        )

    def encode_user(self, history: np.ndarray) -> np.ndarray:
        """history (L, d), L may be 0 -> user vector (h,); zero for an empty history."""
        hidden = self.project_w.shape[1]
        if len(history) == 0:
            return np.zeros(hidden, dtype=np.float32)
        x = history @ self.project_w + self.project_b  # (L, h)
        q, k, v = np.split(x @ self.in_w + self.in_b, 3, axis=1)
        heads, width = self.heads, hidden // self.heads
        # (heads, L, width): one batched product per step instead of a loop over heads
        q = q.reshape(-1, heads, width).transpose(1, 0, 2) * np.float32(1.0 / math.sqrt(width))
        k = k.reshape(-1, heads, width).transpose(1, 0, 2)
        v = v.reshape(-1, heads, width).transpose(1, 0, 2)
        attended = _softmax(q @ k.transpose(0, 2, 1)) @ v  # (heads, L, width)
        x = attended.transpose(1, 0, 2).reshape(-1, hidden) @ self.out_w + self.out_b
        weights = _softmax(np.tanh(x @ self.pool_w + self.pool_b) @ self.pool_v)  # (L,)
        return weights @ x

    def click_logits(
        self,
        history: np.ndarray,  # (L, d), L may be 0
        candidates: np.ndarray,  # (C, d)
        category_ids: np.ndarray,  # (C,) from `category_ids`
        features: np.ndarray,  # (C, F) in the head's feature order
    ) -> np.ndarray:
        """(C,) float32 click logits, as `RankingHead.forward` computes them in eval mode."""
        z = self.shared_layers(history, candidates, category_ids, features)
        return z @ self.click_w + np.float32(self.click_b)

    def shared_layers(
        self,
        history: np.ndarray,  # (L, d), L may be 0
        candidates: np.ndarray,  # (C, d)
        category_ids: np.ndarray,  # (C,)
        features: np.ndarray,  # (C, F) in the head's feature order
    ) -> np.ndarray:
        """(C, 32) the trunk's last activations, which the click logit (and an ad head,
        `ranking.ad_head`) reads."""
        parts = [features.astype(np.float32, copy=False), self.category_table[category_ids]]
        if self.use_attention:
            user = self.encode_user(history)
            interaction = (candidates @ self.project_w + self.project_b) * user  # (C, h)
            parts = [interaction, interaction.sum(axis=1, keepdims=True), *parts]
        z = np.concatenate(parts, axis=1)
        z = np.maximum(z @ self.trunk1_w + self.trunk1_b, 0.0)
        return np.maximum(z @ self.trunk2_w + self.trunk2_b, 0.0)


def _softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (float32), shifted by the maximum like torch's."""
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
