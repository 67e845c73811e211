"""Generation speed: tokens/s and time to first token per backend on the same prompts, and the
summary endpoint cold vs cached over HTTP.

Part 1 runs the served summary model (base + the summary LoRA, merged) on torch fp32 and on
CTranslate2 int8, batch 1, greedy, the same XSum prompts. Part 2 starts `newsroom serve` on a
throw-away data dir (BBC articles, readers with clicks), asks each (reader, article) summary
once (cold: generation) and then many times (cached).

Run: `.venv/bin/python -m bench.generation [--prompts 8 --pairs 8 --repeats 50]`.
Targets: served tokens/s >= the CTranslate2 int8 figure; cached summary p99 <= 10 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    default_data_dir,
    latency_ms,
    link_shared_models,
    markdown_table,
    setup_logging,
    timed_stream,
    verdict,
    write_results,
)
from bench.http_search import Server
from core.datasets import read_bbc
from core.settings import Settings
from generation.backends import DecodeOptions, load_backend
from generation.data import load_examples, select_split
from generation.lm import resolve_base_model
from generation.prompting import prompt_ids, task_prompt

TARGET_CACHED_P99_MS = 10.0


def backend_speed(name: str, prompts: list[str], settings: Settings) -> dict[str, Any]:
    base = resolve_base_model(settings.generation.base_model, settings.data_dir)
    adapter = settings.generation.summary_adapter
    if adapter is not None and not (adapter / "adapter_config.json").is_file():
        adapter = None
    started = time.perf_counter()
    backend = load_backend(name, base, adapter, settings.data_dir / "models")  # type: ignore[arg-type]
    load_s = time.perf_counter() - started
    options = DecodeOptions(max_new_tokens=64)
    rates, ttfts, lengths = [], [], []
    for prompt in prompts:
        ids = prompt_ids(backend.tokenizer, task_prompt(backend.tokenizer, "summary", prompt))
        done = timed_stream(backend, ids, options)
        if done.decode_tokens_per_s is None or done.first_token_s is None:
            continue
        rates.append(done.decode_tokens_per_s)
        ttfts.append(done.first_token_s * 1000)
        lengths.append(done.tokens)
    return {
        "backend": name,
        "load_s": load_s,
        "decode_tokens_per_s": statistics.median(rates),
        "ttft_ms": statistics.median(ttfts),
        "tokens_per_output": statistics.median(lengths),
        "n": len(rates),
    }


def http_summaries(data: Path, pairs: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        data_dir = Path(tmp)
        link_shared_models(data_dir)
        server = Server(data_dir, data_dir / "server.log")
        server.start(timeout_s=180)
        try:
            articles = [a for a in read_bbc(data / "bbc_news_summary")][::6][:300]
            with httpx.Client(base_url=server.base_url, timeout=300) as client:
                payload = [
                    {"id": a.id, "title": a.title, "body": a.body, "category": a.category}
                    for a in articles
                ]
                client.post("/v1/articles/bulk", json={"articles": payload}).raise_for_status()
                rng = random.Random(0)
                users = [f"reader-{n}" for n in range(pairs)]
                for user in users:
                    clicks = rng.sample(articles, 5)
                    events = [
                        {"user_id": user, "article_id": a.id, "type": "click"} for a in clicks
                    ]
                    client.post("/v1/events", json={"events": events}).raise_for_status()
                targets = [(u, rng.choice(articles).id) for u in users]
                cold = []
                for user, article in targets:
                    started = time.perf_counter()
                    response = client.get(f"/v1/users/{user}/articles/{article}/summary")
                    cold.append(time.perf_counter() - started)
                    response.raise_for_status()
                    assert not response.json()["cached"]
                cached = []
                for _ in range(repeats):
                    for user, article in targets:
                        started = time.perf_counter()
                        response = client.get(f"/v1/users/{user}/articles/{article}/summary")
                        cached.append(time.perf_counter() - started)
                        assert response.json()["cached"]
        finally:
            server.stop(timeout_s=30)
    return {"cold": latency_ms(cold), "cached": latency_ms(cached)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Generation speed benchmark.")
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    setup_logging()
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    examples = select_split(load_examples("summary", args.data / "xsum_sample", "xsum"), "val", 0.1)
    prompts = [e.source for e in examples[: args.prompts]]
    speeds = [backend_speed(name, prompts, settings) for name in ("torch", "ctranslate2")]
    by_name = {s["backend"]: s for s in speeds}
    served = by_name[settings.generation.backend]
    ct2 = by_name["ctranslate2"]
    http = http_summaries(args.data, args.pairs, args.repeats)
    result = {
        "backends": speeds,
        "served_backend": settings.generation.backend,
        "served_tokens_per_s": served["decode_tokens_per_s"],
        "ct2_int8_tokens_per_s": ct2["decode_tokens_per_s"],
        "ct2_over_torch": ct2["decode_tokens_per_s"] / by_name["torch"]["decode_tokens_per_s"],
        "summary_http": http,
        "cached_p99_ms": http["cached"]["p99"],
        "target_cached_p99_ms": TARGET_CACHED_P99_MS,
        "target_met": bool(
            http["cached"]["p99"] <= TARGET_CACHED_P99_MS
            and served["decode_tokens_per_s"] >= ct2["decode_tokens_per_s"]
        ),
    }
    print(
        markdown_table(
            ["backend", "decode tok/s (median)", "TTFT ms (median)", "tokens/output", "load s"],
            [
                [
                    s["backend"],
                    s["decode_tokens_per_s"],
                    s["ttft_ms"],
                    s["tokens_per_output"],
                    s["load_s"],
                ]
                for s in speeds
            ],
        )
    )
    print(
        f"\nCTranslate2 int8 / torch fp32 decode speed: {result['ct2_over_torch']:.2f}x; "
        f"served backend: {result['served_backend']}"
    )
    print()
    print(
        markdown_table(
            ["summary over HTTP", "n", "p50 ms", "p99 ms", "max ms"],
            [
                [kind, http[kind]["n"], http[kind]["p50"], http[kind]["p99"], http[kind]["max"]]
                for kind in ("cold", "cached")
            ],
        )
    )
    print(
        f"\ncached p99 target <= {TARGET_CACHED_P99_MS} ms: "
        f"{verdict(http['cached']['p99'] <= TARGET_CACHED_P99_MS)}; served tok/s >= CT2 int8: "
        f"{verdict(served['decode_tokens_per_s'] >= ct2['decode_tokens_per_s'])}"
    )
    write_results("generation", result)
    return result


if __name__ == "__main__":
    main()
