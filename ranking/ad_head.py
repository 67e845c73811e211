"""pCTR for sponsored creatives from the ranking head: the ad task on the head's shared layers.

A creative is scored exactly like a brand-new article (its embedding against the reader's
history, its category, no popularity or co-click counts yet), through the same head. The head
was trained on content clicks; the ad task maps what it computes to a *calibrated* ad click
probability, because a price is only fair if pCTR is. Two forms, measured by `newsroom
eval-ads` (log loss and expected calibration error on held-out readers):

- `platt`: a calibrated head: sigmoid(a * content_logit + b), two parameters;
- `second_head`: a second click head: logistic regression on the shared trunk activations
  (32) and the content logit, trained on ad clicks.
- `identity` (no ad head trained yet): the content head's own probability.

`save(dir)` writes `config.json` (kind, parameters, training metadata); `load(dir)` reads it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ranking.features import FEATURE_NAMES, UserContext, candidate_features
from ranking.scorer import ClickScorer

AdHeadKind = Literal["identity", "platt", "second_head"]
AD_HEAD_FILE = "config.json"


@dataclass(slots=True)
class CreativeScores:
    logits: np.ndarray  # (C,) the content head's click logit
    trunk: np.ndarray  # (C, 32) its shared layers


def score_creatives(
    scorer: ClickScorer,
    user: UserContext,
    vectors: np.ndarray,  # (C, d) unit creative embeddings
    categories: list[str | None],
) -> CreativeScores:
    """The head's view of creatives for one reader: new items, so no counts."""
    zeros = np.zeros(len(vectors), dtype=np.float32)
    features = candidate_features(user, vectors, categories, zeros, 1.0, zeros, zeros)
    columns = [FEATURE_NAMES.index(f) for f in scorer.config.features]
    trunk = scorer.shared_layers(
        user.history_vectors, vectors, scorer.category_ids(categories), features[:, columns]
    )
    logits = trunk @ scorer.click_w + np.float32(scorer.click_b)
    return CreativeScores(logits.astype(np.float32), trunk.astype(np.float32))


@dataclass
class AdHead:
    kind: AdHeadKind = "identity"
    weights: list[float] = field(default_factory=list)  # second_head: trunk (32) + logit (1)
    scale: float = 1.0  # platt: a
    bias: float = 0.0  # platt: b; second_head: intercept
    metadata: dict = field(default_factory=dict)

    def logit(self, scores: CreativeScores) -> np.ndarray:
        if self.kind == "identity":
            return scores.logits
        if self.kind == "platt":
            return self.scale * scores.logits + self.bias
        inputs = np.concatenate([scores.trunk, scores.logits[:, None]], axis=1)
        return inputs @ np.asarray(self.weights, dtype=np.float32) + self.bias

    def probability(self, scores: CreativeScores) -> np.ndarray:
        """(C,) calibrated ad click probabilities."""
        return 1.0 / (1.0 + np.exp(-self.logit(scores)))

    # --- training ---------------------------------------------------------------------------
    @classmethod
    def fit(
        cls, kind: AdHeadKind, scores: CreativeScores, clicks: np.ndarray, l2: float = 1.0
    ) -> AdHead:
        """Fit on ad impressions: `scores` for each shown creative, `clicks` (C,) 0/1."""
        if kind == "identity":
            return cls()
        if kind == "platt":
            w, b = _logistic(scores.logits[:, None], clicks, l2=1e-3)
            return cls("platt", scale=float(w[0]), bias=b)
        inputs = np.concatenate([scores.trunk, scores.logits[:, None]], axis=1)
        w, b = _logistic(inputs, clicks, l2=l2)
        return cls("second_head", weights=[float(x) for x in w], bias=b)

    # --- persistence ------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / AD_HEAD_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> AdHead:
        path = Path(directory) / AD_HEAD_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"no ad head at {directory}: train one with `newsroom eval-ads --save-head`"
            )
        return cls(**json.loads(path.read_text()))

    @classmethod
    def load_or_identity(cls, directory: Path | None) -> AdHead:
        if directory is None or not (Path(directory) / AD_HEAD_FILE).is_file():
            return cls()
        return cls.load(directory)


def _logistic(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (scikit-learn's lbfgs): (weights, intercept)."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        raise ValueError("an ad head needs both clicked and unclicked impressions to train")
    model = LogisticRegression(C=1.0 / max(l2, 1e-9), max_iter=1000)
    model.fit(x.astype(np.float64), y.astype(int))
    return model.coef_[0].astype(np.float32), float(model.intercept_[0])


def calibration(probabilities: np.ndarray, clicks: np.ndarray, bins: int = 10) -> dict:
    """Log loss and expected calibration error (equal-width bins, weighted by count), plus
    the mean predicted vs observed click rate."""
    p = np.clip(probabilities.astype(np.float64), 1e-7, 1 - 1e-7)
    y = clicks.astype(np.float64)
    log_loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(p[mask].mean() - y[mask].mean())
    return {
        "log_loss": round(log_loss, 5),
        "ece": round(float(ece), 5),
        "mean_pctr": round(float(p.mean()), 5),
        "observed_ctr": round(float(y.mean()), 5),
        "n": len(y),
    }
