"""The encoder before and after: the first wave's ingest (float32, batches of 64, one thread)
against CTranslate2 float32 and int8 in batches of 8, on the same packaged MiniLM and texts.

- **Ingest throughput**: articles/s of the whole `ingest_stream` (normalising, hashing, encoding,
  SQLite, FAISS) on BBC articles (the long case: ~256 word pieces each) into a fresh data dir,
  per configuration, alternating order for `--runs` rounds; medians and the ratio to the first
  wave's configuration in one table.
- **Quality**: category agreement@5 on AG News (the share of each article's 5 nearest neighbours
  by cosine that carry its category) per precision, and the mean / minimum cosine between the
  int8 and float32 vectors of the same texts (can both live in one index?).

Run: `.venv/bin/python -m bench.encoder [--articles 300] [--agnews 3000] [--runs 3]`
Writes `bench/results/encoder.json`. About 8 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
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
from core.datasets import read_articles
from core.domain import ArticleDraft
from core.settings import Precision, Settings
from retrieval.embedder import Embedder, article_text

log = logging.getLogger(__name__)

TARGET_SPEEDUP = 2.0  # ingest throughput vs the first wave's
AGREEMENT_TOLERANCE = 0.01


@dataclass(frozen=True, slots=True)
class EncoderSetup:
    name: str
    precision: Precision
    batch_size: int
    threads: int  # 0: every core


BEFORE = EncoderSetup("first wave: float32, batch 64, 1 thread", "float32", 64, 1)
SETUPS = (
    BEFORE,
    EncoderSetup("float32, batch 8, all cores", "float32", 8, 0),
    EncoderSetup("int8, batch 8, all cores (offline default)", "int8", 8, 0),
    EncoderSetup("int8, batch 8, 1 thread (an API request)", "int8", 8, 1),
)


@dataclass(slots=True)
class EncoderBenchConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    articles: int = 300
    agnews: int = 3000
    runs: int = 3


def agreement_at_k(vectors: np.ndarray, labels: list[str], k: int = 5) -> float:
    """Mean share of each row's k nearest other rows (inner product) with the row's label."""
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    nearest = np.argpartition(-scores, k, axis=1)[:, :k]
    label_ids = np.unique(labels, return_inverse=True)[1]
    return float((label_ids[nearest] == label_ids[:, None]).mean())


def _ingest_rate(drafts: list[ArticleDraft], setup: EncoderSetup, scratch: Path) -> float:
    from core.service import NewsroomService  # heavy

    with tempfile.TemporaryDirectory(prefix="bench-encoder-", dir=scratch) as tmp:
        settings = bench_settings(Path(tmp))
        settings.retrieval.precision = setup.precision
        settings.retrieval.batch_size = setup.batch_size
        service = NewsroomService.from_settings(
            settings, generation=False, encoder_threads=setup.threads
        )
        try:
            service.articles.embedder.encode(["warm up"])
            started = time.perf_counter()
            embedded = sum(report.embedded for report in service.articles.ingest_stream(drafts))
            return embedded / (time.perf_counter() - started)
        finally:
            service.close()


def main(config: EncoderBenchConfig) -> dict[str, Any]:
    contention = CpuContention.start()
    rc = Settings(_env_file=None).retrieval  # type: ignore[call-arg]
    bbc = list(read_articles(config.data_dir / "bbc_news_summary", "bbc"))[: config.articles]
    scratch = Path(tempfile.mkdtemp(prefix="bench-encoder-"))
    rates: dict[str, list[float]] = {setup.name: [] for setup in SETUPS}
    for run in range(config.runs):
        for setup in SETUPS if run % 2 == 0 else tuple(reversed(SETUPS)):
            rates[setup.name].append(_ingest_rate(bbc, setup, scratch))
            log.info("run %d %s: %.1f articles/s", run + 1, setup.name, rates[setup.name][-1])

    agnews = load_agnews(config.data_dir, config.agnews)
    ag_texts = [article_text(d.title, d.body, rc.lead_words) for d in agnews]
    bbc_texts = [article_text(d.title, d.body, rc.lead_words) for d in bbc]
    labels = [d.category or "" for d in agnews]
    quality: dict[str, dict[str, Any]] = {}
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for precision in ("float32", "int8"):
        embedder = Embedder(rc.model_path(), batch_size=8, threads=0, precision=precision)
        vectors[precision] = (embedder.encode(ag_texts), embedder.encode(bbc_texts))
        quality[precision] = {"agreement_at_5": agreement_at_k(vectors[precision][0], labels)}
    cosine = np.concatenate(
        [(a * b).sum(axis=1) for a, b in zip(vectors["int8"], vectors["float32"], strict=True)]
    )
    quality["int8"] |= {
        "cosine_to_float32_mean": float(cosine.mean()),
        "cosine_to_float32_min": float(cosine.min()),
    }

    before = median(rates[BEFORE.name])
    rows = []
    for setup in SETUPS:
        rate = median(rates[setup.name])
        rows.append(
            [
                setup.name,
                rate,
                rate / before,
                ", ".join(f"{r:.1f}" for r in rates[setup.name]),
                quality[setup.precision]["agreement_at_5"],
            ]
        )
    default = next(s for s in SETUPS if s.precision == "int8" and s.threads == 0)
    speedup = median(rates[default.name]) / before
    agreement_delta = quality["int8"]["agreement_at_5"] - quality["float32"]["agreement_at_5"]
    table = markdown_table(
        ["encoder", "ingest art/s (BBC), median", "x first wave", "runs", "agreement@5 (AG News)"],
        rows,
    )
    payload = {
        "config": {**asdict(config), "data_dir": str(config.data_dir)},
        "setups": [asdict(s) for s in SETUPS],
        "ingest_articles_per_s": rates,
        "quality": quality,
        "int8_ingest_speedup": speedup,
        "int8_agreement_delta": agreement_delta,
        "target_speedup": TARGET_SPEEDUP,
        "target_met": speedup >= TARGET_SPEEDUP and abs(agreement_delta) <= AGREEMENT_TOLERANCE,
        "targets": {
            "ingest_speedup": [TARGET_SPEEDUP, verdict(speedup >= TARGET_SPEEDUP)],
            "agreement_delta": [
                AGREEMENT_TOLERANCE,
                verdict(abs(agreement_delta) <= AGREEMENT_TOLERANCE),
            ],
        },
        "cpu_contention": contention.stop(),
        "table": table,
    }
    path = write_results("encoder", payload)
    print(table)
    print(
        f"\nint8 offline ingest {speedup:.2f}x the first wave (target >= {TARGET_SPEEDUP}x: "
        f"{payload['targets']['ingest_speedup'][1]}); agreement@5 int8 - float32 "
        f"{agreement_delta:+.4f} (within {AGREEMENT_TOLERANCE}: "
        f"{payload['targets']['agreement_delta'][1]}); cosine int8 vs float32 mean "
        f"{quality['int8']['cosine_to_float32_mean']:.4f}, min "
        f"{quality['int8']['cosine_to_float32_min']:.4f}"
    )
    print(f"results: {path}")
    return payload


def parse_args() -> EncoderBenchConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = EncoderBenchConfig()
    parser.add_argument("--data", type=Path, default=defaults.data_dir)
    parser.add_argument("--articles", type=int, default=defaults.articles)
    parser.add_argument("--agnews", type=int, default=defaults.agnews)
    parser.add_argument("--runs", type=int, default=defaults.runs)
    args = parser.parse_args()
    return EncoderBenchConfig(args.data, args.articles, args.agnews, args.runs)


if __name__ == "__main__":
    setup_logging()
    main(parse_args())
