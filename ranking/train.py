"""`newsroom train-ranker`: train the ranking head on MIND impressions.

Split by impression (deterministic hash): train / validation / held-out test. Popularity and
co-click statistics come from the training impressions only. Early stopping on validation AUC.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from evaluation.ranking import average_metrics
from ranking.data import (
    EmbeddingCache,
    ImpressionArrays,
    InteractionStats,
    MindImpression,
    build_catalog,
    impression_arrays,
    read_impressions,
    split_of,
)
from ranking.features import FEATURE_NAMES
from ranking.model import RankingHead, RankingHeadConfig
from retrieval.embedder import Embedder

log = logging.getLogger(__name__)


@dataclass
class TrainRankerConfig:
    data: Path
    out: Path
    cache_dir: Path = Path("var/cache")
    epochs: int = 40
    batch_size: int = 32  # impressions per step
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 6
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    limit: int | None = None  # first N impressions only (smoke tests)
    hidden: int = 64
    use_attention: bool = True
    features: list[str] = field(default_factory=lambda: list(FEATURE_NAMES))
    progress: bool = True


@dataclass
class PreparedData:
    splits: dict[str, list[MindImpression]]
    arrays: dict[str, list[ImpressionArrays]]
    categories: list[str]
    stats: InteractionStats


def prepare(config: TrainRankerConfig, embedder: Embedder, max_history: int = 50) -> PreparedData:
    impressions = read_impressions(config.data, config.limit)
    splits: dict[str, list[MindImpression]] = {"train": [], "val": [], "test": []}
    for imp in impressions:
        splits[
            split_of(imp.impression_id, config.seed, config.val_fraction, config.test_fraction)
        ].append(imp)
    if not splits["train"] or not splits["val"]:
        raise ValueError(f"{config.data}: too few impressions to split into train and validation")
    cache = EmbeddingCache(config.cache_dir, embedder)
    catalog = build_catalog(config.data, impressions, cache, progress=config.progress)
    stats = InteractionStats.from_impressions(splits["train"])
    arrays = {
        name: [
            impression_arrays(imp, catalog, stats, max_history, leave_one_out=name == "train")
            for imp in split
        ]
        for name, split in splits.items()
    }
    categories = sorted(set(catalog.category.values()))
    return PreparedData(splits, arrays, categories, stats)


def collate(
    model: RankingHead, batch: list[ImpressionArrays], feature_index: list[int]
) -> dict[str, torch.Tensor]:
    """Pad a list of impressions into tensors: history (B, L, d), candidates (B, C, d)..."""
    d = model.config.dim
    length = max(1, max(len(a.history) for a in batch))
    width = max(len(a.candidates) for a in batch)
    b = len(batch)
    history = torch.zeros(b, length, d)
    history_mask = torch.zeros(b, length, dtype=torch.bool)
    candidates = torch.zeros(b, width, d)
    categories = torch.zeros(b, width, dtype=torch.long)
    features = torch.zeros(b, width, len(feature_index))
    labels = torch.zeros(b, width)
    mask = torch.zeros(b, width, dtype=torch.bool)
    for i, a in enumerate(batch):
        n, c = len(a.history), len(a.candidates)
        if n:
            history[i, :n] = torch.from_numpy(a.history)
            history_mask[i, :n] = True
        candidates[i, :c] = torch.from_numpy(a.candidates)
        categories[i, :c] = model.category_ids(a.categories)
        features[i, :c] = torch.from_numpy(a.features[:, feature_index])
        labels[i, :c] = torch.from_numpy(a.labels)
        mask[i, :c] = True
    return {
        "history": history,
        "history_mask": history_mask,
        "candidates": candidates,
        "candidate_categories": categories,
        "features": features,
        "labels": labels,
        "mask": mask,
    }


def portable_path(path: Path) -> str:
    """Record data paths relative to the repository when they sit beside it (../shared/data),
    so a committed head still finds its training data from another clone."""
    from core.settings import REPO_ROOT

    resolved = path.resolve()
    try:
        return os.path.relpath(resolved, REPO_ROOT)
    except ValueError:
        return str(resolved)


def resolve_recorded_path(recorded: str) -> Path:
    from core.settings import REPO_ROOT

    path = Path(recorded)
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def feature_index(features: list[str]) -> list[int]:
    unknown = set(features) - set(FEATURE_NAMES)
    if unknown:
        raise ValueError(f"unknown features {sorted(unknown)}; known: {FEATURE_NAMES}")
    return [FEATURE_NAMES.index(f) for f in features]


def loss_of(model: RankingHead, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    logits, _dwell = model(
        batch["history"],
        batch["history_mask"],
        batch["candidates"],
        batch["candidate_categories"],
        batch["features"],
    )
    mask = batch["mask"]
    # Dwell labels: none in MIND, so that head's loss is masked out here (it trains where
    # dwell events exist).
    return torch.nn.functional.binary_cross_entropy_with_logits(logits[mask], batch["labels"][mask])


@torch.no_grad()
def score_arrays(
    model: RankingHead, arrays: list[ImpressionArrays], features: list[str], batch_size: int = 64
) -> list[np.ndarray]:
    """Click probabilities per impression."""
    model.eval()
    index = feature_index(features)
    scores: list[np.ndarray] = []
    for start in range(0, len(arrays), batch_size):
        chunk = arrays[start : start + batch_size]
        batch = collate(model, chunk, index)
        logits, _ = model(
            batch["history"],
            batch["history_mask"],
            batch["candidates"],
            batch["candidate_categories"],
            batch["features"],
        )
        probs = torch.sigmoid(logits).numpy()
        scores.extend(probs[i, : len(a.candidates)] for i, a in enumerate(chunk))
    return scores


def main(config: TrainRankerConfig, embedder: Embedder | None = None) -> dict:
    """Train, early-stop on validation AUC, save the best head to `config.out`."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if embedder is None:
        from core.settings import Settings

        embedder = Embedder(Settings().retrieval.model_path())
    data = prepare(config, embedder)
    head_config = RankingHeadConfig(
        dim=embedder.dim,
        hidden=config.hidden,
        categories=data.categories,
        features=list(config.features),
        use_attention=config.use_attention,
    )
    model = RankingHead(head_config)
    index = feature_index(config.features)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    train, val = data.arrays["train"], data.arrays["val"]
    val_batch = collate(model, val, index)
    with torch.no_grad():
        model.eval()
        initial_val_loss = float(loss_of(model, val_batch))
    history: list[dict] = [{"epoch": 0, "val_loss": initial_val_loss}]
    best_auc, best_state, stale = -1.0, None, 0
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = rng.permutation(len(train))
        losses = []
        steps = range(0, len(order), config.batch_size)
        for start in tqdm(
            steps, desc=f"epoch {epoch}", unit="step", disable=not config.progress, leave=False
        ):
            batch = collate(
                model, [train[i] for i in order[start : start + config.batch_size]], index
            )
            loss = loss_of(model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            val_loss = float(loss_of(model, val_batch))
        val_scores = score_arrays(model, val, config.features)
        val_auc = average_metrics([(a.labels, s) for a, s in zip(val, val_scores, strict=True)])[0][
            "auc"
        ]
        history.append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                "val_loss": val_loss,
                "val_auc": val_auc,
            }
        )
        log.info(
            "epoch %d: train %.4f val %.4f val AUC %.4f", epoch, np.mean(losses), val_loss, val_auc
        )
        if config.progress:
            tqdm.write(
                f"epoch {epoch}: train loss {np.mean(losses):.4f}  "
                f"val loss {val_loss:.4f}  val AUC {val_auc:.4f}"
            )
        if val_auc > best_auc + 1e-4:
            best_auc, stale = val_auc, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    summary = {
        "training": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
            "data": portable_path(Path(config.data)),
            "n_train": len(train),
            "n_val": len(val),
            "n_test": len(data.arrays["test"]),
            "best_val_auc": best_auc,
            "seconds": round(time.perf_counter() - started, 1),
        },
        "history": history,
    }
    model.save(config.out, extra=summary)
    return summary
