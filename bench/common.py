"""Helpers shared by the benchmark scripts: AG News drafts, their MiniLM embeddings (encoded once
and cached under `var/bench-cache/`), synthetic vector sets, the exact top-k oracle, latency
summaries, markdown tables and JSON results under `bench/results/`.

Importing this module is cheap: torch and the embedder load only on a cache miss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.datasets import read_articles
from core.domain import ArticleDraft
from core.settings import Settings
from retrieval.embedder import article_text, model_name

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
CACHE_DIR = REPO_ROOT / "var" / "bench-cache"  # `var/` is git-ignored


def default_data_dir() -> Path:
    """`../shared/data` beside the repository, as in the Makefile's `DATA`."""
    return REPO_ROOT.parent / "shared" / "data"


def bench_settings(data_dir: Path) -> Settings:
    """Settings for a throw-away data dir. The database URL is pinned to that dir so an exported
    NEWSROOM_DATABASE_URL can never point a benchmark at real data; `.env` is not read."""
    return Settings(_env_file=None, data_dir=data_dir, database_url=None)  # type: ignore[call-arg]


def mind_demo_newsroom(data_dir: Path, readers: int = 60, clicks: int = 8):  # type: ignore[no-untyped-def]
    """A throw-away newsroom for the feed benchmarks: 1,000 MIND demo articles and `readers`
    readers with `clicks` clicks each in one category. Returns (service, reader ids, the
    categories); the caller closes the service."""
    from itertools import islice

    from core.domain import EventDraft
    from core.service import NewsroomService

    service = NewsroomService.from_settings(
        bench_settings(data_dir), generation=False, encoder_threads=0
    )
    drafts = list(islice(read_articles(default_data_dir() / "mind_demo_news", "mind"), 1000))
    service.articles.ingest(drafts)
    categories = sorted({d.category for d in drafts if d.category})
    by_category = {c: [d.id for d in drafts if d.category == c] for c in categories}
    ids = [f"reader-{n}" for n in range(readers)]
    events = [
        EventDraft(reader, by_category[categories[n % len(categories)]][i], "click")
        for n, reader in enumerate(ids)
        for i in range(min(clicks, len(by_category[categories[n % len(categories)]])))
    ]
    service.readers.record_events(events)
    return service, ids, categories


def side_by_side(
    title: str, baseline: tuple[str, dict[str, float]], other: tuple[str, dict[str, float]]
) -> tuple[str, float]:
    """Two latency summaries (`latency_ms`) as a markdown table with their p50 ratio."""
    (base_label, base), (other_label, measured) = baseline, other
    ratio = measured["p50"] / base["p50"]
    rows = [
        [base_label, f"{base['p50']:.2f}", f"{base['p99']:.2f}", "-"],
        [other_label, f"{measured['p50']:.2f}", f"{measured['p99']:.2f}", f"{ratio:.2f}x"],
    ]
    return markdown_table([title, "p50 ms", "p99 ms", "p50 ratio"], rows), ratio


def load_agnews(data_dir: Path, limit: int | None = None) -> list[ArticleDraft]:
    drafts = list(read_articles(data_dir / "ag_news_test", "agnews"))
    return drafts[:limit] if limit is not None else drafts


def distinct_titles(drafts: Sequence[ArticleDraft]) -> list[str]:
    """AG News titles without repeats: each is a real, fresh (never cached) search query."""
    return list(dict.fromkeys(d.title for d in drafts))


def agnews_embeddings(drafts: Sequence[ArticleDraft]) -> np.ndarray:
    """(n, d) float32 L2-normalised MiniLM embeddings of `drafts`, exactly as ingest builds the
    text (`article_text` with the configured lead). Cached on disk by model and text digest."""
    rc = Settings(_env_file=None).retrieval  # type: ignore[call-arg]
    path = Path(rc.model_path())
    texts = [article_text(d.title, d.body, rc.lead_words) for d in drafts]
    digest = hashlib.sha256()
    digest.update(str(path).encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\x00")
    cache = CACHE_DIR / f"agnews-{model_name(path)}-{len(texts)}-{digest.hexdigest()[:16]}.npy"
    if cache.exists():
        return np.load(cache)
    from retrieval.embedder import Embedder  # heavy: only on a cache miss

    log.info("encoding %d AG News articles once (cached at %s)", len(texts), cache)
    embedder = Embedder(path, rc.batch_size, rc.lead_words, 0)
    started = time.perf_counter()
    vectors = embedder.encode(texts)
    log.info("encoded in %.1fs", time.perf_counter() - started)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, cache)
    return vectors


