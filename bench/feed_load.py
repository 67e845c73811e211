"""Feed benchmark: `GET /v1/users/{user}/feed` under concurrent load against a real
`newsroom serve`, plus the event ingest rate in-process and over HTTP.

1. Data: 100k articles in a fresh data dir under `var/bench-feed/` (git-ignored), stored through
   `Storage.write_articles` (vectors = perturbed AG News MiniLM embeddings, sigma 0.02,
   re-normalised; nothing is re-encoded), with their AG News category and a `published_at`
   spread over the last 7 days so freshness matters.
2. Events in-process: `NewsroomService.from_settings` (which builds and saves the HNSW index),
   then 10k readers' events, interleaved in time order, through `service.readers.record_events` in
   batches of 2,000. Each reader clicks 10-30 articles of 1-3 favourite categories (skewed
   towards popular ones), sees each before clicking plus 5-20 it does not click, and dismisses
   0-3 off-topic ones. Reported: events/s, median over batches. The service is then closed.
3. Each server of `--servers` in turn (default: `embedded:1 shared:1 shared:2`), on a free
   127.0.0.1 port with NEWSROOM_DATA_DIR at that dir: `embedded:1` is `newsroom serve` on the
   SQLite data (as `make demo` serves); `shared:N` is `newsroom serve --workers N` on a
   PostgreSQL 15 holding a copy of the same rows and an empty Redis (both started by the bench
   from Debian's binaries, like the tests'), so profiles are read through Redis (the ranking head
   is the repo's `models/ranker`; if it is missing or still being written, the script waits up
   to 20 minutes for it, before step 2, which needs it too).
4. Feed load: 16 workers (one `bench.lean_http` keep-alive connection each; `--client httpx`
   for httpx.AsyncClient, ~8x the load generator's CPU) request `/v1/users/{user}/feed?k=20`
   back to back for random known readers (10% unknown, cold-start readers) for 45 s after a 5 s
   warm-up: p50, p90, p99, requests/s, errors (non-200 or exceptions): the saturation point
   (closed loop). Then the
   same 16 clients in open loop, paced to 200 req/s in total (`--paced-rate`; Poisson arrivals,
   latency from each request's scheduled start, so waits behind a slow request count): the
   latency at the target traffic. Then 15 s closed-loop windows at 1 and 4 clients show how
   latency follows concurrency, and 4 workers `POST /v1/events` batches of 50 for 15 s: the HTTP
   event ingest rate. Server VmRSS/VmHWM come from /proc.
5. Where the time goes: 200 `Recommender.feed` calls in-process on the same data, timed and then
   under cProfile (top 15 cumulative). `--py-spy 20` also samples the live server with py-spy
   (`pip install py-spy -c constraints.txt`) during an extra 20 s feed window.

Targets (issue #13, shared mode with 2 workers): >= 480 feeds/s at saturation, p99 <= 30 ms at
200 req/s offered, RSS of all API processes <= 1.5 GB; the table at the end has every server
side by side, with Redis's memory per million events and a profile read through Redis vs the
in-process cache. The load generator
runs on the same two cores as the server and competes with it; its CPU time (time.process_time)
and the server's (from /proc) are reported per phase so the reader can judge.

Run: `.venv/bin/python -m bench.feed_load [--servers embedded:1 shared:2] [--duration 45] [--keep]`
Writes `bench/results/feed_load.json`. About 5 minutes on 2 cores (warm embedding cache);
`--keep` leaves the data dir under `var/bench-feed/` for further profiling, and
`--reuse var/bench-feed/run-*/data` starts a later run from a copy of it (steps 1-2 skipped,
about 1 minute with `--duration 20 --profile-calls 0`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import numpy as np

from bench.common import (
    REPO_ROOT,
    CpuContention,
    agnews_embeddings,
    bench_settings,
    default_data_dir,
    latency_ms,
    load_agnews,
    markdown_table,
    setup_logging,
    synthetic_set,
    verdict,
    write_results,
)
from bench.feed_common import (
    collapsed_summary,
    event_mix,
    now_s,
    populate_articles,
    process_cpu_s,
    profile_top,
    reader_events,
    user_id,
    wait_for_ranker,
)
from bench.http_search import Server
from bench.lean_http import LeanConnection, LeanHTTPError
from core.domain import EventDraft
from core.settings import Settings
from retrieval.embedder import model_name

log = logging.getLogger(__name__)

# Issue #13's targets on this 2-core box: saturation, p99 at 200 req/s offered, total RSS.
TARGET_P99_MS = 30.0
TARGET_RPS = 480.0
TARGET_RSS_MIB = 1536.0


@dataclass(slots=True)
class FeedBenchConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    work_root: Path = REPO_ROOT / "var" / "bench-feed"
    articles: int = 100_000
    users: int = 10_000
    days: float = 7.0  # published_at spread
    sigma: float = 0.02
    event_batch: int = 2000
    k: int = 20
    clients: int = 16
    warmup_s: float = 5.0
    duration_s: float = 45.0
    cold_share: float = 0.1
    event_clients: int = 4
    http_event_batch: int = 50
    event_warmup_s: float = 2.0
    event_duration_s: float = 15.0
    sweep_clients: tuple[int, ...] = (1, 4)  # extra short feed windows at lower concurrency
    sweep_s: float = 15.0
    # Open loop: the same 16 clients paced to this total rate (Poisson arrivals); 0 skips it.
    paced_rate: float = 200.0
    profile_calls: int = 200  # 0: skip the in-process profile
    py_spy_s: float = 0.0  # > 0: sample the server with py-spy for this long
    ranker_wait_s: float = 1200.0
    startup_timeout_s: float = 300.0
    request_timeout_s: float = 10.0
    shutdown_timeout_s: float = 30.0
    keep: bool = False
    reuse: Path | None = None  # a kept run's data dir: copied, and steps 1-2 are skipped
    # The servers measured side by side, each "mode:workers": embedded (SQLite, one process, as
    # `make demo` serves) and shared (PostgreSQL + Redis, `newsroom serve --workers N`).
    servers: tuple[str, ...] = ("embedded:1", "shared:1", "shared:2")
    client: str = "lean"  # load generator HTTP client: "lean" (bench.lean_http) or "httpx"
    # Index lag: articles ingested through one shared instance, polled by search on another.
    lag_ingests: int = 100
    seed: int = 0


# --- events in-process --------------------------------------------------------------------------
def ingest_in_process(settings: Settings, events: Sequence[EventDraft], batch: int) -> dict:
    """Open the service (index built and saved), send `events` in batches, close it."""
    from core.service import NewsroomService

    started = time.perf_counter()
    service = NewsroomService.from_settings(settings)
    open_s = time.perf_counter() - started
    if service.recommender is None:
        service.close()
        raise RuntimeError(f"no ranking head loaded from {settings.ranking.model_dir}")
    seconds: list[float] = []
    sizes: list[int] = []
    accepted = duplicates = 0
    try:
        for start in range(0, len(events), batch):
            part = list(events[start : start + batch])
            began = time.perf_counter()
            report = service.readers.record_events(part)
            seconds.append(time.perf_counter() - began)
            sizes.append(len(part))
            accepted += report.accepted
            duplicates += report.duplicates
        health = service.status.health()
    finally:
        began = time.perf_counter()
        service.close()
        close_s = time.perf_counter() - began
    rates = np.array(sizes) / np.array(seconds)
    tenth = max(1, len(rates) // 10)
    return {
        "service_open_s": open_s,
        "index_kind": health.index_kind,
        "events": len(events),
        "batch_size": batch,
        "batches": len(rates),
        "accepted": accepted,
        "duplicates": duplicates,
        "median_events_per_s": float(np.median(rates)),
        "p10_events_per_s": float(np.percentile(rates, 10)),
        "p90_events_per_s": float(np.percentile(rates, 90)),
        "first_tenth_median_events_per_s": float(np.median(rates[:tenth])),
        "last_tenth_median_events_per_s": float(np.median(rates[-tenth:])),
        "overall_events_per_s": len(events) / float(sum(seconds)),
        "batch_ms": latency_ms(seconds),
        "close_s": close_s,
    }


def reuse_data(kept: Path, data_dir: Path, articles: int) -> list[str]:
    """Copy a kept run's data dir (articles, events, index snapshot) so this run starts from the
    same state and leaves the kept one untouched; returns the article ids (`feed-<n>`)."""
    if not (kept / "index.snapshot").is_file():
        raise FileNotFoundError(f"{kept} is not a kept feed-bench data dir (no index.snapshot)")
    shutil.copytree(kept, data_dir)
    log.info("reusing the data of %s (setup and in-process ingest skipped)", kept)
    return [f"feed-{i}" for i in range(articles)]


# --- HTTP load ----------------------------------------------------------------------------------
@dataclass(slots=True)
class Outcome:
    ok: bool
    kind: str  # latency class, e.g. "known" / "cold"
    counts: dict[str, int] = field(default_factory=dict)


Client = httpx.AsyncClient | LeanConnection
Call = Callable[[Client, random.Random], Awaitable[Outcome]]


@dataclass(slots=True)
class Sample:
    started: float
    seconds: float
    outcome: Outcome


async def _window(
    base_url: str,
    call: Call,
    clients: int,
    warmup_s: float,
    duration_s: float,
    server_pid: int,
    timeout_s: float,
    seed: int,
    rate: float = 0.0,
    client_kind: str = "lean",
) -> dict[str, Any]:
    """`clients` workers issue `call` for warmup + duration seconds: back to back (closed loop,
    `rate` 0: the server's saturation throughput and the queueing latency it brings), or each
    on its own Poisson schedule so that together they offer `rate` requests/s (open loop: the
    latency a page render sees at that traffic). Paced latency runs from the *scheduled* start,
    so a request delayed behind a slow one counts its wait too (no coordinated omission).
    Requests scheduled inside the measured window count; CPU of this process and of the server
    is metered over exactly that window. `client_kind`: "lean" (one `LeanConnection` per
    worker) or "httpx" (one shared AsyncClient, ~5x the client CPU per request)."""
    samples: list[Sample] = []
    meter: dict[str, float] = {}
    begin = time.perf_counter()
    measure_from = begin + warmup_s
    stop_at = measure_from + duration_s
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def one(client: Client, rng: random.Random, started: float) -> None:
        try:
            outcome = await call(client, rng)
        except (httpx.HTTPError, LeanHTTPError, ValueError, KeyError) as exc:
            outcome = Outcome(False, "exception", {type(exc).__name__: 1})
        samples.append(Sample(started, time.perf_counter() - started, outcome))

    async def worker(client: Client, n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        while (started := time.perf_counter()) < stop_at:
            await one(client, rng, started)

    async def paced_worker(client: Client, n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        arrivals = random.Random(seed * 7919 + n)
        scheduled = begin + arrivals.expovariate(rate / clients)
        while scheduled < stop_at:
            await asyncio.sleep(max(scheduled - time.perf_counter(), 0.0))
            await one(client, rng, scheduled)
            scheduled += arrivals.expovariate(rate / clients)

    async def metering() -> None:
        await asyncio.sleep(max(measure_from - time.perf_counter(), 0.0))
        meter["client_cpu"] = time.process_time()
        meter["server_cpu"] = process_cpu_s(server_pid)
        meter["wall"] = time.perf_counter()
        await asyncio.sleep(max(stop_at - time.perf_counter(), 0.0))
        meter["client_cpu"] = time.process_time() - meter["client_cpu"]
        meter["server_cpu"] = process_cpu_s(server_pid) - meter["server_cpu"]
        meter["wall"] = time.perf_counter() - meter["wall"]

    run = paced_worker if rate > 0 else worker
    if client_kind == "httpx":
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits) as client:
            await asyncio.gather(metering(), *(run(client, n) for n in range(clients)))
    else:
        connections = [LeanConnection(base_url, timeout_s) for _ in range(clients)]
        try:
            await asyncio.gather(metering(), *(run(c, n) for n, c in enumerate(connections)))
        finally:
            for connection in connections:
                await connection.aclose()

    measured = [s for s in samples if measure_from <= s.started < stop_at]
    warm = [s for s in samples if s.started < measure_from]
    counts: Counter[str] = Counter()
    by_kind: dict[str, list[float]] = {}
    for sample in measured:
        counts.update(sample.outcome.counts)
        by_kind.setdefault(sample.outcome.kind, []).append(sample.seconds)
    requests = len(measured)
    return {
        "clients": clients,
        "offered_requests_per_s": rate or None,
        "warmup_s": warmup_s,
        "duration_s": duration_s,
        "requests": requests,
        "errors": sum(not s.outcome.ok for s in measured),
        "requests_per_s": requests / duration_s,
        "latency_ms": latency_ms([s.seconds for s in measured]),
        "latency_ms_by_kind": {kind: latency_ms(v) for kind, v in sorted(by_kind.items())},
        "counts": dict(counts),
        "warmup_requests": len(warm),
        "warmup_errors": sum(not s.outcome.ok for s in warm),
        "metered_wall_s": meter["wall"],
        "client_cpu_s": meter["client_cpu"],
        "client_cpu_cores": meter["client_cpu"] / meter["wall"],
        "server_cpu_s": meter["server_cpu"],
        "server_cpu_cores": meter["server_cpu"] / meter["wall"],
        "server_cpu_ms_per_request": 1000.0 * meter["server_cpu"] / requests if requests else 0.0,
    }


def feed_call(users: Sequence[str], k: int, cold_share: float) -> Call:
    async def call(client: Client, rng: random.Random) -> Outcome:
        cold = rng.random() < cold_share
        user = f"cold-{rng.getrandbits(48):012x}" if cold else rng.choice(users)
        response = await client.get(f"/v1/users/{user}/feed", params={"k": k})
        kind = "cold" if cold else "known"
        if response.status_code != 200:
            return Outcome(False, kind, {f"status_{response.status_code}": 1})
        body = response.json()
        return Outcome(
            True,
            kind,
            {
                "items": len(body["items"]),
                "short_feeds": int(len(body["items"]) < k),
                "known_flagged_cold": int(body["cold_start"] and not cold),
            },
        )

    return call


def events_call(users: Sequence[str], article_ids: Sequence[str], size: int) -> Call:
    numbers = itertools.count()
    kinds = ("impression", "impression", "click")

    async def call(client: Client, rng: random.Random) -> Outcome:
        batch = next(numbers)
        events = [
            {
                "event_id": f"http-{batch}-{i}",
                "user_id": rng.choice(users),
                "article_id": rng.choice(article_ids),
                "type": rng.choice(kinds),
            }
            for i in range(size)
        ]
        response = await client.post("/v1/events", json={"events": events})
        if response.status_code != 200:
            return Outcome(False, "batch", {f"status_{response.status_code}": 1})
        body = response.json()
        return Outcome(
            True, "batch", {"accepted": body["accepted"], "duplicates": body["duplicates"]}
        )

    return call


def run_window(
    server: Server,
    call: Call,
    clients: int,
    warmup_s: float,
    duration_s: float,
    config: FeedBenchConfig,
    rate: float = 0.0,
) -> dict[str, Any]:
    assert server.process is not None
    return asyncio.run(
        _window(
            server.base_url,
            call,
            clients,
            warmup_s,
            duration_s,
            server.process.pid,
            config.request_timeout_s,
            config.seed,
            rate,
            config.client,
        )
    )


def py_spy_window(server: Server, call: Call, config: FeedBenchConfig, out: Path) -> dict | None:
    """Sample the server with py-spy while the feed load runs; None when py-spy is missing."""
    beside = Path(sys.executable).parent / "py-spy"
    exe = str(beside) if beside.exists() else shutil.which("py-spy")
    if exe is None:
        log.warning("py-spy is not installed (pip install py-spy -c constraints.txt): skipped")
        return None
    assert server.process is not None
    seconds = int(config.py_spy_s)
    command = [
        exe,
        "record",
        "--pid",
        str(server.process.pid),
        "--duration",
        str(seconds),
        "--rate",
        "100",
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
    ]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        load = run_window(server, call, config.clients, 1.0, seconds, config)
        _, stderr = spy.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.communicate(timeout=10)
        raise
    if spy.returncode != 0 or not out.exists():
        log.warning("py-spy failed (%s): %s", spy.returncode, stderr.decode(errors="replace"))
        return None
    return {"seconds": seconds, "load": load, **collapsed_summary(out, 15)}


# --- in-process profile -------------------------------------------------------------------------
def profile_in_process(settings: Settings, users: Sequence[str], config: FeedBenchConfig) -> dict:
    """Time `Recommender.feed` alone (no HTTP) on the benchmark data, then cProfile it."""
    from core.service import NewsroomService

    service = NewsroomService.from_settings(settings)
    try:
        recommender = service.recommender
        if recommender is None:
            raise RuntimeError("no ranking head loaded for the in-process profile")
        rng = random.Random(config.seed + 7)
        picks = [
            f"cold-{n}" if rng.random() < config.cold_share else rng.choice(users)
            for n in range(config.profile_calls)
        ]
        for user in picks[:10]:  # warm caches (catalog's fresh list, profiles from SQL)
            recommender.feed(user, config.k)
        seconds = []
        for user in picks:
            started = time.perf_counter()
            recommender.feed(user, config.k)
            seconds.append(time.perf_counter() - started)
        profiler = cProfile.Profile()
        profiler.enable()
        for user in picks:
            recommender.feed(user, config.k)
        profiler.disable()
    finally:
        service.close()
    return {
        "calls": len(picks),
        "latency_ms": latency_ms(seconds),
        "top": profile_top(profiler, 15, len(picks)),
    }


# --- figure -------------------------------------------------------------------------------------
def measure_server(
    server: Server, users: Sequence[str], article_ids: Sequence[str], config: FeedBenchConfig
) -> dict[str, Any]:
    """One server's windows: saturation, open loop at the target rate, the concurrency sweep,
    HTTP events; memory (RSS and PSS over all its processes) after each."""
    section: dict[str, Any] = {}
    try:
        ready_s, health = server.start(config.startup_timeout_s, workers=server.workers)
        log.info("server %s ready in %.1fs", server.label, ready_s)
        if not health.get("ranker"):
            raise RuntimeError("the server loaded no ranking head:\n" + server.log_tail())
        memory = {"idle": server.memory_kib()}
        feed = feed_call(users, config.k, config.cold_share)
        section["feed"] = run_window(
            server, feed, config.clients, config.warmup_s, config.duration_s, config
        )
        log.info("%s feed: %s", server.label, section["feed"]["latency_ms"])
        if config.paced_rate > 0:
            section["feed_paced"] = run_window(
                server,
                feed,
                config.clients,
                config.warmup_s,
                config.duration_s,
                config,
                rate=config.paced_rate,
            )
            log.info("%s feed paced: %s", server.label, section["feed_paced"]["latency_ms"])
        memory["after_feed"] = server.memory_kib()
        section["feed_sweep"] = [
            run_window(server, feed, clients, 2.0, config.sweep_s, config)
            for clients in config.sweep_clients
        ]
        section["events_http"] = run_window(
            server,
            events_call(users, article_ids, config.http_event_batch),
            config.event_clients,
            config.event_warmup_s,
            config.event_duration_s,
            config,
        )
        memory["after_events"] = server.memory_kib()
        if config.py_spy_s > 0:
            section["py_spy"] = py_spy_window(
                server, feed, config, server.log_path.with_suffix(".spy")
            )
    finally:
        stopped, stop_s = server.stop(config.shutdown_timeout_s)
    section["server"] = {
        "label": server.label,
        "ready_s": ready_s,
        "health": health,
        "memory_kib": memory,
        "shutdown": stopped,
        "shutdown_s": stop_s,
        "log": server.log_lines("index ready", "interaction state", "ranking head", "refill"),
    }
    return section


def index_lag(
    data_dir: Path, work: Path, env: dict[str, str], config: FeedBenchConfig
) -> dict[str, Any]:
    """Seconds from a 201 on instance A to the article being the top search hit on instance
    B (another process, which never saw the write): the change log's lag as readers see it."""
    writer = Server(data_dir, work / "server-lag-a.log", env)
    reader = Server(data_dir, work / "server-lag-b.log", env)
    lags: list[float] = []
    try:
        writer.start(config.startup_timeout_s)
        reader.start(config.startup_timeout_s)
        with httpx.Client(timeout=config.request_timeout_s) as client:
            for n in range(config.lag_ingests):
                article_id = f"lag-{n}-{random.getrandbits(32):08x}"
                title = f"Lag probe {article_id}: ferry number {n} sails through the storm"
                created = client.post(
                    f"{writer.base_url}/v1/articles",
                    json={
                        "id": article_id,
                        "title": title,
                        "body": "The ferry left port on time despite the weather warnings.",
                        "category": "world",
                    },
                )
                created.raise_for_status()
                acknowledged = time.perf_counter()
                while True:
                    found = client.get(
                        f"{reader.base_url}/v1/search", params={"q": title, "k": 1}
                    ).json()["results"]
                    if found and found[0]["id"] == article_id:
                        break
                    if time.perf_counter() - acknowledged > 30:
                        raise TimeoutError(f"{article_id} not searchable on B after 30 s")
                    time.sleep(0.005)
                lags.append(time.perf_counter() - acknowledged)
    finally:
        writer.stop(config.shutdown_timeout_s)
        reader.stop(config.shutdown_timeout_s)
    ms = np.array(lags) * 1000
    return {
        "ingests": len(lags),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }


class SharedStores:
    """PostgreSQL and Redis for the shared-mode servers: the bench's SQLite data copied into a
    throw-away PostgreSQL (same rows, keys and sequence positions), an empty Redis."""

    def __init__(self, data_dir: Path, work: Path) -> None:
        from tests.postgres import TemporaryPostgres
        from tests.redis_server import TemporaryRedis

        self.postgres = TemporaryPostgres()
        self.postgres.start()
        self.redis = TemporaryRedis()
        self.redis.start()
        self.database_url = self.postgres.new_database()
        started = time.perf_counter()
        copied = copy_database(
            f"sqlite:///{(data_dir / 'newsroom.db').resolve()}", self.database_url
        )
        self.copy_s = time.perf_counter() - started
        log.info("copied %s into PostgreSQL in %.1fs", copied, self.copy_s)
        self.secret = (data_dir / "user_id_secret").read_text().strip()

    def env(self) -> dict[str, str]:
        return {
            "NEWSROOM_DATABASE_URL": self.database_url,
            "NEWSROOM_REDIS_URL": self.redis.url,
            "NEWSROOM_USER_ID_SECRET": self.secret,
        }

    def redis_figures(self, events: int) -> dict[str, Any]:
        client = self.redis.client()
        info = client.info("memory")
        profiles = sum(1 for _ in client.scan_iter(match="newsroom:p:*", count=1000))
        used = int(info["used_memory"]) - int(info.get("used_memory_startup", 0))
        return {
            "used_memory_mib": used / 2**20,
            "profile_keys": profiles,
            "events": events,
            "mib_per_million_events": used / 2**20 / max(events, 1) * 1e6,
        }

    def round_trip(self, settings: Settings, users: Sequence[str], n: int = 2000) -> dict[str, Any]:
        """What a feed's Redis read costs: the profile lookup through Redis vs the in-process
        cache, same readers (warm), in this process."""
        from core.shared import connect
        from core.storage import Storage
        from ranking.profile_store import LocalProfileCache, ProfileStore, RedisProfileCache

        storage = Storage(self.database_url, self.secret.encode())
        client = connect(self.redis.url, 2.0)
        try:
            timings: dict[str, list[float]] = {}
            for name, cache in (
                ("redis", RedisProfileCache(client, 384)),
                ("in-process", LocalProfileCache()),
            ):
                store = ProfileStore(storage, cache, 384)
                picked = [users[i % len(users)] for i in range(n)]
                for user in picked[:500]:
                    store.get(user)  # warm (the local cache fills, Redis is already full)
                seconds = []
                for user in picked:
                    began = time.perf_counter()
                    store.get(user)
                    seconds.append(time.perf_counter() - began)
                timings[name] = seconds
            return {name: latency_ms(values) for name, values in timings.items()}
        finally:
            client.close()
            storage.close()

    def stop(self) -> None:
        self.redis.stop()
        self.postgres.stop()


def copy_database(source_url: str, target_url: str, batch: int = 5000) -> dict[str, int]:
    """Every row of the source's tables into the (empty) target, keys kept; PostgreSQL's
    sequences then continue after the copied keys."""
    from sqlalchemy import select, text

    from core.storage import Base, Storage

    source = Storage(source_url)
    target = Storage(target_url)
    counts: dict[str, int] = {}
    try:
        with source.engine.connect() as read, target.engine.begin() as write:
            for table in Base.metadata.sorted_tables:
                rows = 0
                result = read.execution_options(yield_per=batch).execute(select(table))
                for part in result.partitions(batch):
                    write.execute(table.insert(), [dict(r._mapping) for r in part])
                    rows += len(part)
                counts[table.name] = rows
                for column in table.primary_key.columns:
                    if column.autoincrement is True or (
                        column.autoincrement == "auto" and column.type.python_type is int
                    ):
                        write.execute(
                            text(
                                f"SELECT setval(pg_get_serial_sequence('{table.name}', "
                                f"'{column.name}'), COALESCE((SELECT MAX({column.name}) FROM "
                                f"{table.name}), 0) + 1, false)"
                            )
                        )
    finally:
        source.close()
        target.close()
    return counts


def main(config: FeedBenchConfig) -> dict[str, Any]:
    from core.threads import limit_threads  # the server's own thread setup (imports torch)

    contention = CpuContention.start()
    config.work_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=config.work_root))
    data_dir = work / "data"
    settings = bench_settings(data_dir)
    # The in-process phases run with the server's thread limits (one torch and one BLAS
    # thread), so their figures and profile describe what `newsroom serve` does.
    limit_threads(settings.ranking.torch_threads)
    model = model_name(Path(settings.retrieval.model_path()))
    result: dict[str, Any] = {
        "config": {
            **asdict(config),
            "data_dir": str(config.data_dir),
            "work_root": str(config.work_root),
            "reuse": str(config.reuse) if config.reuse else None,
        },
    }
    try:
        if config.reuse is not None:
            article_ids = reuse_data(config.reuse, data_dir, config.articles)
            result["setup"] = {
                "articles": len(article_ids),
                "users": config.users,
                "reused_from": str(config.reuse),
                "ranker_dir": str(settings.ranking.model_dir),
            }
        else:
            drafts = load_agnews(config.data_dir)
            base = agnews_embeddings(drafts)
            vectors = synthetic_set(base, config.articles, config.sigma, config.seed + 1)
            now = now_s()
            catalogue, store_s = populate_articles(
                data_dir, drafts, vectors, model, now, config.days, config.seed + 2
            )
            article_ids = catalogue.ids
            log.info("stored %d articles in %.1fs", len(catalogue), store_s)
            events = reader_events(catalogue, config.users, now, config.seed + 3)
            log.info("generated %d events: %s", len(events), event_mix(events))
            waited = wait_for_ranker(settings.ranking.model_dir, config.ranker_wait_s)
            ingest = ingest_in_process(settings, events, config.event_batch)
            log.info("in-process ingest: %.0f events/s (median)", ingest["median_events_per_s"])
            result["setup"] = {
                "articles": len(catalogue),
                "store_s": store_s,
                "users": config.users,
                "event_mix": event_mix(events),
                "ranker_dir": str(settings.ranking.model_dir),
                "ranker_wait_s": waited,
            }
            result["ingest_in_process"] = ingest
        users = [user_id(u) for u in range(config.users)]
        stores = (
            SharedStores(data_dir, work)
            if any(spec.startswith("shared") for spec in config.servers)
            else None
        )
        try:
            result["servers"] = {}
            for spec in config.servers:
                mode, _, workers = spec.partition(":")
                env = stores.env() if (mode == "shared" and stores) else {}
                server = Server(
                    data_dir, work / f"server-{mode}-{workers}.log", env, int(workers or 1)
                )
                result["servers"][spec] = measure_server(server, users, article_ids, config)
                if mode == "shared" and stores is not None:
                    result["servers"][spec]["redis"] = stores.redis_figures(
                        result["servers"][spec]["server"]["health"]["events"]
                    )
            if stores is not None:
                result["redis_round_trip"] = stores.round_trip(settings, users)
                if config.lag_ingests > 0:
                    result["index_lag"] = index_lag(data_dir, work, stores.env(), config)
        finally:
            if stores is not None:
                stores.stop()
        if config.profile_calls:
            result["profile"] = profile_in_process(settings, users, config)
    finally:
        if config.keep:
            log.info("kept the data dir %s", data_dir)
        else:
            shutil.rmtree(work, ignore_errors=True)
    result["cpu_contention"] = contention.stop()
    for section in result["servers"].values():
        figures = section["feed"]
        section["throughput_met"] = figures["requests_per_s"] >= TARGET_RPS
        paced = section.get("feed_paced")
        if paced is not None:
            section["paced_target_met"] = (
                paced["errors"] == 0
                and paced["requests_per_s"] >= 0.97 * config.paced_rate  # Poisson: +-2%
                and paced["latency_ms"]["p99"] <= TARGET_P99_MS
            )
    result["target_p99_ms"] = TARGET_P99_MS
    result["target_requests_per_s"] = TARGET_RPS
    result["target_rss_mib"] = TARGET_RSS_MIB
    _print(result, config)
    path = write_results("feed_load", result)
    print(f"\nresults: {path}")
    return result


