"""`newsroom retrain`: a challenger ranking head from the service's own exposure log, judged
against the champion on the most recent logged slice.

1. The logged feeds are split by time: the most recent `holdout_fraction` is never trained on.
2. The older ones are written out in the MIND layout the trainer reads (`impressions.jsonl`:
   the reader's clicks before the feed as history, the items shown with their click labels;
   `news.tsv`: the articles), optionally mixed with a MIND directory, and the challenger is
   trained by the same code as the committed head (`ranking.train`).
3. On the recent slice both heads are scored: AUC and nDCG@10 per feed with a click (MIND's
   protocol), and an off-policy estimate of each head's top-slot CTR from the logged
   propensities (`snips`, below), with a bootstrap 95% interval.
4. The challenger is registered in the model registry with its report (never replacing the
   champion); `newsroom promote VERSION` makes it the champion. Like Gorse, the bar for
   `--promote-if-better` is beating the champion on both AUC and nDCG@10.

Why hand-written SNIPS rather than Open Bandit Pipeline: `obp` pins pandas < 2 (the service
runs pandas 3), and the estimator is three lines; tests check it against a hand-made log.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from core.domain import utcnow
from core.learning_store import LearningStore, LoggedFeed
from core.storage import Storage
from evaluation.ranking import average_metrics
from ranking.data import (
    EmbeddingCache,
    InteractionStats,
    MindImpression,
    build_catalog,
    impression_arrays,
    read_impressions,
)
from ranking.features import FEATURE_NAMES
from ranking.scorer import CONFIG_FILE, WEIGHTS_FILE, ClickScorer
from retrieval.embedder import Embedder

log = logging.getLogger(__name__)


@dataclass
class RetrainConfig:
    work_dir: Path
    cache_dir: Path
    mix_mind: Path | None = None  # a MIND directory (impressions.jsonl + news.tsv) to add
    holdout_fraction: float = 0.2
    min_feeds: int = 30
    epochs: int = 20
    patience: int = 4
    hidden: int = 64
    seed: int = 0
    bootstrap: int = 1000
    progress: bool = True


# --- off-policy estimate ---------------------------------------------------------------------
@dataclass(slots=True)
class OffPolicyEstimate:
    value: float | None  # estimated CTR of the top slot under the evaluated head
    ci: tuple[float, float] | None  # bootstrap 95%
    matched: int  # logged feeds whose first item is the one the head would have put first
    effective_sample_size: float


def snips(
    matches: np.ndarray,
    rewards: np.ndarray,
    propensities: np.ndarray,
    bootstrap: int = 1000,
    seed: int = 0,
) -> OffPolicyEstimate:
    """Self-normalised inverse propensity scoring (Swaminathan & Joachims 2015) for a
    deterministic target policy: the logged rounds where the logging policy did what the
    target would have done, each weighted 1/propensity, normalised by the weights' sum.
    `matches`: 1 where the logged action equals the target's; `rewards`: clicks."""
    weights = np.asarray(matches, dtype=float) / np.asarray(propensities, dtype=float)
    rewards = np.asarray(rewards, dtype=float)
    total = weights.sum()
    if total <= 0:
        return OffPolicyEstimate(None, None, 0, 0.0)
    value = float((weights * rewards).sum() / total)
    ess = float(total**2 / (weights**2).sum())
    rng = np.random.default_rng(seed)
    n = len(weights)
    draws = []
    for _ in range(bootstrap):
        pick = rng.integers(n, size=n)
        w = weights[pick]
        if w.sum() > 0:
            draws.append(float((w * rewards[pick]).sum() / w.sum()))
    ci = (float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))) if draws else None
    return OffPolicyEstimate(value, ci, int(np.count_nonzero(matches)), ess)


# --- export -----------------------------------------------------------------------------------
def _clean(text: str) -> str:
    return " ".join(text.split())


