"""What each ranking signal adds on MIND: train the head with one signal group removed at a time
and evaluate every variant on the same held-out impressions.

Run: `python -m bench.ablation_mind` (about 10-15 minutes on 2 cores; text embeddings are cached
under `var/cache`). Prints a table and writes `bench/results/ablation_mind.json`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import REPO_ROOT, default_data_dir, markdown_table, setup_logging, write_results
from core.settings import Settings
from evaluation.ranker_eval import EvalRankerConfig
from evaluation.ranker_eval import main as evaluate
from ranking.features import FEATURE_NAMES
from ranking.train import TrainRankerConfig
from ranking.train import main as train
from retrieval.embedder import Embedder

ALL = list(FEATURE_NAMES)
VARIANTS: dict[str, dict] = {
    "full head": {},
    "- attention user encoder": {"use_attention": False},
    "- co-click (collaborative)": {"features": [f for f in ALL if f != "coclick"]},
    "- popularity + click-through": {
        "features": [f for f in ALL if f not in ("popularity", "ctr")]
    },
    "- content features": {
        "features": [f for f in ALL if f not in ("content_cosine", "max_history_sim")]
    },
    "content only (no attention)": {
        "use_attention": False,
        "features": ["content_cosine", "max_history_sim", "category_affinity"],
    },
}


def main() -> dict:
    setup_logging()
    data = default_data_dir() / "mind_small_dev_impressions"
    cache = REPO_ROOT / "var" / "cache"
    embedder = Embedder(Settings().retrieval.model_path())
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in VARIANTS.items():
            out = Path(tmp) / name.replace(" ", "_")
            config = TrainRankerConfig(
                data=data, out=out, cache_dir=cache, progress=False, **overrides
            )
            summary = train(config, embedder=embedder)["training"]
            report = evaluate(
                EvalRankerConfig(data=data, model=out, cache_dir=cache, progress=False),
                embedder=embedder,
            )
            metrics = report["systems"]["ranker"]
            results[name] = {**metrics, "best_val_auc": summary["best_val_auc"]}
            baseline = report["systems"]["content_cosine"]["auc"]
            rows.append([name, *(f"{metrics[m]:.4f}" for m in ("auc", "mrr", "ndcg@5", "ndcg@10"))])
            print(f"{name}: {metrics}", flush=True)
    table = markdown_table(["variant", "AUC", "MRR", "nDCG@5", "nDCG@10"], rows)
    print(f"\nMIND held-out impressions: {report['n_impressions']}; content_cosine AUC {baseline}")
    print(table)
    payload = {"n_impressions": report["n_impressions"], "variants": results}
    write_results("ablation_mind", payload)
    return payload


if __name__ == "__main__":
    main()
