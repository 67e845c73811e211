"""Batched generation: aggregate tokens/s at batch 1/4/8 and what a single request pays.

The served summary model (base + the summary LoRA, merged, CTranslate2 int8, the serving
settings' threads) writes summaries of BBC articles (what pregeneration summarises: long news
bodies, so most prompts fill the prompt budget and share a length; `--source xsum` for held-out
XSum articles of mixed lengths), greedy, 64 new tokens at most.

- **Batches**: the prompts go through `generate_batch` in batches of 1, 4 and 8 (order
  alternates between rounds). Aggregate tokens/s = generated tokens / wall time; a request's
  latency is its batch's wall time (all members finish together): p50 and p99 per request.
- **Concurrent callers**: `--callers` threads each ask for one summary at the same moment
  through `DecodeBatcher` (what API requests and generation-worker jobs do), with batching
  (max_batch 8) and without (max_batch 1): per-request latency including the wait, and the
  aggregate rate.

Run: `.venv/bin/python -m bench.batching [--prompts 16] [--rounds 2] [--callers 8]`
Writes `bench/results/batching.json`. About 6 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from bench.common import (
    REPO_ROOT,
    CpuContention,
    default_data_dir,
    latency_ms,
    markdown_table,
    setup_logging,
    write_results,
)
from core.datasets import read_articles
from core.settings import Settings
from generation.backends import DecodeOptions, LMBackend, load_backend
from generation.batching import DecodeBatcher
from generation.data import load_examples, select_split
from generation.lm import resolve_base_model
from generation.prompting import prompt_ids, task_prompt

BATCH_SIZES = (1, 4, 8)


@dataclass(slots=True)
class BatchingBenchConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    prompts: int = 16
    rounds: int = 2
    callers: int = 8
    max_new_tokens: int = 64
    source: str = "bbc"


def _served_summary_model(settings: Settings) -> LMBackend:
    config = settings.generation
    base = resolve_base_model(config.base_model, settings.data_dir)
    adapter = config.summary_adapter
    if adapter is not None and not (adapter / "adapter_config.json").is_file():
        adapter = None
    return load_backend(
        "ctranslate2",
        base,
        adapter,
        settings.data_dir / "models",
        threads=config.threads_per_worker,
        workers=config.workers,
    )


def _tokens(backend: LMBackend, texts: list[str]) -> int:
    return sum(len(backend.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


def _batched(
    backend: LMBackend, prompts: list[list[int]], size: int, options: DecodeOptions
) -> tuple[float, list[float], int]:
    """(wall s, per-request latency s, generated tokens) for `prompts` in batches of `size`."""
    latencies: list[float] = []
    tokens = 0
    started = time.perf_counter()
    for start in range(0, len(prompts), size):
        batch = prompts[start : start + size]
        began = time.perf_counter()
        texts = backend.generate_batch(batch, options)
        latencies += [time.perf_counter() - began] * len(batch)
        tokens += _tokens(backend, texts)
    return time.perf_counter() - started, latencies, tokens


def _concurrent(
    backend: LMBackend, prompts: list[list[int]], max_batch: int, options: DecodeOptions
) -> tuple[float, list[float], int]:
    """All `prompts` asked at once by one thread each, through a `DecodeBatcher`."""
    batcher = DecodeBatcher(max_batch=max_batch)
    latencies: list[float] = [0.0] * len(prompts)
    texts: list[str] = [""] * len(prompts)
    go = threading.Event()

    def ask(n: int) -> None:
        go.wait()
        began = time.perf_counter()
        texts[n] = batcher.generate(backend, prompts[n], options)
        latencies[n] = time.perf_counter() - began

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(len(prompts))]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    go.set()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies, _tokens(backend, texts)


def main(config: BatchingBenchConfig) -> dict[str, Any]:
    contention = CpuContention.start()
    # The repo's own var/ holds the converted model and its int8 copies (made once).
    settings = Settings(_env_file=None, data_dir=REPO_ROOT / "var")  # type: ignore[call-arg]
    backend = _served_summary_model(settings)
    wanted = max(config.prompts, config.callers)
    if config.source == "xsum":
        examples = select_split(
            load_examples("summary", config.data_dir / "xsum_sample", "xsum"), "val", 0.1
        )
        texts = [e.source for e in examples[:wanted]]
    else:
        articles = list(read_articles(config.data_dir / "bbc_news_summary", "bbc"))
        texts = [a.body for a in articles[:: max(1, len(articles) // wanted)][:wanted]]
    prompts = [
        prompt_ids(backend.tokenizer, task_prompt(backend.tokenizer, "summary", t)) for t in texts
    ]
    options = DecodeOptions(max_new_tokens=config.max_new_tokens)
    backend.generate_batch(prompts[:2], options)  # warm-up

    # The same bench on prompts of one length (the commonest, repeated to 8): what a batch
    # gains when CTranslate2 can batch every prompt token.
    modal = max(set(map(len, prompts)), key=lambda n: sum(len(p) == n for p in prompts))
    one_length = [p for p in prompts if len(p) == modal]
    one_length = (one_length * 8)[:8]
    runs: dict[str, list[tuple[float, list[float], int]]] = {}
    for round_ in range(config.rounds):
        sizes = BATCH_SIZES if round_ % 2 == 0 else tuple(reversed(BATCH_SIZES))
        for size in sizes:
            runs.setdefault(f"batch {size}", []).append(
                _batched(backend, prompts[: config.prompts], size, options)
            )
        for size in (1, 8) if round_ % 2 == 0 else (8, 1):
            runs.setdefault(f"batch {size}, 8 prompts of {modal} tokens", []).append(
                _batched(backend, one_length, size, options)
            )
        for max_batch in (1, 8) if round_ % 2 == 0 else (8, 1):
            name = f"{config.callers} concurrent callers, max_batch {max_batch}"
            runs.setdefault(name, []).append(
                _concurrent(backend, prompts[: config.callers], max_batch, options)
            )

    results: dict[str, Any] = {}
    for name, measured in runs.items():
        rates = [tokens / wall for wall, _, tokens in measured]
        latencies = [s for _, lat, _ in measured for s in lat]
        results[name] = {"tokens_per_s": median(rates), "runs": rates, **latency_ms(latencies)}
    base_rate = results["batch 1"]["tokens_per_s"]
    rows = [
        [
            name,
            r["tokens_per_s"],
            r["tokens_per_s"] / base_rate,
            r["p50"] / 1000,
            r["p99"] / 1000,
        ]
        for name, r in results.items()
    ]
    table = markdown_table(
        ["decoding", "aggregate tok/s", "x batch 1", "request p50 s", "request p99 s"], rows
    )
    payload = {
        "config": {**asdict(config), "data_dir": str(config.data_dir)},
        "model": backend.version,
        "prompt_tokens": sorted(len(p) for p in prompts),
        "threads_per_worker": settings.generation.threads_per_worker,
        "results": results,
        "cpu_contention": contention.stop(),
        "table": table,
    }
    path = write_results("batching", payload)
    print(table)
    lengths = [len(p) for p in prompts]
    print(f"prompt tokens: {min(lengths)}-{max(lengths)}, {len(set(lengths))} distinct lengths")
    print(f"results: {path}")
    return payload


def parse_args() -> BatchingBenchConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = BatchingBenchConfig()
    parser.add_argument("--data", type=Path, default=defaults.data_dir)
    parser.add_argument("--prompts", type=int, default=defaults.prompts)
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--callers", type=int, default=defaults.callers)
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--source", choices=("bbc", "xsum"), default=defaults.source)
    args = parser.parse_args()
    return BatchingBenchConfig(
        args.data, args.prompts, args.rounds, args.callers, args.max_new_tokens, args.source
    )


if __name__ == "__main__":
    setup_logging()
    main(parse_args())
