"""The ranking head: scores candidates for a user from frozen article embeddings.

User encoder as in NRMS: self-attention over the history embeddings, then additive attention
pooling into one user vector. The candidate is projected into the same space; their product,
the hand-built features (`ranking.features`) and a category embedding feed a small MLP with two
heads: click logit and expected log-dwell (multi-task; the dwell loss is masked where no dwell
label exists).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ranking.scorer import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ClickScorer,
    RankingHeadConfig,
    read_metadata,
)


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
        return ClickScorer(
            self.config,
            {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()},
        )

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


__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "RankingHead", "RankingHeadConfig", "read_metadata"]
