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
from pathlib import Path

from bench.common import (
    latency_ms,
    mind_demo_newsroom,
    setup_logging,
    side_by_side,
    write_results,
)


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
        service, readers, categories = mind_demo_newsroom(Path(tmp))
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
    table, ratio = side_by_side(
        "feed (k=20, 20 campaigns)", ("ads=0", without), ("ads=2", with_ads)
    )
    print(table)
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
