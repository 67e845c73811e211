"""Figure 3: `/v1/search` over HTTP against a real `newsroom serve` process.

For 10k and then 100k articles a fresh data dir is filled through the real storage
(`Storage.write_articles`, vectors = perturbed AG News MiniLM embeddings as in figure 2, titles
derived from the AG News titles), so nothing is re-encoded. `newsroom serve` then starts as a
subprocess on a free 127.0.0.1 port and rebuilds its index from the database (HNSW above the
threshold); once /healthz answers, distinct real AG News titles are sent as
`/v1/search?q=...&k=10` - never repeated, so every request pays the query embedding - first
sequentially from one httpx client, then from 4 concurrent asyncio clients. Reported: p50/p99
latency, requests/s, errors, time to ready, and the server's VmRSS/VmHWM from /proc after load.
The server is stopped with SIGINT (then SIGTERM, then SIGKILL, each wait bounded).
Target: sequential p99 <= 60 ms at 100k, query embedding included. Client and server share the
same cores, so the client's own cost is inside these latencies.

Run: `.venv/bin/python -m bench.http_search [--sequential 500] [--concurrent 600]`
Writes `bench/results/http_search.json`. About 2-4 minutes on 2 cores (warm embedding cache).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import numpy as np

from bench.common import (
    CpuContention,
    agnews_embeddings,
    bench_settings,
    default_data_dir,
    distinct_titles,
    free_port,
    latency_ms,
    load_agnews,
    markdown_table,
    process_memory_kib,
    setup_logging,
    synthetic_set,
    verdict,
    write_results,
)
from core.domain import ArticleDraft
from core.storage import ArticleWrite, Storage
from retrieval.embedder import model_name

log = logging.getLogger(__name__)

TARGET_P99_MS = 60.0
WRITE_BATCH = 5000


@dataclass(slots=True)
class HttpBenchConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    sizes: tuple[int, ...] = (10_000, 100_000)
    sigma: float = 0.02
    k: int = 10
    warmup: int = 20
    sequential: int = 500
    concurrent: int = 600
    clients: int = 4
    startup_timeout_s: float = 300.0
    request_timeout_s: float = 10.0
    shutdown_timeout_s: float = 30.0
    seed: int = 0


# --- data ---------------------------------------------------------------------------------------
def populate(
    settings_dir: Path,
    drafts: Sequence[ArticleDraft],
    vectors: np.ndarray,
    model: str,
    id_prefix: str = "bench",
    published: np.ndarray | None = None,
) -> float:
    """Store len(vectors) articles through `Storage.write_articles` (nothing is re-encoded);
    returns the seconds taken. Article i, id `<id_prefix>-<i>`, carries AG News article
    i % len(drafts) (copies get a numbered title) and, if given, publication time
    `published[i]` (epoch seconds)."""
    settings = bench_settings(settings_dir)
    settings_dir.mkdir(parents=True, exist_ok=True)
    storage = Storage(settings.resolved_database_url)
    started = time.perf_counter()
    try:
        for start in range(0, len(vectors), WRITE_BATCH):
            writes = []
            for i in range(start, min(start + WRITE_BATCH, len(vectors))):
                source = drafts[i % len(drafts)]
                copy = i // len(drafts)
                draft = ArticleDraft(
                    id=f"{id_prefix}-{i}",
                    title=source.title if copy == 0 else f"{source.title} (#{copy})",
                    body=source.body,
                    category=(source.category or "").lower() or None,
                    language="en",
                    published_at=None
                    if published is None
                    else datetime.fromtimestamp(float(published[i]), UTC),
                )
                writes.append(
                    ArticleWrite(
                        draft=draft,
                        article_id=draft.id or "",
                        content_hash=draft.content_hash(),
                        vector=vectors[i],
                    )
                )
            storage.write_articles(writes, model)
    finally:
        storage.close()
    return time.perf_counter() - started


# --- server -------------------------------------------------------------------------------------
def newsroom_executable() -> str:
    beside = Path(sys.executable).parent / "newsroom"
    if beside.exists():
        return str(beside)
    found = shutil.which("newsroom")
    if found is None:
        raise FileNotFoundError("no `newsroom` executable: run `make install` first")
    return found


class Server:
    """`newsroom serve` on 127.0.0.1 as a subprocess, with bounded start and stop."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        extra_env: dict[str, str] | None = None,
        workers: int = 1,
    ) -> None:
        self.workers = workers
        mode = "shared" if "NEWSROOM_REDIS_URL" in (extra_env or {}) else "embedded"
        self.label = f"{mode}, {workers} process{'es' if workers > 1 else ''}"
        self.data_dir = data_dir
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float, workers: int = 1) -> tuple[float, dict[str, Any]]:
        """Start and wait for /healthz (from `workers` distinct processes); returns (seconds to
        ready, health body)."""
        # Only our data dir reaches the server: no inherited NEWSROOM_* and no .env (cwd = tmp).
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSROOM_")}
        env["NEWSROOM_DATA_DIR"] = str(self.data_dir)
        env.update(self.extra_env)
        command = [newsroom_executable(), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if workers > 1:
            command += ["--workers", str(workers)]
        answered: set[int] = set()
        started = time.perf_counter()
        with open(self.log_path, "wb") as server_log:
            self.process = subprocess.Popen(
                command,
                env=env,
                cwd=self.data_dir,
                stdout=server_log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = started + timeout_s
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode} before it was ready:\n"
                    + self.log_tail()
                )
            try:
                # A fresh connection each time: every worker process must have answered.
                response = httpx.get(f"{self.base_url}/healthz", timeout=2.0)
                if response.status_code == 200:
                    body = response.json()
                    answered.add(body.get("live", {}).get("pid", 0))
                    if len(answered) >= workers:
                        return time.perf_counter() - started, body
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"server not ready after {timeout_s:.0f}s:\n" + self.log_tail())

    def memory_kib(self) -> dict[str, int]:
        assert self.process is not None
        return process_memory_kib(self.process.pid, with_children=True)

    def stop(self, timeout_s: float) -> tuple[str, float]:
        """SIGINT (uvicorn's graceful shutdown), then SIGTERM, then SIGKILL; returns how it
        ended and the seconds it took."""
        if self.process is None or self.process.poll() is not None:
            return "not running", 0.0
        started = time.perf_counter()
        for sig, wait_s in (
            (signal.SIGINT, timeout_s),
            (signal.SIGTERM, 10.0),
            (signal.SIGKILL, 10.0),
        ):
            self.process.send_signal(sig)
            try:
                code = self.process.wait(wait_s)
                return f"{signal.Signals(sig).name} -> exit {code}", time.perf_counter() - started
            except subprocess.TimeoutExpired:
                log.warning("server ignored %s for %.0fs", signal.Signals(sig).name, wait_s)
        return "did not exit", time.perf_counter() - started

    def log_lines(self, *needles: str) -> list[str]:
        """Server log lines containing any of `needles` (index rebuild and compaction notes)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if any(n in line for n in needles)]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


# --- load ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class LoadResult:
    requests: int
    errors: int
    wall_s: float
    latencies_s: list[float]
    short_results: int  # 200 answers with fewer than k results

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "short_results": self.short_results,
            "wall_s": self.wall_s,
            "requests_per_s": self.requests / self.wall_s if self.wall_s else 0.0,
            "latency_ms": latency_ms(self.latencies_s),
        }


def sequential_load(base_url: str, queries: Sequence[str], k: int, timeout_s: float) -> LoadResult:
    latencies: list[float] = []
    errors = short = 0
    with httpx.Client(base_url=base_url, timeout=timeout_s) as client:
        wall = time.perf_counter()
        for query in queries:
            started = time.perf_counter()
            try:
                response = client.get("/v1/search", params={"q": query, "k": k})
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors += 1
                elif len(response.json()["results"]) < k:
                    short += 1
            except httpx.HTTPError:
                errors += 1
        wall = time.perf_counter() - wall
    return LoadResult(len(queries), errors, wall, latencies, short)


async def _concurrent_load(
    base_url: str, queries: Sequence[str], k: int, clients: int, timeout_s: float
) -> LoadResult:
    pending: asyncio.Queue[str] = asyncio.Queue()
    for query in queries:
        pending.put_nowait(query)
    latencies: list[float] = []
    counts = {"errors": 0, "short": 0}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            try:
                query = pending.get_nowait()
            except asyncio.QueueEmpty:
                return
            started = time.perf_counter()
            try:
                response = await client.get("/v1/search", params={"q": query, "k": k})
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    counts["errors"] += 1
                elif len(response.json()["results"]) < k:
                    counts["short"] += 1
            except httpx.HTTPError:
                counts["errors"] += 1

    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits) as client:
        wall = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        wall = time.perf_counter() - wall
    return LoadResult(len(queries), counts["errors"], wall, latencies, counts["short"])


def concurrent_load(
    base_url: str, queries: Sequence[str], k: int, clients: int, timeout_s: float
) -> LoadResult:
    return asyncio.run(_concurrent_load(base_url, queries, k, clients, timeout_s))


# --- figure -------------------------------------------------------------------------------------
def bench_size(
    config: HttpBenchConfig,
    size: int,
    work_dir: Path,
    drafts: Sequence[ArticleDraft],
    vectors: np.ndarray,
    queries: Sequence[str],
    model: str,
) -> dict[str, Any]:
    data_dir = work_dir / f"n{size}"
    populate_s = populate(data_dir, drafts, vectors[:size], model)
    log.info("stored %d articles in %.1fs", size, populate_s)
    server = Server(data_dir, work_dir / f"server-{size}.log")
    try:
        ready_s, health = server.start(config.startup_timeout_s)
        log.info("server ready in %.1fs: %s", ready_s, health)
        idle = server.memory_kib()
        warm = config.warmup
        sequential_load(server.base_url, queries[:warm], config.k, config.request_timeout_s)
        seq_queries = queries[warm : warm + config.sequential]
        con_queries = queries[warm + config.sequential :]
        sequential = sequential_load(
            server.base_url, seq_queries, config.k, config.request_timeout_s
        )
        concurrent = concurrent_load(
            server.base_url, con_queries, config.k, config.clients, config.request_timeout_s
        )
        loaded = server.memory_kib()
    finally:
        stopped, stop_s = server.stop(config.shutdown_timeout_s)
    return {
        "articles": size,
        "populate_s": populate_s,
        "ready_s": ready_s,
        "health": health,
        "rss_idle_kib": idle.get("VmRSS"),
        "rss_after_load_kib": loaded.get("VmRSS"),
        "rss_peak_kib": loaded.get("VmHWM"),
        "sequential": sequential.summary(),
        "concurrent": {"clients": config.clients, **concurrent.summary()},
        "shutdown": stopped,
        "shutdown_s": stop_s,
        "server_index_log": server.log_lines("index ready", "compacting index", "rebuilding"),
    }


def main(config: HttpBenchConfig) -> dict[str, Any]:
    from core.settings import Settings

    contention = CpuContention.start()
    drafts = load_agnews(config.data_dir)
    base = agnews_embeddings(drafts)
    largest = max(config.sizes)
    vectors = synthetic_set(base, largest, config.sigma, config.seed + 1)
    model = model_name(Path(Settings(_env_file=None).retrieval.model_path()))  # type: ignore[call-arg]
    titles = distinct_titles(drafts)
    per_size = config.warmup + config.sequential + config.concurrent
    if per_size * len(config.sizes) > len(titles):
        raise ValueError(
            f"{per_size * len(config.sizes)} distinct queries needed, {len(titles)} titles "
            "available: lower --sequential/--concurrent"
        )
    runs = []
    with tempfile.TemporaryDirectory(prefix="newsroom-bench-http-") as tmp:
        for number, size in enumerate(sorted(config.sizes)):
            queries = titles[number * per_size : (number + 1) * per_size]
            runs.append(bench_size(config, size, Path(tmp), drafts, vectors, queries, model))
    p99 = next(r for r in runs if r["articles"] == largest)["sequential"]["latency_ms"]["p99"]
    result = {
        "config": {**asdict(config), "data_dir": str(config.data_dir)},
        "runs": runs,
        "target_p99_ms": TARGET_P99_MS,
        "sequential_p99_ms_at_largest": p99,
        "target_met": p99 <= TARGET_P99_MS,
    }
    result["cpu_contention"] = contention.stop()
    _print(result, config)
    path = write_results("http_search", result)
    print(f"\nresults: {path}")
    return result


def _print(result: dict[str, Any], config: HttpBenchConfig) -> None:
    print(f"\n### HTTP `/v1/search?k={config.k}` (fresh query strings, embedding included)\n")
    rows = []
    for run in result["runs"]:
        for mode, label in (("sequential", "sequential, 1 client"), ("concurrent", None)):
            figures = run[mode]
            lat = figures["latency_ms"]
            rows.append(
                [
                    f"{run['articles']:,}",
                    run["health"]["index_kind"],
                    label or f"concurrent, {figures['clients']} clients",
                    figures["requests"],
                    figures["errors"],
                    f"{lat['p50']:.1f}",
                    f"{lat['p99']:.1f}",
                    f"{figures['requests_per_s']:.1f}",
                ]
            )
    print(
        markdown_table(
            ["articles", "index", "mode", "requests", "errors", "p50 ms", "p99 ms", "req/s"], rows
        )
    )
    print(
        f"\ntarget: sequential p99 <= {TARGET_P99_MS:.0f} ms at {max(config.sizes):,}: "
        f"{result['sequential_p99_ms_at_largest']:.1f} ms, {verdict(result['target_met'])}"
    )
    print(
        "CPU share taken by other processes during the run: "
        f"{result['cpu_contention']['others_share']:.0%}"
    )
    print("\n### Server process\n")
    mib = 1024.0
    print(
        markdown_table(
            [
                "articles",
                "store s",
                "ready s",
                "RSS idle MiB",
                "RSS after load MiB",
                "peak RSS MiB",
                "shutdown",
            ],
            [
                [
                    f"{run['articles']:,}",
                    f"{run['populate_s']:.1f}",
                    f"{run['ready_s']:.1f}",
                    f"{run['rss_idle_kib'] / mib:.0f}",
                    f"{run['rss_after_load_kib'] / mib:.0f}",
                    f"{run['rss_peak_kib'] / mib:.0f}",
                    f"{run['shutdown']} ({run['shutdown_s']:.1f}s)",
                ]
                for run in result["runs"]
            ],
        )
    )
    for run in result["runs"]:
        print(f"\nserver index log at {run['articles']:,} articles:")
        for line in run["server_index_log"]:
            print(f"    {line.split(' ', 2)[-1]}")  # without the date and time


def parse_args(argv: Sequence[str] | None = None) -> HttpBenchConfig:
    defaults = HttpBenchConfig()
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0].replace("\n", " ")
    )
    parser.add_argument("--data-dir", type=Path, default=defaults.data_dir)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(defaults.sizes))
    parser.add_argument("--sequential", type=int, default=defaults.sequential)
    parser.add_argument("--concurrent", type=int, default=defaults.concurrent)
    parser.add_argument("--clients", type=int, default=defaults.clients)
    args = parser.parse_args(argv)
    return HttpBenchConfig(
        data_dir=args.data_dir,
        sizes=tuple(args.sizes),
        sequential=args.sequential,
        concurrent=args.concurrent,
        clients=args.clients,
    )


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM (e.g. run_all's timeout) into SystemExit so `finally` stops the server.
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    setup_logging()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    main(parse_args())