def export_feeds(
    feeds: Sequence[LoggedFeed],
    store: LearningStore,
    storage: Storage,
    directory: Path,
    mix_mind: Path | None = None,
) -> int:
    """Write logged feeds as a MIND directory the trainer reads; returns impressions written
    (feeds whose articles are gone are left out)."""
    directory.mkdir(parents=True, exist_ok=True)
    histories = {f.feed_id: store.reader_clicks_before(f.user, f.ts) for f in feeds}
    keys = {i.article_key for f in feeds for i in f.items}
    keys |= {k for h in histories.values() for k in h}
    articles = storage.articles_by_keys(sorted(keys))
    written = 0
    with open(directory / "news.tsv", "w", encoding="utf-8") as news:
        for article in articles.values():
            row = [article.id, article.category or "", "", _clean(article.title)]
            news.write("\t".join([*row, _clean(article.body), article.url or "", "", ""]) + "\n")
        if mix_mind is not None:
            news.write((Path(mix_mind) / "news.tsv").read_text(encoding="utf-8").rstrip("\n"))
            news.write("\n")
    with open(directory / "impressions.jsonl", "w", encoding="utf-8") as out:
        for feed in feeds:
            shown = [i for i in feed.items if i.article_key in articles]
            if len(shown) != len(feed.items):  # an article since deleted: positions would shift
                continue
            history = [articles[k] for k in histories[feed.feed_id] if k in articles]
            record = {
                "impression_id": feed.feed_id,
                "user_key": feed.user,
                "history": [{"nid": a.id, "title": a.title} for a in history],
                "candidates": [
                    {
                        "nid": articles[i.article_key].id,
                        "title": articles[i.article_key].title,
                        "clicked": int(i.clicked),
                    }
                    for i in shown
                ],
            }
            out.write(json.dumps(record) + "\n")
            written += 1
        if mix_mind is not None:
            out.write((Path(mix_mind) / "impressions.jsonl").read_text(encoding="utf-8"))
    return written


# --- evaluation ---------------------------------------------------------------------------------
def evaluate_heads(
    heads: dict[str, ClickScorer],
    recent: Sequence[LoggedFeed],
    impressions: dict[str, MindImpression],
    data_dir: Path,
    stats: InteractionStats,
    embedder: Embedder,
    cache_dir: Path,
    bootstrap: int,
    seed: int,
) -> dict:
    """Each head on the recent slice: ranking metrics and the off-policy top-slot CTR."""
    kept = [f for f in recent if f.feed_id in impressions]
    imps = [impressions[f.feed_id] for f in kept]
    catalog = build_catalog(data_dir, imps, EmbeddingCache(cache_dir, embedder))
    result: dict = {}
    rewards = np.array([float(f.items[0].clicked) for f in kept])
    propensities = np.array([f.items[0].propensity for f in kept])
    for name, scorer in heads.items():
        columns = [FEATURE_NAMES.index(f) for f in scorer.config.features]
        scores: list[np.ndarray] = []
        for imp in imps:
            arrays = impression_arrays(
                imp, catalog, stats, scorer.config.max_history, leave_one_out=False
            )
            scores.append(
                scorer.click_logits(
                    arrays.history,
                    arrays.candidates,
                    scorer.category_ids(arrays.categories),
                    arrays.features[:, columns],
                )
            )
        labels = [imp.labels for imp in imps]
        try:
            means, count = average_metrics(list(zip(labels, scores, strict=True)))
        except ValueError:  # no recent feed with both a click and a non-click
            means, count = {"auc": float("nan"), "ndcg@10": float("nan")}, 0
        matches = np.zeros(len(kept))
        for n, (feed, imp, score) in enumerate(zip(kept, imps, scores, strict=True)):
            pool = set(feed.candidates) if len(feed.candidates) >= 2 else None
            if pool is None:
                continue
            # the impression's candidates are the feed's items in shown order
            eligible = [j for j, item in enumerate(feed.items) if item.article_key in pool]
            if not eligible or len(imp.candidates) != len(feed.items):
                continue
            choice = max(eligible, key=lambda j: score[j])
            matches[n] = float(choice == 0)
        logged = np.array([len(f.candidates) >= 2 for f in kept])
        estimate = snips(matches[logged], rewards[logged], propensities[logged], bootstrap, seed)
        result[name] = {
            "auc": _round(means["auc"]),
            "ndcg@10": _round(means["ndcg@10"]),
            "feeds_with_clicks": count,
            "top_slot_ctr_snips": _round(estimate.value),
            "top_slot_ctr_ci95": [_round(v) for v in estimate.ci] if estimate.ci else None,
            "matched_feeds": estimate.matched,
            "effective_sample_size": round(estimate.effective_sample_size, 1),
        }
    result["logged_top_slot_ctr"] = _round(float(rewards.mean())) if len(rewards) else None
    result["explored_feeds"] = int(sum(f.explored for f in kept))
    result["feeds"] = len(kept)
    return result


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), digits)


# --- the job ------------------------------------------------------------------------------------
@dataclass(slots=True)
class RetrainResult:
    version: str
    report: dict
    report_path: Path
    beats_champion: bool


def beats(challenger: dict, champion: dict) -> bool:
    """Gorse's bar: better on both AUC and nDCG@10."""
    pairs = [(challenger.get(m), champion.get(m)) for m in ("auc", "ndcg@10")]
    return all(a is not None and b is not None and a > b for a, b in pairs)


