"""Figure 1: ingest throughput vs the raw encoder.

Measures articles/s of `ArticleService.ingest_stream` (validation, hashing, encode, SQLite write,
FAISS add) into a fresh temp data dir, against plain
`embedder.engine.encode(texts, batch_size=64)` (the encoder itself) on the very same texts
(`article_text(title, body, lead_words)`), on 1,500 AG News articles. The two sides alternate
(ABA/BAB) for `--runs` rounds; the table gives every run, the medians and the ratio ingest/raw.
Target: ingest >= 0.9x raw. The share of ingest time spent inside `Embedder.encode` is reported
too, so a miss says whether the encoder or the bookkeeping around it costs the time.

Run: `.venv/bin/python -m bench.ingest_throughput [--articles 1500] [--runs 3]`
Writes `bench/results/ingest_throughput.json`. Takes about 3-5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

from bench.common import (
    CpuContention,
    bench_settings,
    default_data_dir,
    load_agnews,
    markdown_table,
    setup_logging,
    verdict,
    write_results,
)
from core.domain import ArticleDraft
from retrieval.embedder import article_text

log = logging.getLogger(__name__)

TARGET_RATIO = 0.9


@dataclass(slots=True)
class IngestBenchConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    articles: int = 1500
    runs: int = 3


def _timed_encode(embedder: Any, spent: list[float]) -> None:
    """Wrap this embedder instance's `encode` so the time spent inside it is accumulated."""
    original: Callable[..., np.ndarray] = embedder.encode

    def encode(texts: Sequence[str], progress: bool = False) -> np.ndarray:
        started = time.perf_counter()
        try:
            return original(texts, progress)
        finally:
            spent.append(time.perf_counter() - started)

    embedder.encode = encode


def main(config: IngestBenchConfig) -> dict[str, Any]:
    from core.articles import ArticleService
    from core.service import NewsroomService  # heavy: the embedder

    contention = CpuContention.start()
    chunk = int(inspect.signature(ArticleService.ingest_stream).parameters["batch_size"].default)
    padded: dict[str, int] = {}
    drafts = load_agnews(config.data_dir, config.articles)
    n = len(drafts)
    ingest_s: list[float] = []
    encode_in_ingest_s: list[float] = []
    raw_s: list[float] = []
    min_cosine = float("nan")
    with tempfile.TemporaryDirectory(prefix="newsroom-bench-ingest-") as tmp:
        for run in range(config.runs):
            service = NewsroomService.from_settings(bench_settings(Path(tmp) / f"run{run}"))
            rc_batch = service.articles.embedder.batch_size
            texts = [
                article_text(d.title, d.body, service.articles.embedder.lead_words) for d in drafts
            ]
            model = service.articles.embedder.engine
            if run == 0:  # the first call pays lazy initialisation: keep it out of both
                model.encode(texts[:64], rc_batch)
                padded["raw"] = _padded_tokens(model, texts, len(texts), rc_batch)
                padded["ingest"] = _padded_tokens(model, texts, chunk, rc_batch)
            order = ("ingest", "raw") if run % 2 == 0 else ("raw", "ingest")
            raw_vectors: np.ndarray | None = None
            for side in order:
                gc.collect()
                if side == "raw":
                    started = time.perf_counter()
                    raw_vectors = model.encode(texts, rc_batch)
                    elapsed = time.perf_counter() - started
                    raw_s.append(elapsed)
                else:
                    spent: list[float] = []
                    _timed_encode(service.articles.embedder, spent)
                    embedded = 0
                    started = time.perf_counter()
                    for report in service.articles.ingest_stream(drafts):
                        embedded += report.embedded
                    elapsed = time.perf_counter() - started
                    ingest_s.append(elapsed)
                    encode_in_ingest_s.append(sum(spent))
                    if embedded != n:
                        raise RuntimeError(f"ingest embedded {embedded} of {n} articles")
                log.info("run %d %s: %.1f art/s", run + 1, side, n / elapsed)
            if run == 0 and raw_vectors is not None:
                min_cosine = _same_vectors(service, drafts, raw_vectors)
            service.close()
            del service, model
    ingest_rate = [n / s for s in ingest_s]
    raw_rate = [n / s for s in raw_s]
    ratio = median(ingest_rate) / median(raw_rate)
    overhead = [i - e for i, e in zip(ingest_s, encode_in_ingest_s, strict=True)]
    result = {
        "config": {**asdict(config), "data_dir": str(config.data_dir), "articles": n},
        "ingest_seconds": ingest_s,
        "ingest_encode_seconds": encode_in_ingest_s,
        "raw_seconds": raw_s,
        "ingest_articles_per_s": ingest_rate,
        "raw_articles_per_s": raw_rate,
        "median_ingest_articles_per_s": median(ingest_rate),
        "median_raw_articles_per_s": median(raw_rate),
        "ratio_ingest_over_raw": ratio,
        "median_non_encode_overhead_s": median(overhead),
        "min_cosine_stored_vs_raw": min_cosine,
        "ingest_stream_chunk": chunk,
        "padded_tokens_raw": padded["raw"],
        "padded_tokens_ingest": padded["ingest"],
        "target_ratio": TARGET_RATIO,
        "target_met": ratio >= TARGET_RATIO,
    }
    result["cpu_contention"] = contention.stop()
    _print(result, n)
    path = write_results("ingest_throughput", result)
    print(f"\nresults: {path}")
    return result


