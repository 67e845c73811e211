"""What sponsored items cost a feed: `feed(k=20, ads=0)` vs `feed(k=20, ads=2)` in one process.

A throw-away newsroom: 1,000 MIND demo articles, 60 readers with 8 clicks each, and 20 live
campaigns (a third untargeted, a third by category, a third by free-text audience). Requests
alternate between the two forms on the same readers, so both see the same machine; medians and
ratios side by side. The ads path adds one small query (campaign versions), one counters read
(budget, pace, cap) and the head on up to 20 creatives.

Run: `.venv/bin/python -m bench.ads_feed [--requests 400]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from itertools import islice
from pathlib import Path

from bench.common import (
    bench_settings,
    default_data_dir,
    latency_ms,
    markdown_table,
    setup_logging,
    write_results,
)
from core.datasets import read_articles
from core.domain import EventDraft
from core.service import NewsroomService


def campaign(n: int, categories: list[str]) -> dict:
    spec: dict = {
        "advertiser": f"Advertiser {n}",
        "creative": {
            "title": f"Offer number {n} for readers like you",
            "body": "A sponsored message.",
            "url": f"https://example.com/{n}",
            "category": categories[n % len(categories)],
        },
        "bid_cpc": 0.2 + 0.1 * (n % 7),
        "daily_budget": 1e6,
    }
    if n % 3 == 1:
        spec["targeting"] = {"categories": [categories[n % len(categories)]]}
    elif n % 3 == 2:
        spec["targeting"] = {"audience": "people who follow sport and fitness"}
    return spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="Per form (ads=0, ads=2).")
    args = parser.parse_args()
    setup_logging()
    with tempfile.TemporaryDirectory() as tmp:
        service = NewsroomService.from_settings(
            bench_settings(Path(tmp)), generation=False, encoder_threads=0
        )
        drafts = list(islice(read_articles(default_data_dir() / "mind_demo_news", "mind"), 1000))
        service.articles.ingest(drafts)
        categories = sorted({d.category for d in drafts if d.category})
        by_category = {c: [d.id for d in drafts if d.category == c] for c in categories}
        readers = [f"reader-{n}" for n in range(60)]
        events = [
            EventDraft(reader, by_category[categories[n % len(categories)]][i], "click")
            for n, reader in enumerate(readers)
            for i in range(min(8, len(by_category[categories[n % len(categories)]])))
        ]
        service.readers.record_events(events)
        for n in range(20):
            service.campaigns.create(campaign(n, categories))
        timings: dict[int, list[float]] = {0: [], 2: []}
        placed = 0
        for n in range(args.requests * 2 + 40):
            ads = 2 * (n % 2)
            reader = readers[n % len(readers)]
            started = time.perf_counter()
            result = service.feeds.feed(reader, 20, None, True, ads)
            elapsed = time.perf_counter() - started
            if n >= 40:  # warm-up: caches, first loads
                timings[ads].append(elapsed)
                placed += len(result.sponsored)
        service.close()
    without, with_ads = latency_ms(timings[0]), latency_ms(timings[2])
    ratio = with_ads["p50"] / without["p50"]
    rows = [
        ["ads=0", f"{without['p50']:.2f}", f"{without['p99']:.2f}", "-"],
        ["ads=2", f"{with_ads['p50']:.2f}", f"{with_ads['p99']:.2f}", f"{ratio:.2f}x"],
    ]
    print(markdown_table(["feed (k=20, 20 campaigns)", "p50 ms", "p99 ms", "p50 ratio"], rows))
    print(f"sponsored items per ads=2 feed: {placed / len(timings[2]):.2f}")
    write_results(
        "ads_feed",
        {
            "without_ads_ms": without,
            "with_ads_ms": with_ads,
            "p50_ratio": ratio,
            "sponsored_per_feed": placed / len(timings[2]),
        },
    )


if __name__ == "__main__":
    main()