def retrain(
    config: RetrainConfig,
    store: LearningStore,
    storage: Storage,
    embedder: Embedder,
    champion: tuple[str, ClickScorer],
) -> RetrainResult:
    from ranking.train import TrainRankerConfig
    from ranking.train import main as train_head

    started = time.perf_counter()
    feeds = [f for f in store.iter_feeds() if f.surface == "feed" and f.items]
    if len(feeds) < config.min_feeds:
        raise ValueError(
            f"only {len(feeds)} logged feeds (need {config.min_feeds}): serve more traffic "
            "with the exposure log on (NEWSROOM_LEARNING__LOG_EXPOSURES) or lower --min-feeds"
        )
    cut = int(len(feeds) * (1 - config.holdout_fraction))
    older, recent = feeds[:cut], feeds[cut:]
    holdout_from: datetime = recent[0].ts
    version = f"ranker-{utcnow():%Y%m%d-%H%M%S}"
    work = Path(config.work_dir) / version
    train_dir, recent_dir = work / "train", work / "recent"
    n_train = export_feeds(older, store, storage, train_dir, config.mix_mind)
    n_recent = export_feeds(recent, store, storage, recent_dir)
    log.info("exported %d training and %d recent feeds", n_train, n_recent)
    summary = train_head(
        TrainRankerConfig(
            data=train_dir,
            out=work / "challenger",
            cache_dir=config.cache_dir,
            epochs=config.epochs,
            patience=config.patience,
            hidden=config.hidden,
            seed=config.seed,
            progress=config.progress,
        ),
        embedder,
    )
    challenger = ClickScorer.load(work / "challenger")
    train_imps = read_impressions(train_dir)
    stats = InteractionStats.from_impressions(train_imps)
    recent_imps = {i.impression_id: i for i in read_impressions(recent_dir)}
    champion_name, champion_scorer = champion
    metrics = evaluate_heads(
        {"champion": champion_scorer, "challenger": challenger},
        recent,
        recent_imps,
        recent_dir,
        stats,
        embedder,
        config.cache_dir,
        config.bootstrap,
        config.seed,
    )
    better = beats(metrics["challenger"], metrics["champion"])
    report = {
        "version": version,
        "champion": champion_name,
        "created_at": utcnow().isoformat(),
        "training": {
            "logged_feeds": n_train,
            "mixed_with": str(config.mix_mind) if config.mix_mind else None,
            "best_val_auc": round(summary["training"]["best_val_auc"], 4),
            "epochs_run": len(summary["history"]) - 1,
        },
        "holdout": {"from": holdout_from.isoformat(), "feeds": n_recent},
        "metrics": metrics,
        "beats_champion": better,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    (work / "report.json").write_text(json.dumps(report, indent=2))
    (work / "report.md").write_text(format_table(report))
    plot(report, work / "report.png")
    store.register_version(
        version,
        "ranker",
        report,
        (work / "challenger" / CONFIG_FILE).read_text(),
        (work / "challenger" / WEIGHTS_FILE).read_bytes(),
    )
    return RetrainResult(version, report, work / "report.json", better)


def format_table(report: dict) -> str:
    metrics = report["metrics"]
    lines = [
        "| head | AUC | nDCG@10 | top-slot CTR (SNIPS) | 95% CI | matched feeds |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("champion", "challenger"):
        m = metrics[name]
        ci = m["top_slot_ctr_ci95"]
        label = report["champion"] if name == "champion" else report["version"]
        lines.append(
            f"| {name} ({label}) | {m['auc']} | {m['ndcg@10']} | {m['top_slot_ctr_snips']} | "
            f"{'-' if ci is None else f'{ci[0]}-{ci[1]}'} | {m['matched_feeds']} |"
        )
    lines.append("")
    lines.append(
        f"Recent slice: {metrics['feeds']} feeds from {report['holdout']['from']} "
        f"({metrics['explored_feeds']} explored); logged top-slot CTR "
        f"{metrics['logged_top_slot_ctr']}. Beats the champion: {report['beats_champion']}."
    )
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = report["metrics"]
    names = ["champion", "challenger"]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    for ax, metric in zip(axes, ("auc", "ndcg@10", "top_slot_ctr_snips"), strict=True):
        values = [metrics[n][metric] or 0.0 for n in names]
        errors = None
        if metric == "top_slot_ctr_snips":
            errors = np.array(
                [
                    [
                        v - (metrics[n]["top_slot_ctr_ci95"] or [v, v])[0],
                        (metrics[n]["top_slot_ctr_ci95"] or [v, v])[1] - v,
                    ]
                    for n, v in zip(names, values, strict=True)
                ]
            ).T
        ax.bar(names, values, yerr=errors, color=["#888", "#2b7"], capsize=4)
        ax.set_title(metric)
    fig.suptitle(f"{report['version']} vs {report['champion']} on the recent logged slice")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
