"""What the learning loop costs a feed: exposure log off vs on (with exploration and a running
A/B experiment), in one process, alternating on the same readers.

A throw-away newsroom: 1,000 MIND demo articles and 60 readers with 8 clicks each. "on" is the
default configuration (exposures logged in background batches, ε = 0.05 top-slot exploration)
plus a two-arm experiment whose treatment changes the diversity λ: the extra work per feed is
one assignment hash, one queue append and, for the treatment arm, nothing (its recommender is
built once). Also reports how long the background writer takes per 1,000 logged feeds.

Run: `.venv/bin/python -m bench.learning_feed [--requests 400]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.common import (
    latency_ms,
    mind_demo_newsroom,
    setup_logging,
    side_by_side,
    write_results,
)
from core.learning import TopSlotExploration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="Per form (off, on).")
    args = parser.parse_args()
    setup_logging()
    with tempfile.TemporaryDirectory() as tmp:
        service, readers, _ = mind_demo_newsroom(Path(tmp))
        service.start()  # the background exposure writer, as when serving
        learning = service.learning
        on_config = learning.exposures.config
        off_config = on_config.model_copy(update={"log_exposures": False})
        on_exploration = learning.exploration
        off_exploration = TopSlotExploration(0.0, on_config.exploration_pool)
        experiment = service.experiments.create(
            "bench", [{"name": "control"}, {"name": "diverse", "mmr_lambda": 0.5}]
        )
        # The running experiment as each process caches it (re-read every 2 s when serving),
        # pinned per form so the alternation does not turn every feed into a cache miss.
        cached = {"on": experiment, "off": None}
        timings: dict[str, list[float]] = {"off": [], "on": []}
        for n in range(args.requests * 2 + 40):
            form = "on" if n % 2 else "off"
            learning.exposures.config = on_config if form == "on" else off_config
            learning.exploration = on_exploration if form == "on" else off_exploration
            service.experiments._running = (time.monotonic() + 3600, cached[form])
            reader = readers[n % len(readers)]
            started = time.perf_counter()
            service.feeds.feed(reader, 20, None, True)
            elapsed = time.perf_counter() - started
            if n >= 40:
                timings[form].append(elapsed)
        learning.exposures.config = on_config
        learning.exposures.flush()
        store = learning.registry.store
        logged = [f for f in store.iter_feeds() if f.surface == "feed"]
        started = time.perf_counter()
        store.write_feeds(
            [replace(f, feed_id=f"copy{n:028d}") for n, f in enumerate(logged[:1000])]
        )
        write_s = (time.perf_counter() - started) * 1000 / max(min(len(logged), 1000), 1)
        service.close()
    off, on = latency_ms(timings["off"]), latency_ms(timings["on"])
    table, ratio = side_by_side(
        "feed (k=20)",
        ("exposure log off, no experiment", off),
        ("log + exploration + experiment", on),
    )
    print(table)
    print(f"background writer: {write_s:.3f} ms per logged feed (k=20 rows), off the request path")
    write_results(
        "learning_feed",
        {
            "off_ms": off,
            "on_ms": on,
            "p50_ratio": ratio,
            "writer_ms_per_feed": write_s,
            "logged_feeds": len(logged),
        },
    )


if __name__ == "__main__":
    main()
