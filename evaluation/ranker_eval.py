"""`newsroom eval-ranker`: four systems side by side on MIND-layout impressions.

Systems: `random`, `popularity` (click counts of the ranker's training impressions),
`content_cosine` (user = mean of history embeddings), `ranker` (the trained head). Only
impressions the ranker never saw are scored: the held-out test split when evaluating the
training directory itself, else every impression not identical to a train/validation one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.ranking import METRICS, average_metrics
from ranking.data import (
    EmbeddingCache,
    InteractionStats,
    MindImpression,
    build_catalog,
    impression_arrays,
    read_impressions,
    split_of,
)
from ranking.model import RankingHead, read_metadata
from ranking.train import resolve_recorded_path, score_arrays
from retrieval.embedder import Embedder

log = logging.getLogger(__name__)
SYSTEMS = ("random", "popularity", "content_cosine", "ranker")


@dataclass
class EvalRankerConfig:
    data: Path
    model: Path
    json_out: Path | None = None
    cache_dir: Path = Path("var/cache")
    train_data: Path | None = None  # default: the directory the model was trained on
    seed: int = 0
    progress: bool = True


def held_out(
    config: EvalRankerConfig, training: dict
) -> tuple[list[MindImpression], InteractionStats]:
    train_dir = Path(config.train_data or resolve_recorded_path(training["data"]))
    if not (train_dir / "impressions.jsonl").exists():
        raise FileNotFoundError(
            f"the ranker's training data {train_dir} is missing; pass --train-data"
        )
    seed, val_f, test_f = training["seed"], training["val_fraction"], training["test_fraction"]
    train_imps = read_impressions(train_dir)
    parts = {
        imp.fingerprint(): split_of(imp.impression_id, seed, val_f, test_f) for imp in train_imps
    }
    stats = InteractionStats.from_impressions(
        [i for i in train_imps if parts[i.fingerprint()] == "train"]
    )
    evaluated = read_impressions(config.data)
    seen = {fp for fp, part in parts.items() if part != "test"}
    kept = [imp for imp in evaluated if imp.fingerprint() not in seen]
    log.info("%d of %d impressions are unseen by the ranker", len(kept), len(evaluated))
    return kept, stats


def main(config: EvalRankerConfig, embedder: Embedder | None = None) -> dict:
    metadata = read_metadata(config.model)
    training = metadata["training"]
    model = RankingHead.load(config.model)
    if embedder is None:
        from core.settings import Settings

        embedder = Embedder(Settings().retrieval.model_path())
    impressions, stats = held_out(config, training)
    if not impressions:
        raise ValueError(f"{config.data}: every impression was used to train the ranker")
    catalog = build_catalog(
        config.data, impressions, EmbeddingCache(config.cache_dir, embedder), config.progress
    )
    arrays = [
        impression_arrays(i, catalog, stats, model.config.max_history, leave_one_out=False)
        for i in impressions
    ]
    rng = np.random.default_rng(config.seed)
    scores = {
        "random": [rng.random(len(a.labels)) for a in arrays],
        "popularity": [stats.popularity.raw([c.id for c in i.candidates]) for i in impressions],
        "content_cosine": [
            a.candidates
            @ (a.history.mean(0) if len(a.history) else np.zeros(a.candidates.shape[1]))
            for a in arrays
        ],
        "ranker": score_arrays(model, arrays, model.config.features),
    }
    systems = {}
    count = 0
    for name in SYSTEMS:
        means, count = average_metrics(
            [(a.labels, s) for a, s in zip(arrays, scores[name], strict=True)]
        )
        systems[name] = {metric: round(means[metric], 4) for metric in METRICS}
    result = {"n_impressions": count, "systems": systems}
    if config.json_out:
        out = Path(config.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        plot(result, out.with_suffix(".png"))
    return result


def format_table(result: dict) -> str:
    lines = [
        f"held-out impressions: {result['n_impressions']}",
        "| system | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for name, metrics in result["systems"].items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[m]:.4f}" for m in METRICS) + " |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["systems"])
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(8, 4))
    for n, name in enumerate(names):
        values = [result["systems"][name][m] for m in METRICS]
        ax.bar(np.arange(len(METRICS)) + n * width, values, width, label=name)
    ax.set_xticks(np.arange(len(METRICS)) + width * (len(names) - 1) / 2, METRICS)
    ax.set_ylim(0, 1)
    ax.set_title(f"Ranking on {result['n_impressions']} held-out MIND impressions")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