def _print(result: dict[str, Any], config: FeedBenchConfig) -> None:
    setup, ingest = result["setup"], result.get("ingest_in_process")
    first = next(iter(result["servers"].values()))
    if ingest is None:
        print(
            f"\n### Setup: {setup['articles']:,} articles, {setup['users']:,} readers, reused "
            f"from {setup['reused_from']}\n"
        )
    else:
        _print_setup(first, setup, ingest)
    for spec, section in result["servers"].items():
        print(f"\n## Server: {section['server']['label']} (`{spec}`)")
        _print_load(section, result, config)
    _print_comparison(result)


def _print_comparison(result: dict[str, Any]) -> None:
    """The servers side by side: what issue #13 asks of shared mode on 2 cores."""
    rows = []
    base_rps = None
    for section in result["servers"].values():
        feed, paced = section["feed"], section.get("feed_paced")
        memory = section["server"]["memory_kib"]["after_events"]
        base_rps = base_rps or feed["requests_per_s"]
        events = section["events_http"]
        events_per_s = events["counts"].get("accepted", 0) / events["duration_s"]
        rows.append(
            [
                section["server"]["label"],
                f"{feed['requests_per_s']:.0f}",
                f"{feed['requests_per_s'] / base_rps:.2f}x",
                f"{paced['latency_ms']['p99']:.1f}" if paced else "-",
                f"{feed['server_cpu_ms_per_request']:.2f}",
                f"{memory['VmRSS'] / 1024:.0f}",
                f"{memory['Pss'] / 1024:.0f}",
                f"{events_per_s:,.0f}",
                f"{section['server']['ready_s']:.1f}",
            ]
        )
    print("\n## Side by side (same data, same load, one run)\n")
    print(
        markdown_table(
            [
                "server",
                "saturation feeds/s",
                "vs first",
                "p99 ms at paced rate",
                "server CPU ms/feed",
                "RSS MiB (all processes)",
                "PSS MiB",
                "events/s over HTTP",
                "ready s",
            ],
            rows,
        )
    )
    print(
        f"\ntargets (shared, 2 workers): >= {TARGET_RPS:.0f} feeds/s at saturation, p99 <= "
        f"{TARGET_P99_MS:.0f} ms at the paced rate, RSS <= {TARGET_RSS_MIB:.0f} MiB"
    )
    for spec, section in result["servers"].items():
        if "redis" in section:
            r = section["redis"]
            print(
                f"Redis after `{spec}`: {r['used_memory_mib']:.1f} MiB for {r['profile_keys']:,} "
                f"profiles and {r['events']:,} events: {r['mib_per_million_events']:.1f} MiB per "
                "million events"
            )
    lag = result.get("index_lag")
    if lag:
        print(
            f"index lag (ingested through instance A, top search hit on instance B) over "
            f"{lag['ingests']} ingests: p50 {lag['p50_ms']:.0f} ms, p99 {lag['p99_ms']:.0f} ms, "
            f"max {lag['max_ms']:.0f} ms (target: within 2 s)"
        )
    trip = result.get("redis_round_trip")
    if trip:
        print(
            f"profile read per feed (in this process, warm): Redis p50 {trip['redis']['p50']:.3f} "
            f"ms / p99 {trip['redis']['p99']:.3f} ms vs in-process cache p50 "
            f"{trip['in-process']['p50']:.3f} ms"
        )