def normalise(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def perturbed(base: np.ndarray, rows: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """(len(rows), d): base[rows] plus N(0, sigma^2) noise per coordinate, re-normalised."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, sigma, size=(len(rows), base.shape[1])).astype(np.float32)
    return normalise(base[rows] + noise)


def synthetic_set(base: np.ndarray, n: int, sigma: float, seed: int) -> np.ndarray:
    """(n, d) vectors cycling through the real embeddings: row i is a perturbed base[i % len]."""
    return perturbed(base, np.arange(n) % len(base), sigma, seed)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 128) -> np.ndarray:
    """(q, k) row indices of the exact inner-product top-k: the numpy brute-force oracle."""
    found = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk] @ vectors.T  # (c, n)
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
        found[start : start + chunk] = np.take_along_axis(part, order, axis=1)
    return found


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the exact top-k found (k = truth.shape[1]); -1 slots never match."""
    k = truth.shape[1]
    hits = [len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / k


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p90, p99, mean and max in milliseconds, plus the sample count."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    if len(ms) == 0:
        return {"n": 0}
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "n": len(ms),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(ms.mean()),
        "max": float(ms.max()),
    }


@dataclass(frozen=True, slots=True)
class TimedCompletion:
    text: str
    tokens: int
    first_token_s: float | None  # None: nothing was generated
    total_s: float

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Tokens after the first per second after it (the first token pays the prompt)."""
        if self.first_token_s is None or self.tokens < 2:
            return None
        return (self.tokens - 1) / max(1e-6, self.total_s - self.first_token_s)


def timed_stream(backend: Any, ids: list[int], options: Any) -> TimedCompletion:
    """One streamed completion of `backend` (an `LMBackend`) with its time to first token."""
    started = time.perf_counter()
    first = None
    pieces = []
    for piece in backend.stream(ids, options):
        if first is None:
            first = time.perf_counter() - started
        pieces.append(piece)
    total = time.perf_counter() - started
    text = "".join(pieces)
    tokens = len(backend.tokenizer(text, add_special_tokens=False)["input_ids"])
    return TimedCompletion(text, tokens, first, total)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value)

    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def environment() -> dict[str, Any]:
    """What the numbers depend on; the load average shows whether the box was busy."""
    return {
        "cpus": os.cpu_count(),
        "load_avg_1_5_15": list(os.getloadavg()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "git": _git_commit(),
    }


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write `bench/results/<name>.json` (git-ignored) with the environment beside the figures."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    record = {
        "benchmark": name,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": environment(),
        **payload,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the benchmarks never bind anything else)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_memory_kib(pid: int, with_children: bool = False) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of `pid` in KiB, from /proc; with its
    child processes (e.g. feed replicas) added when `with_children` (peaks are then summed
    per process, an upper bound of the joint peak)."""
    found = {"VmRSS": 0, "VmHWM": 0, "Pss": 0}
    for member in [pid, *(child_pids(pid) if with_children else [])]:
        try:
            with open(f"/proc/{member}/status", encoding="ascii") as status:
                for line in status:
                    key, _, value = line.partition(":")
                    if key in found:
                        found[key] += int(value.split()[0])
            # PSS shares each page among the processes mapping it: summed, it is the memory
            # these processes really take (RSS counts shared libraries once per process).
            with open(f"/proc/{member}/smaps_rollup", encoding="ascii") as rollup:
                for line in rollup:
                    if line.startswith("Pss:"):
                        found["Pss"] += int(line.split()[1])
        except FileNotFoundError:  # a child that just exited
            continue
    return found


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc/PID/task/*/children."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return children


def _busy_jiffies() -> float:
    """Busy CPU time of the whole box so far, in seconds (all CPUs, from /proc/stat)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    t = os.times()  # this process, plus children it has waited for (the server in figure 3)
    return t.user + t.system + t.children_user + t.children_system


def box_busy_share(sample_s: float = 2.0) -> float:
    """Share of all CPUs busy right now, sampled over `sample_s` (0 = idle, 1 = saturated)."""
    before = _busy_jiffies()
    time.sleep(sample_s)
    return (_busy_jiffies() - before) / (sample_s * (os.cpu_count() or 1))


@dataclass(slots=True)
class CpuContention:
    """How much CPU *other* processes took while a benchmark ran: on a shared box this says
    whether the figures are trustworthy (torch's and FAISS's OpenMP teams suffer most)."""

    busy_at_start: float
    own_at_start: float
    wall_at_start: float

    @classmethod
    def start(cls) -> CpuContention:
        return cls(_busy_jiffies(), _own_cpu(), time.perf_counter())

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall_at_start
        others = (_busy_jiffies() - self.busy_at_start) - (_own_cpu() - self.own_at_start)
        share = max(others, 0.0) / (wall * (os.cpu_count() or 1))
        if share > 0.1:
            log.warning(
                "other processes used %.0f%% of the CPU during this benchmark: the figures are "
                "pessimistic; rerun on an idle machine",
                100 * share,
            )
        return {"wall_s": wall, "others_cpu_s": max(others, 0.0), "others_share": share}


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("httpx", "sentence_transformers", "transformers", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def link_shared_models(data_dir: Path) -> None:
    """Point a throw-away data dir's `models/` at the repo's `var/models`, so a benchmark server
    reuses the converted LM and its int8 copies instead of converting again."""
    shared = REPO_ROOT / "var" / "models"
    shared.mkdir(parents=True, exist_ok=True)
    (data_dir / "models").symlink_to(shared, target_is_directory=True)
