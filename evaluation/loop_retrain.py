"""Part (a) of the loop simulation: real MIND readers replayed against the live service for a
few simulated days, a challenger retrained from what the exposure log recorded, judged
offline against the committed head, then run against it in an A/B experiment on one more day.

The service is the real one, in process (`NewsroomService`: feed, exploration, exposure log,
events, experiments), over a temporary data dir with the MIND dev articles. Each reader is a
real MIND dev reader: their history is replayed as clicks first, and the chance they click a
shown article comes from their real behaviour: high for the articles they really clicked in
that impression, else proportional to how much of their history is in the article's category
(MIND readers click within a few categories), plus a small floor.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.datasets import read_articles
from core.domain import EventDraft
from core.learning import COMMITTED_HEAD, TopSlotExploration
from core.retrain import RetrainConfig, retrain
from core.settings import LearningConfig, Settings
from evaluation.loop_sim import DEFAULT_DATA
from ranking.data import read_impressions
from retrieval.embedder import Embedder

log = logging.getLogger(__name__)


@dataclass
class SimReader:
    user: str
    history: list[str]  # article ids they read before
    clicked: set[str]  # what they really clicked in their impression
    category_share: dict[str, float]


@dataclass
class RetrainSimConfig:
    data: Path = DEFAULT_DATA
    readers: int = 400
    days: int = 4
    k: int = 10
    exploration: float = 0.1
    epochs: int = 15
    seed: int = 0
    p_really_clicked: float = 0.5
    p_category: float = 0.35  # times the reader's share of history in the category
    p_floor: float = 0.01
    progress: bool = True
    other_articles: int | None = None  # None: every MIND dev article is in the catalog
    # The committed head was trained on these MIND impressions: the challenger gets them too,
    # plus the logs (as `newsroom retrain --mix-mind`), so it starts from the same knowledge.
    mix_mind: bool = True
    min_feeds: int = 50


def load_readers(config: RetrainSimConfig, known: set[str], categories: dict[str, str]) -> list:
    readers: list[SimReader] = []
    seen: set[str] = set()
    for imp in read_impressions(config.data):
        history = [h.id for h in imp.history if h.id in known]
        if len(history) < 3 or imp.user_key in seen:
            continue
        seen.add(imp.user_key)
        counts: dict[str, float] = {}
        for article in history:
            category = categories.get(article, "")
            counts[category] = counts.get(category, 0) + 1
        total = sum(counts.values())
        readers.append(
            SimReader(
                user=f"mind-{imp.user_key}",
                history=history[-30:],
                clicked={c.id for c in imp.candidates if c.clicked},
                category_share={c: n / total for c, n in counts.items()},
            )
        )
        if len(readers) >= config.readers:
            break
    return readers


def click_probability(config: RetrainSimConfig, reader: SimReader, article: str, category: str):
    if article in reader.clicked:
        return config.p_really_clicked
    return config.p_floor + config.p_category * reader.category_share.get(category, 0.0)


def run(config: RetrainSimConfig, embedder: Embedder | None = None) -> dict:
    from core.service import NewsroomService

    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    with tempfile.TemporaryDirectory(prefix="loop-sim-") as tmp:
        settings = Settings(  # type: ignore[call-arg]
            data_dir=Path(tmp),
            learning=LearningConfig(exploration=config.exploration),
            _env_file=None,
        )
        service = NewsroomService.from_settings(
            settings, progress=config.progress, embedder=embedder, generation=False
        )
        # seeded, so that a run is reproducible (serving draws from fresh entropy)
        service.learning.exploration = TopSlotExploration(
            config.exploration, settings.learning.exploration_pool, seed=config.seed
        )
        try:
            return _simulate(config, service, rng, Path(tmp), started)
        finally:
            service.close()


def _simulate(config, service, rng, tmp: Path, started: float) -> dict:  # type: ignore[no-untyped-def]
    drafts = list(read_articles(config.data, "mind"))
    categories = {d.id: d.category or "" for d in drafts}
    readers = load_readers(config, set(categories), categories)
    if config.other_articles is not None:  # a smaller catalog: the readers' own articles + N
        used = {a for r in readers for a in (*r.history, *r.clicked)}
        others = [d for d in drafts if d.id not in used][: config.other_articles]
        drafts = [d for d in drafts if d.id in used] + others
    batches = service.articles.ingest_stream(drafts)
    for _ in tqdm(batches, desc="ingest", unit="batch", disable=not config.progress):
        pass
    history = [
        EventDraft(r.user, a, "click", event_id=f"history-{n}")
        for r in readers
        for n, a in enumerate(r.history)
    ]
    for start in range(0, len(history), 2000):
        service.readers.record_events(history[start : start + 2000])

    def day(label: str) -> dict:
        feeds = clicks = 0
        by_arm: dict[str, list[int]] = {}
        for reader in tqdm(readers, desc=label, disable=not config.progress, leave=False):
            result = service.feeds.feed(reader.user, config.k, None, True)
            events = []
            for item in result.feed.items:
                article = item.entry.id
                p = click_probability(config, reader, article, item.entry.category or "")
                if rng.random() < p:
                    events.append(EventDraft(reader.user, article, "click"))
            if events:
                service.readers.record_events(events)
            feeds += 1
            clicks += len(events)
            if result.assignment is not None:
                by_arm.setdefault(result.assignment.arm, []).append(len(events))
        return {
            "feeds": feeds,
            "clicks": clicks,
            "clicks_per_feed": round(clicks / max(feeds, 1), 4),
            "by_arm": {a: round(float(np.mean(c)), 4) for a, c in by_arm.items()},
        }

    days = [day(f"day {n + 1}") for n in range(config.days)]
    service.learning.exposures.flush()
    store = service.learning.registry.store
    result = retrain(
        RetrainConfig(
            work_dir=tmp / "retrain",
            cache_dir=tmp / "cache",
            min_feeds=config.min_feeds,
            mix_mind=config.data if config.mix_mind else None,
            epochs=config.epochs,
            seed=config.seed,
            progress=config.progress,
        ),
        store,
        service.storage,
        service.articles.embedder,
        (COMMITTED_HEAD, service.recommender.scorer),
    )
    # One more day as an A/B experiment: the committed head against the challenger.
    experiment = service.experiments.create(
        "challenger vs committed",
        [
            {"name": "committed", "weight": 1, "ranker_version": COMMITTED_HEAD},
            {"name": "challenger", "weight": 1, "ranker_version": result.version},
        ],
    )
    ab_day = day("A/B day")
    service.learning.exposures.flush()
    report = service.experiments.report(experiment.id)
    arms = {a["name"]: a for a in report["arms"]}
    comparison = arms["challenger"]["comparison"]
    return {
        "readers": len(readers),
        "articles": len(drafts),
        "exploration": config.exploration,
        "days": days,
        "offline": {
            "version": result.version,
            "beats_champion": result.beats_champion,
            "metrics": result.report["metrics"],
            "training": result.report["training"],
        },
        "ab_day": {
            **ab_day,
            "clicks_per_feed": {n: arms[n]["clicks_per_feed"] for n in arms},
            "difference": comparison["difference"],
            "ci": comparison["ci"],
            "p_value": comparison["p_value"],
            "significant": comparison["significant"],
            "method": report["method"],
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def format_table(result: dict) -> str:
    off = result["offline"]["metrics"]
    lines = [
        f"Retraining from the log: {result['readers']} MIND readers, "
        f"{len(result['days'])} simulated days, exploration {result['exploration']}.",
        "",
        "| head | AUC | nDCG@10 | top-slot CTR (SNIPS) | 95% CI |",
        "|---|---|---|---|---|",
    ]
    for name in ("champion", "challenger"):
        m = off[name]
        ci = m["top_slot_ctr_ci95"]
        lines.append(
            f"| {name} | {m['auc']} | {m['ndcg@10']} | {m['top_slot_ctr_snips']} | "
            f"{'-' if ci is None else f'{ci[0]}-{ci[1]}'} |"
        )
    ab = result["ab_day"]
    lines += [
        "",
        f"Logged top-slot CTR {off['logged_top_slot_ctr']}; beats the champion offline: "
        f"{result['offline']['beats_champion']}.",
        "",
        "| A/B day arm | clicks per feed |",
        "|---|---|",
        *[f"| {n} | {v} |" for n, v in ab["clicks_per_feed"].items()],
        "",
        f"challenger - committed: {ab['difference']} (95% CI {ab['ci']}, p {ab['p_value']}, "
        f"{ab['method']}; significant: {ab['significant']})",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    outcome = run(RetrainSimConfig())
    print(format_table(outcome))
    print(json.dumps(outcome["days"]))