def _print_setup(result: dict[str, Any], setup: dict[str, Any], ingest: dict[str, Any]) -> None:
    mix = ", ".join(f"{n:,} {kind}" for kind, n in sorted(setup["event_mix"].items()))
    print(f"\n### Setup: {setup['articles']:,} articles, {setup['users']:,} readers ({mix})\n")
    print(
        markdown_table(
            ["step", "figure"],
            [
                ["store articles (write_articles)", f"{setup['store_s']:.1f} s"],
                ["open service (index build + save)", f"{ingest['service_open_s']:.1f} s"],
                [
                    f"in-process event ingest, batches of {ingest['batch_size']:,}",
                    f"{ingest['median_events_per_s']:,.0f} events/s median over "
                    f"{ingest['batches']} batches (p10 {ingest['p10_events_per_s']:,.0f}, "
                    f"p90 {ingest['p90_events_per_s']:,.0f}; first tenth "
                    f"{ingest['first_tenth_median_events_per_s']:,.0f}, last tenth "
                    f"{ingest['last_tenth_median_events_per_s']:,.0f})",
                ],
                [
                    "events accepted / duplicates",
                    f"{ingest['accepted']:,} / {ingest['duplicates']}",
                ],
                ["first server ready (index + state)", f"{result['server']['ready_s']:.1f} s"],
            ],
        )
    )


