"""Soak: a bounded mixed workload against `newsroom serve` for several minutes, then feed
latency with and without concurrent generation.

Phase 1 (soak): `--clients` workers loop over a weighted mix — feed 40%, events 25%, search 20%,
cached personalized summaries 12%, drafts 3% (drafts at most one at a time: they take seconds) —
for `--minutes`. Errors (5xx, transport errors, unexpected 4xx) and p50/p99 are kept per route;
the server's RSS is sampled every 5 s. Growth is measured from the end of the first minute
(warm-up: caches, allocator, model pages) to the end.
Phase 2 (isolation): 4 clients ask for feeds for `--phase-seconds`, once alone and once while
one client keeps the generation pool busy with uncached summaries and drafts.

Run: `.venv/bin/python -m bench.soak [--minutes 4 --clients 8]` (one embedded `newsroom serve`,
as `make demo` runs it; `bench.feed_load --servers` compares the shared mode's processes).
Targets: 0 errors; RSS growth after warm-up < 5%; feed p99 under generation load <= 1.5x idle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    default_data_dir,
    latency_ms,
    link_shared_models,
    markdown_table,
    setup_logging,
    verdict,
    write_results,
)
from bench.http_search import Server
from core.datasets import read_bbc

MIX = (("feed", 40), ("events", 25), ("search", 20), ("summary", 12), ("draft", 3))
QUERIES = (
    "election results",
    "interest rates",
    "football transfer",
    "new phone launch",
    "film awards",
    "oil prices",
    "broadband speeds",
    "tax plans",
    "tennis final",
)


class Workload:
    def __init__(
        self,
        client: httpx.AsyncClient,
        articles: list[str],
        readers: list[str],
        cached_pairs: list[tuple[str, str]],
        seed: int,
    ) -> None:
        self.client = client
        self.articles = articles
        self.readers = readers
        self.cached_pairs = cached_pairs
        self.rng = random.Random(seed)
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)
        self.shed: dict[str, int] = defaultdict(int)
        self.draft_lock = asyncio.Lock()

    async def one(self, route: str) -> None:
        rng = self.rng
        if route == "draft" and self.draft_lock.locked():
            route = "feed"  # one draft at a time: the rest of the mix keeps going
        started = time.perf_counter()
        try:
            if route == "feed":
                response = await self.client.get(
                    f"/v1/users/{rng.choice(self.readers)}/feed", params={"k": 20}
                )
            elif route == "events":
                events = [
                    {
                        "user_id": rng.choice(self.readers),
                        "type": rng.choice(("impression", "click", "dwell", "dismiss")),
                        "dwell_ms": 20_000,
                        "article_id": rng.choice(self.articles),
                    }
                    for _ in range(5)
                ]
                response = await self.client.post("/v1/events", json={"events": events})
            elif route == "search":
                response = await self.client.get(
                    "/v1/search", params={"q": rng.choice(QUERIES), "k": 10}
                )
            elif route == "summary":
                user, article = rng.choice(self.cached_pairs)
                response = await self.client.get(f"/v1/users/{user}/articles/{article}/summary")
            else:
                async with self.draft_lock:
                    response = await self.client.post(
                        "/v1/drafts", json={"brief": rng.choice(QUERIES), "related_k": 2}
                    )
        except httpx.HTTPError as error:
            self.errors[route].append(type(error).__name__)
            return
        seconds = time.perf_counter() - started
        if response.status_code == 503:
            self.shed[route] += 1
        elif response.status_code >= 400:
            self.errors[route].append(f"{response.status_code} {response.text[:120]}")
        else:
            self.latency[route].append(seconds)

    async def run(
        self, clients: int, seconds: float, routes: tuple[tuple[str, int], ...] = MIX
    ) -> None:
        names = [name for name, _ in routes]
        weights = [weight for _, weight in routes]
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                await self.one(self.rng.choices(names, weights)[0])

        await asyncio.gather(*(worker() for _ in range(clients)))


async def _sample_rss(
    server: Server, samples: list[tuple[float, int]], stop: asyncio.Event, started: float
) -> None:
    while not stop.is_set():
        samples.append((time.perf_counter() - started, server.memory_kib()["VmRSS"]))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=5)


async def _generation_pressure(
    client: httpx.AsyncClient, articles: list[str], stop: asyncio.Event
) -> int:
    """Keep the generation pool busy: uncached personalized summaries and drafts."""
    done = 0
    rng = random.Random(7)
    while not stop.is_set():
        if done % 3 == 2:
            await client.post("/v1/drafts", json={"brief": rng.choice(QUERIES), "related_k": 2})
        else:
            user = f"pressure-{done}"
            await client.post(
                "/v1/events",
                json={"user_id": user, "article_id": rng.choice(articles), "type": "click"},
            )
            await client.get(f"/v1/users/{user}/articles/{rng.choice(articles)}/summary")
        done += 1
    return done


async def bench(data: Path, minutes: float, clients: int, phase_seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        data_dir = Path(tmp)
        link_shared_models(data_dir)
        server = Server(data_dir, data_dir / "server.log", {})
        server.start(timeout_s=180)
        try:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=300) as client:
                articles = list(read_bbc(data / "bbc_news_summary"))
                for start in range(0, len(articles), 500):
                    batch = [
                        {"id": a.id, "title": a.title, "body": a.body, "category": a.category}
                        for a in articles[start : start + 500]
                    ]
                    (
                        await client.post("/v1/articles/bulk", json={"articles": batch})
                    ).raise_for_status()
                ids = [a.id or "" for a in articles]
                rng = random.Random(0)
                readers = [f"reader-{n}" for n in range(300)]
                for reader in readers:
                    events = [
                        {"user_id": reader, "article_id": a, "type": "click"}
                        for a in rng.sample(ids, 8)
                    ]
                    (await client.post("/v1/events", json={"events": events})).raise_for_status()
                pairs = [(rng.choice(readers), rng.choice(ids)) for _ in range(12)]
                for user, article in pairs:  # warm the cache the soak's summaries read
                    (
                        await client.get(f"/v1/users/{user}/articles/{article}/summary")
                    ).raise_for_status()
                await client.post("/v1/drafts", json={"brief": "warm-up", "related_k": 1})

                soak = Workload(client, ids, readers, pairs, seed=1)
                samples: list[tuple[float, int]] = []
                stop = asyncio.Event()
                started = time.perf_counter()
                sampler = asyncio.create_task(_sample_rss(server, samples, stop, started))
                await soak.run(clients, minutes * 60)
                stop.set()
                await sampler

                idle = Workload(client, ids, readers, pairs, seed=2)
                await idle.run(4, phase_seconds, routes=(("feed", 1),))
                loaded = Workload(client, ids, readers, pairs, seed=3)
                stop_pressure = asyncio.Event()
                pressure = asyncio.create_task(_generation_pressure(client, ids, stop_pressure))
                await loaded.run(4, phase_seconds, routes=(("feed", 1),))
                stop_pressure.set()
                generated = await pressure
        finally:
            server.stop(timeout_s=30)
    warm = [kib for t, kib in samples if t >= 60] or [kib for _, kib in samples]
    growth = (warm[-1] - warm[0]) / warm[0]
    idle_p99 = latency_ms(idle.latency["feed"])["p99"]
    loaded_p99 = latency_ms(loaded.latency["feed"])["p99"]
    errors = {route: len(v) for route, v in soak.errors.items()}
    return {
        "minutes": minutes,
        "clients": clients,
        "routes": {route: latency_ms(values) for route, values in soak.latency.items()},
        "errors": errors,
        "error_examples": {route: v[:3] for route, v in soak.errors.items()},
        "shed_503": dict(soak.shed),
        "rss_samples_kib": samples,
        "rss_after_warmup_kib": warm[0],
        "rss_end_kib": warm[-1],
        "rss_growth": growth,
        "feed_idle": latency_ms(idle.latency["feed"]),
        "feed_under_generation": latency_ms(loaded.latency["feed"]),
        "generation_jobs_during_phase2": generated,
        "feed_p99_ratio": loaded_p99 / idle_p99,
        "target_ratio": 1.5,
        "target_met": bool(
            sum(errors.values()) == 0 and growth < 0.05 and loaded_p99 <= 1.5 * idle_p99
        ),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Soak and isolation benchmark.")
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--phase-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    setup_logging()
    result = asyncio.run(bench(args.data, args.minutes, args.clients, args.phase_seconds))
    rows = [
        [
            route,
            r["n"],
            result["errors"].get(route, 0),
            result["shed_503"].get(route, 0),
            r["p50"],
            r["p99"],
        ]
        for route, r in sorted(result["routes"].items())
    ]
    print(markdown_table(["route", "requests", "errors", "shed (503)", "p50 ms", "p99 ms"], rows))
    print(
        f"\nRSS after warm-up {result['rss_after_warmup_kib'] / 1024:.0f} MiB -> end "
        f"{result['rss_end_kib'] / 1024:.0f} MiB: growth {result['rss_growth']:+.1%} "
        f"(target < 5%: {verdict(result['rss_growth'] < 0.05)})"
    )
    print(
        markdown_table(
            ["feed, 4 clients", "n", "p50 ms", "p99 ms"],
            [
                [
                    "idle",
                    result["feed_idle"]["n"],
                    result["feed_idle"]["p50"],
                    result["feed_idle"]["p99"],
                ],
                [
                    "with generation",
                    result["feed_under_generation"]["n"],
                    result["feed_under_generation"]["p50"],
                    result["feed_under_generation"]["p99"],
                ],
            ],
        )
    )
    print(
        f"\nfeed p99 under generation / idle: {result['feed_p99_ratio']:.2f}x "
        f"(target <= 1.5x: {verdict(result['feed_p99_ratio'] <= 1.5)}); errors: "
        f"{sum(result['errors'].values())} (target 0)"
    )
    write_results("soak", result)
    return result


if __name__ == "__main__":
    main()