def _padded_tokens(model: Any, texts: Sequence[str], call_size: int, batch_size: int) -> int:
    """Word pieces the encoder runs over, padding included, when `texts` reach `model.encode`
    in calls of `call_size`: encode sorts by length only inside one call, so smaller calls pad
    more (the raw side is one call; ingest_stream makes one per chunk)."""
    lengths = np.array(model.token_lengths(list(texts)))
    total = 0
    for start in range(0, len(lengths), call_size):
        call = np.sort(lengths[start : start + call_size])[::-1]
        for first in range(0, len(call), batch_size):
            batch = call[first : first + batch_size]
            total += int(batch.max()) * len(batch)
    return total


def _same_vectors(service: Any, drafts: Sequence[ArticleDraft], raw: np.ndarray) -> float:
    """Lowest cosine between a stored embedding and the raw one of the same article: shows that
    both sides encoded the very same texts (batching changes padding, so not bit-identical)."""
    id_of = {s.key: s.id for s in service.storage.stored_states()}
    row_of = {d.id: i for i, d in enumerate(drafts)}
    lowest = 1.0
    for keys, vectors in service.storage.embeddings():
        rows = [row_of[id_of[k]] for k in keys.tolist()]
        lowest = min(lowest, float((vectors * raw[rows]).sum(axis=1).min()))
    return lowest


def _print(result: dict[str, Any], n: int) -> None:
    runs = len(result["ingest_seconds"])
    headers = ["side", *[f"run {i + 1} (art/s)" for i in range(runs)], "median art/s"]
    rows = [
        ["ingest_stream", *result["ingest_articles_per_s"], result["median_ingest_articles_per_s"]],
        ["raw model.encode", *result["raw_articles_per_s"], result["median_raw_articles_per_s"]],
    ]
    print(f"\n### Ingest throughput: {n:,} AG News articles, {runs} alternating runs per side\n")
    print(markdown_table(headers, rows))
    chunk = result["ingest_stream_chunk"]
    raw_tokens, ingest_tokens = result["padded_tokens_raw"], result["padded_tokens_ingest"]
    contention = result["cpu_contention"]["others_share"]
    encode_share = median(
        e / i
        for e, i in zip(result["ingest_encode_seconds"], result["ingest_seconds"], strict=True)
    )
    print()
    print(
        markdown_table(
            ["figure", "value"],
            [
                ["ratio ingest / raw (medians)", f"{result['ratio_ingest_over_raw']:.3f}x"],
                [
                    f"target >= {TARGET_RATIO}x",
                    verdict(result["target_met"]),
                ],
                ["share of ingest time inside Embedder.encode", f"{encode_share:.1%}"],
                ["median non-encode ingest time (s)", result["median_non_encode_overhead_s"]],
                ["lowest cosine stored vs raw vector", f"{result['min_cosine_stored_vs_raw']:.6f}"],
                [
                    f"word pieces encoded incl. padding: raw (1 call) / ingest ({chunk}-chunks)",
                    f"{raw_tokens:,} / {ingest_tokens:,} (+{ingest_tokens / raw_tokens - 1:.0%})",
                ],
                ["CPU share taken by other processes", f"{contention:.0%}"],
            ],
        )
    )


def parse_args(argv: Sequence[str] | None = None) -> IngestBenchConfig:
    defaults = IngestBenchConfig()
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0].replace("\n", " ")
    )
    parser.add_argument("--data-dir", type=Path, default=defaults.data_dir)
    parser.add_argument("--articles", type=int, default=defaults.articles)
    parser.add_argument("--runs", type=int, default=defaults.runs)
    args = parser.parse_args(argv)
    return IngestBenchConfig(data_dir=args.data_dir, articles=args.articles, runs=args.runs)


if __name__ == "__main__":
    setup_logging()
    main(parse_args())