def _print_load(section: dict[str, Any], result: dict[str, Any], config: FeedBenchConfig) -> None:
    feed = section["feed"]
    lat = feed["latency_ms"]
    print(
        f"\n### Feed `GET /v1/users/{{user}}/feed?k={config.k}`: {feed['clients']} clients, "
        f"{feed['duration_s']:.0f} s after {feed['warmup_s']:.0f} s warm-up, "
        f"{config.cold_share:.0%} unknown readers\n"
    )
    rows = [
        [
            "all",
            feed["requests"],
            feed["errors"],
            lat["p50"],
            lat["p90"],
            lat["p99"],
            feed["requests_per_s"],
        ]
    ]
    for kind, figures in feed["latency_ms_by_kind"].items():
        if figures.get("n"):
            rows.append(
                [kind, figures["n"], "", figures["p50"], figures["p90"], figures["p99"], ""]
            )
    print(
        markdown_table(
            ["readers", "requests", "errors", "p50 ms", "p90 ms", "p99 ms", "req/s"],
            [[f"{v:.1f}" if isinstance(v, float) else v for v in row] for row in rows],
        )
    )
    counts = feed["counts"]
    answered = feed["requests"] - feed["errors"]
    print(
        f"\nitems per feed: mean {counts.get('items', 0) / max(answered, 1):.1f} of {config.k}; "
        f"short feeds (< k items): {counts.get('short_feeds', 0)}; known readers answered as "
        f"cold start: {counts.get('known_flagged_cold', 0)}; warm-up: "
        f"{feed['warmup_requests']} requests, {feed['warmup_errors']} errors"
    )
    print(
        f"\nsaturation: {feed['requests_per_s']:.1f} feeds/s (target >= {TARGET_RPS:.0f}: "
        f"{verdict(section['throughput_met'])})"
    )
    paced = section.get("feed_paced")
    if paced is not None:
        plat = paced["latency_ms"]
        print(
            f"\n### Open loop: the same {paced['clients']} clients paced to "
            f"{paced['offered_requests_per_s']:.0f} req/s in total (Poisson arrivals; latency "
            "from each request's scheduled start)\n"
        )
        print(
            markdown_table(
                [
                    "offered req/s",
                    "served req/s",
                    "errors",
                    "p50 ms",
                    "p90 ms",
                    "p99 ms",
                    "server CPU/request",
                    "p99 <= 50 ms at >= 200 req/s",
                ],
                [
                    [
                        f"{paced['offered_requests_per_s']:.0f}",
                        f"{paced['requests_per_s']:.1f}",
                        paced["errors"],
                        f"{plat['p50']:.1f}",
                        f"{plat['p90']:.1f}",
                        f"{plat['p99']:.1f}",
                        f"{paced['server_cpu_ms_per_request']:.2f} ms",
                        verdict(section["paced_target_met"]),
                    ]
                ],
            )
        )
    sweep = sorted([*section["feed_sweep"], feed], key=lambda w: w["clients"])
    print("\n### Feed latency against concurrency (closed loop: latency ~ clients / throughput)\n")
    print(
        markdown_table(
            [
                "clients",
                "seconds",
                "requests",
                "errors",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "req/s",
                "server CPU ms/request",
                "server cores",
            ],
            [
                [
                    w["clients"],
                    f"{w['duration_s']:.0f}",
                    w["requests"],
                    w["errors"],
                    f"{w['latency_ms']['p50']:.1f}",
                    f"{w['latency_ms']['p90']:.1f}",
                    f"{w['latency_ms']['p99']:.1f}",
                    f"{w['requests_per_s']:.1f}",
                    f"{w['server_cpu_ms_per_request']:.2f}",
                    f"{w['server_cpu_cores']:.2f}",
                ]
                for w in sweep
            ],
        )
    )
    events = section["events_http"]
    elat = events["latency_ms"]
    accepted = events["counts"].get("accepted", 0)
    print(
        f"\n### HTTP events `POST /v1/events`: {events['clients']} clients, batches of "
        f"{config.http_event_batch}, {events['duration_s']:.0f} s\n"
    )
    print(
        markdown_table(
            ["batches", "errors", "events accepted", "events/s", "batch p50 ms", "batch p99 ms"],
            [
                [
                    events["requests"],
                    events["errors"],
                    accepted,
                    f"{accepted / events['duration_s']:,.0f}",
                    f"{elat['p50']:.1f}",
                    f"{elat['p99']:.1f}",
                ]
            ],
        )
    )
    print("\n### CPU over the measured windows (load generator = this process)\n")
    print(
        markdown_table(
            [
                "phase",
                "wall s",
                "client CPU s (cores)",
                "server CPU s (cores)",
                "server CPU ms/request",
            ],
            [
                [
                    name,
                    f"{w['metered_wall_s']:.1f}",
                    f"{w['client_cpu_s']:.1f} ({w['client_cpu_cores']:.2f})",
                    f"{w['server_cpu_s']:.1f} ({w['server_cpu_cores']:.2f})",
                    f"{w['server_cpu_ms_per_request']:.2f}",
                ]
                for name, w in (("feed", feed), ("events", events))
            ],
        )
    )
    others = result["cpu_contention"]
    print(
        f"\nother processes on the box used {others['others_cpu_s']:.0f} CPU-s "
        f"({others['others_share']:.0%} of {os.cpu_count()} cores) over the whole "
        f"{others['wall_s']:.0f} s run"
    )
    server = section["server"]
    mib = 1024.0
    mem = server["memory_kib"]
    print("\n### Server process\n")
    print(
        markdown_table(
            [
                "RSS idle MiB",
                "RSS after feed MiB",
                "RSS after events MiB",
                "peak RSS MiB",
                "shutdown",
            ],
            [
                [
                    f"{mem['idle']['VmRSS'] / mib:.0f}",
                    f"{mem['after_feed']['VmRSS'] / mib:.0f}",
                    f"{mem['after_events']['VmRSS'] / mib:.0f}",
                    f"{mem['after_events']['VmHWM'] / mib:.0f}",
                    f"{server['shutdown']} ({server['shutdown_s']:.1f}s)",
                ]
            ],
        )
    )
    profile = result.get("profile")
    if profile:
        plat = profile["latency_ms"]
        print(
            f"\n### In-process `Recommender.feed` (no HTTP), {profile['calls']} calls\n\n"
            f"p50 {plat['p50']:.1f} ms, p99 {plat['p99']:.1f} ms, mean {plat['mean']:.1f} ms "
            f"(server CPU per HTTP feed request: {feed['server_cpu_ms_per_request']:.1f} ms)\n"
        )
        print("top 15 by cumulative time (ms per feed call):\n")
        print(
            markdown_table(
                ["function", "calls", "cum ms", "own ms"],
                [
                    [
                        r["function"],
                        r["ncalls"],
                        f"{r['cum_ms_per_feed']:.2f}",
                        f"{r['own_ms_per_feed']:.2f}",
                    ]
                    for r in profile["top"]["cumulative"]
                ],
            )
        )
        print("\ntop 15 by own time (ms per feed call):\n")
        print(
            markdown_table(
                ["function", "calls", "own ms", "cum ms"],
                [
                    [
                        r["function"],
                        r["ncalls"],
                        f"{r['own_ms_per_feed']:.2f}",
                        f"{r['cum_ms_per_feed']:.2f}",
                    ]
                    for r in profile["top"]["own"]
                ],
            )
        )
    spy = section.get("py_spy")
    if spy:
        print(
            f"\n### py-spy on the server under the same feed load ({spy['seconds']} s, "
            f"{spy['samples']:,} samples of non-idle threads)\n"
        )
        print(
            markdown_table(
                ["function (inclusive)", "% samples"],
                [[f, f"{p:.1f}"] for f, p in spy["inclusive_pct"]],
            )
        )
        print()
        print(
            markdown_table(
                ["function (own)", "% samples"], [[f, f"{p:.1f}"] for f, p in spy["own_pct"]]
            )
        )


