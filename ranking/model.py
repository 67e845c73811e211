"""The ranking head: scores candidates for a user from frozen article embeddings.

User encoder as in NRMS: self-attention over the history embeddings, then additive attention
pooling into one user vector. The candidate is projected into the same space; their product,
the hand-built features (`ranking.features`) and a category embedding feed a small MLP with two
heads: click logit and expected log-dwell (multi-task; the dwell loss is masked where no dwell
label exists).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np
import torch
from torch import nn

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


class RankingHead(nn.Module):
    def __init__(self, config: RankingHeadConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.project = nn.Linear(config.dim, h)
        self.self_attention = nn.MultiheadAttention(
            h, config.heads, dropout=config.dropout, batch_first=True
        )
        # No bias on the last layer: softmax is shift-invariant, a bias would never train.
        self.pool = nn.Sequential(nn.Linear(h, h // 2), nn.Tanh(), nn.Linear(h // 2, 1, bias=False))
        self.category = nn.Embedding(len(config.categories) + 1, config.category_dim)
        n_features = len(config.features)
        mlp_in = (h + 1 if config.use_attention else 0) + n_features + config.category_dim
        self.trunk = nn.Sequential(
            nn.Linear(mlp_in, 64),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(64, 32),
            nn.ReLU(),
        )
        self.click = nn.Linear(32, 1)
        self.dwell = nn.Linear(32, 1)
        self._category_index = {c: i + 1 for i, c in enumerate(config.categories)}

    def category_ids(self, categories: list[str | None]) -> torch.Tensor:
        return torch.tensor([self._category_index.get(c or "", 0) for c in categories])

    def encode_user(self, history: torch.Tensor, history_mask: torch.Tensor) -> torch.Tensor:
        """history (B, L, d), mask (B, L) True where real -> user vector (B, h)."""
        x = self.project(history)  # (B, L, h)
        # A user with no history attends to nothing: give them one dummy slot, zeroed after.
        empty = ~history_mask.any(dim=1)  # (B,)
        mask = history_mask.clone()
        mask[empty, 0] = True
        x, _ = self.self_attention(x, x, x, key_padding_mask=~mask, need_weights=False)
        logits = self.pool(x).squeeze(-1).masked_fill(~mask, float("-inf"))  # (B, L)
        weights = torch.softmax(logits, dim=1).unsqueeze(-1)
        user = (weights * x).sum(dim=1)  # (B, h)
        return user.masked_fill(empty.unsqueeze(-1), 0.0)

    def forward(
        self,
        history: torch.Tensor,  # (B, L, d)
        history_mask: torch.Tensor,  # (B, L) bool
        candidates: torch.Tensor,  # (B, C, d)
        candidate_categories: torch.Tensor,  # (B, C) long
        features: torch.Tensor,  # (B, C, F)
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (click logits (B, C), expected log1p dwell seconds (B, C))."""
        parts = [features, self.category(candidate_categories)]
        if self.config.use_attention:
            user = self.encode_user(history, history_mask)  # (B, h)
            cand = self.project(candidates)  # (B, C, h)
            interaction = cand * user.unsqueeze(1)  # (B, C, h)
            parts = [interaction, interaction.sum(-1, keepdim=True), *parts]
        z = self.trunk(torch.cat(parts, dim=-1))
        return self.click(z).squeeze(-1), self.dwell(z).squeeze(-1)

    def click_scorer(self) -> ClickScorer:
        """A numpy copy of the weights the click logit needs, for serving (see ClickScorer)."""
        return ClickScorer(self)

    # --- persistence ------------------------------------------------------------------------
    def save(self, directory: Path, extra: dict | None = None) -> None:
        """config.json beside model.safetensors; `extra` holds training metadata."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = {"config": asdict(self.config), **(extra or {})}
        (directory / CONFIG_FILE).write_text(json.dumps(payload, indent=2))
        state = {k: v.contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE))

    @classmethod
    def load(cls, directory: Path) -> RankingHead:
        from safetensors.torch import load_file

        directory = Path(directory)
        config_path = directory / CONFIG_FILE
        if not config_path.exists():
            raise FileNotFoundError(f"no ranking head at {directory} (missing {CONFIG_FILE})")
        payload = json.loads(config_path.read_text())
        model = cls(RankingHeadConfig(**payload["config"]))
        model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        model.eval()
        return model


def read_metadata(directory: Path) -> dict:
    return json.loads((Path(directory) / CONFIG_FILE).read_text())


class ClickScorer:
    """The head's click logit for one user in numpy: what serving needs, without autograd.

    For one user and a few hundred candidates the torch forward spends most of its time in
    per-module and per-op dispatch (17 modules, ~0.9 ms), not in arithmetic. This replays the
    same eval-mode computation (dropout off, dwell head skipped) on numpy copies of the weights;
    `tests/ranking/test_model.py` checks it against `RankingHead.forward`. The weights are
    copied once: build a new scorer after changing the head's parameters.
    """

    def __init__(self, head: RankingHead) -> None:
        config = head.config
        self.use_attention = config.use_attention
        self.heads = config.heads
        # None is looked up as "" there (`c or ""`): the same here, in one C-level map.
        self.category_index: dict[str | None, int] = dict(head._category_index)
        self.category_index[None] = self.category_index.get("", 0)

        def array(tensor: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)

        # Weights stored transposed, (in, out), so every layer is one `x @ w + b`.
        self.project_w, self.project_b = array(head.project.weight.T), array(head.project.bias)
        attention = head.self_attention
        self.in_w, self.in_b = array(attention.in_proj_weight.T), array(attention.in_proj_bias)
        self.out_w = array(attention.out_proj.weight.T)
        self.out_b = array(attention.out_proj.bias)
        pool_hidden, pool_out = head.pool[0], head.pool[2]
        self.pool_w, self.pool_b = array(pool_hidden.weight.T), array(pool_hidden.bias)
        self.pool_v = array(pool_out.weight[0])
        self.category_table = array(head.category.weight)
        first, second = head.trunk[0], head.trunk[3]
        self.trunk1_w, self.trunk1_b = array(first.weight.T), array(first.bias)
        self.trunk2_w, self.trunk2_b = array(second.weight.T), array(second.bias)
        self.click_w, self.click_b = array(head.click.weight[0]), head.click.bias.item()

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
        parts = [features.astype(np.float32, copy=False), self.category_table[category_ids]]
        if self.use_attention:
            user = self.encode_user(history)
            interaction = (candidates @ self.project_w + self.project_b) * user  # (C, h)
            parts = [interaction, interaction.sum(axis=1, keepdims=True), *parts]
        z = np.concatenate(parts, axis=1)
        z = np.maximum(z @ self.trunk1_w + self.trunk1_b, 0.0)
        z = np.maximum(z @ self.trunk2_w + self.trunk2_b, 0.0)
        return z @ self.click_w + np.float32(self.click_b)


def _softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (float32), shifted by the maximum like torch's."""
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