def parse_args(argv: Sequence[str] | None = None) -> FeedBenchConfig:
    defaults = FeedBenchConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=defaults.data_dir)
    parser.add_argument("--articles", type=int, default=defaults.articles)
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--warmup", type=float, default=defaults.warmup_s)
    parser.add_argument("--duration", type=float, default=defaults.duration_s)
    parser.add_argument("--event-duration", type=float, default=defaults.event_duration_s)
    parser.add_argument(
        "--sweep-clients",
        type=int,
        nargs="*",
        default=list(defaults.sweep_clients),
        help="extra short feed windows at these client counts (none: skip)",
    )
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=defaults.paced_rate,
        help="total req/s of the open-loop feed window (0: skip it)",
    )
    parser.add_argument("--profile-calls", type=int, default=defaults.profile_calls)
    parser.add_argument(
        "--py-spy", type=float, default=defaults.py_spy_s, help="seconds of py-spy sampling"
    )
    parser.add_argument("--ranker-wait", type=float, default=defaults.ranker_wait_s)
    parser.add_argument("--keep", action="store_true", help="keep the data dir afterwards")
    parser.add_argument(
        "--lag-ingests",
        type=int,
        default=defaults.lag_ingests,
        help="articles ingested through one shared instance and polled on another (0: skip)",
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        default=None,
        help="start from a copy of a kept run's data dir (var/bench-feed/run-*/data): no "
        "article store or in-process ingest, so minutes faster when profiling",
    )
    parser.add_argument(
        "--servers",
        nargs="+",
        default=list(defaults.servers),
        help="servers to measure side by side, each mode:processes (embedded:1, shared:2 ...)",
    )
    parser.add_argument(
        "--client",
        choices=("lean", "httpx"),
        default=defaults.client,
        help="the load generator's HTTP client (httpx costs ~5x the CPU per request, taken "
        "from the cores the server runs on)",
    )
    args = parser.parse_args(argv)
    return FeedBenchConfig(
        data_dir=args.data_dir,
        articles=args.articles,
        users=args.users,
        clients=args.clients,
        warmup_s=args.warmup,
        duration_s=args.duration,
        event_duration_s=args.event_duration,
        sweep_clients=tuple(args.sweep_clients),
        paced_rate=args.paced_rate,
        profile_calls=args.profile_calls,
        py_spy_s=args.py_spy,
        ranker_wait_s=args.ranker_wait,
        keep=args.keep,
        lag_ingests=args.lag_ingests,
        reuse=args.reuse,
        servers=tuple(args.servers),
        client=args.client,
    )


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM (e.g. run_all's timeout) into SystemExit so `finally` stops the server.
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    setup_logging()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    main(parse_args())
