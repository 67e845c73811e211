"""Decoders side by side: torch fp32, CTranslate2 int8 and llama.cpp (GGUF) on the same merged
summary model (base + models/lora-summary) and the same held-out XSum prompts.

Per backend: decode tokens/s and time to first token (batch 1, greedy, `DecodeOptions`'
repetition penalty 1.15 over the generated tokens only, on every backend; llama.cpp's own
`repeat_penalty` would also penalise the prompt's tail, so `LlamaCppBackend` applies the same
generated-only rule itself), the process RSS after loading, and ROUGE-1/2/L of the cleaned
summaries against the XSum references (`evaluation.generation.rouge_scores`). Each backend runs
in its own subprocess (so RSS is per backend), in rounds of A B C .. A B C .. so contention on a
shared machine hits all of them alike; rates are medians over all prompts of all rounds.

llama.cpp is an OPTIONAL extra, not in the default install: `pip install
llama-cpp-python==0.3.36 sentencepiece -c constraints.txt`; without it that backend is skipped
with a message. Its converter comes from the llama-cpp-python sdist (see `generation.gguf`).

Run: `.venv/bin/python -m bench.decoders [--prompts 12 --max-new-tokens 64 --rounds 2
--threads 1 --quantizations q8_0,q4_0,q4_k_m]`.
Verdict: does llama.cpp beat CTranslate2 by > 20% on decode tok/s while losing <= 0.5 ROUGE-1?
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    default_data_dir,
    markdown_table,
    setup_logging,
    timed_stream,
    write_results,
)

log = logging.getLogger(__name__)

SPEEDUP_NEEDED = 1.20
ROUGE1_LOSS_ALLOWED = 0.5
MARK = "@@RESULT@@ "


def _model(settings: Any) -> tuple[Path, Path | None]:
    from generation.lm import resolve_base_model

    base = resolve_base_model(settings.generation.base_model, settings.data_dir)
    adapter = settings.generation.summary_adapter
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        adapter = None
    return base, adapter


def _examples(data: Path, n: int) -> list[Any]:
    from generation.data import load_examples, select_split

    examples = select_split(load_examples("summary", data / "xsum_sample", "xsum"), "val", 0.1)
    return examples[:n]


def _rss_kib() -> dict[str, int]:
    found = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found


def worker(spec: str, args: argparse.Namespace) -> dict[str, Any]:
    """One backend in this process: load, measure, report."""
    from core.settings import Settings
    from generation.backends import DecodeOptions, load_backend
    from generation.prompting import prompt_ids, task_prompt
    from generation.writer import CLEAN

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    base, adapter = _model(settings)
    cache_root = settings.data_dir / "models"
    examples = _examples(args.data, args.prompts)
    rss_before = _rss_kib()
    started = time.perf_counter()
    if spec.startswith("llama_cpp:"):
        from generation.llama_backend import load_llama_backend

        backend: Any = load_llama_backend(
            base, adapter, cache_root, args.threads, quantization=spec.split(":", 1)[1]
        )
    else:
        backend = load_backend(spec, base, adapter, cache_root, threads=args.threads)  # type: ignore[arg-type]
    load_s = time.perf_counter() - started
    rss_loaded = _rss_kib()
    options = DecodeOptions(max_new_tokens=args.max_new_tokens)
    rows = []
    for example in examples:
        ids = prompt_ids(
            backend.tokenizer, task_prompt(backend.tokenizer, "summary", example.source)
        )
        done = timed_stream(backend, ids, options)
        rows.append(
            {
                "id": example.id,
                "prompt_tokens": len(ids),
                "tokens": done.tokens,
                "ttft_ms": None if done.first_token_s is None else done.first_token_s * 1000,
                "rate": done.decode_tokens_per_s,
                "summary": CLEAN["summary"](done.text.strip()),
            }
        )
    return {
        "spec": spec,
        "load_s": load_s,
        "rss_before_load_mib": rss_before["VmRSS"] / 1024,
        "rss_after_load_mib": rss_loaded["VmRSS"] / 1024,
        "rss_peak_mib": _rss_kib()["VmHWM"] / 1024,
        "rows": rows,
    }


def _run_worker(
    spec: str, args: argparse.Namespace, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """`spec` measured in a fresh process; `env` adds settings (another base or adapter)."""
    import os

    command = [
        sys.executable, "-m", "bench.decoders", "--worker", spec,
        "--data", str(args.data), "--prompts", str(args.prompts),
        "--max-new-tokens", str(args.max_new_tokens), "--threads", str(args.threads),
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{spec} worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK) :])


def _prepare(specs: list[str]) -> None:
    """Build every converted model once, outside the timed subprocesses."""
    from core.settings import Settings
    from generation.backends import convert_to_ctranslate2

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    base, adapter = _model(settings)
    cache_root = settings.data_dir / "models"
    for spec in specs:
        started = time.perf_counter()
        if spec == "ctranslate2":
            convert_to_ctranslate2(base, adapter, cache_root)
        elif spec.startswith("llama_cpp:"):
            from generation.gguf import convert_to_gguf

            path = convert_to_gguf(base, adapter, cache_root, spec.split(":", 1)[1])
            log.info("%s: %s (%.0f MiB)", spec, path, path.stat().st_size / 2**20)
        log.info("%s ready in %.1fs", spec, time.perf_counter() - started)


def summarise(spec: str, runs: list[dict[str, Any]], references: dict[str, str]) -> dict[str, Any]:
    from evaluation.generation import rouge_scores

    rows = [row for run in runs for row in run["rows"]]
    first = runs[0]["rows"]
    rouge = rouge_scores([r["summary"] for r in first], [references[r["id"]] for r in first])
    stable = all(
        [r["summary"] for r in run["rows"]] == [r["summary"] for r in first] for run in runs
    )
    return {
        "backend": spec,
        "decode_tokens_per_s": statistics.median(r["rate"] for r in rows if r["rate"]),
        "ttft_ms": statistics.median(r["ttft_ms"] for r in rows if r["ttft_ms"] is not None),
        "tokens_per_output": statistics.median(r["tokens"] for r in first),
        "load_s": statistics.median(run["load_s"] for run in runs),
        "rss_after_load_mib": statistics.median(run["rss_after_load_mib"] for run in runs),
        "rss_peak_mib": max(run["rss_peak_mib"] for run in runs),
        "outputs_same_every_round": stable,
        **rouge,
        "n_prompts": len(first),
        "rounds": len(runs),
        "summaries": [r["summary"] for r in first],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="torch vs CTranslate2 vs llama.cpp decoders.")
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="per backend (batch 1)")
    parser.add_argument("--rounds", type=int, default=2, help="A B C .. repeated (ABAB)")
    parser.add_argument(
        "--quantizations", default="q8_0,q4_0,q4_k_m", help="llama.cpp GGUF types, comma-separated"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(MARK + json.dumps(worker(args.worker, args)), flush=True)
        return {}
    setup_logging()
    specs = ["torch", "ctranslate2"]
    try:
        import llama_cpp  # noqa: F401
    except ImportError as error:
        print(
            f"llama.cpp SKIPPED: `import llama_cpp` failed ({error}). It is an optional extra, "
            "not in the default install: .venv/bin/pip install llama-cpp-python==0.3.36 "
            "sentencepiece -c constraints.txt"
        )
    else:
        specs += [f"llama_cpp:{q.strip()}" for q in args.quantizations.split(",") if q.strip()]
    _prepare(specs)
    references = {e.id: e.target for e in _examples(args.data, args.prompts)}
    runs: dict[str, list[dict[str, Any]]] = {spec: [] for spec in specs}
    for round_no in range(args.rounds):
        for spec in specs:
            log.info("round %d/%d: %s", round_no + 1, args.rounds, spec)
            runs[spec].append(_run_worker(spec, args))
    results = [summarise(spec, runs[spec], references) for spec in specs]
    ct2 = next(r for r in results if r["backend"] == "ctranslate2")
    for row in results:
        row["tok_s_over_ct2"] = row["decode_tokens_per_s"] / ct2["decode_tokens_per_s"]
    print(
        markdown_table(
            [
                "backend",
                "decode tok/s",
                "x CT2",
                "TTFT ms",
                "tokens/output",
                "RSS MiB (loaded)",
                "peak RSS MiB",
                "load s",
                "ROUGE-1",
                "ROUGE-2",
                "ROUGE-L",
            ],
            [
                [
                    r["backend"],
                    r["decode_tokens_per_s"],
                    r["tok_s_over_ct2"],
                    r["ttft_ms"],
                    r["tokens_per_output"],
                    r["rss_after_load_mib"],
                    r["rss_peak_mib"],
                    r["load_s"],
                    r["rouge1"],
                    r["rouge2"],
                    r["rougeL"],
                ]
                for r in results
            ],
        )
    )
    llama = [r for r in results if r["backend"].startswith("llama_cpp:")]
    winners = [
        r
        for r in llama
        if r["tok_s_over_ct2"] > SPEEDUP_NEEDED
        and r["rouge1"] >= ct2["rouge1"] - ROUGE1_LOSS_ALLOWED
    ]
    if not llama:
        verdict = "llama.cpp not measured (llama_cpp not importable)"
    elif winners:
        best = max(winners, key=lambda r: r["decode_tokens_per_s"])
        verdict = (
            f"YES: {best['backend']} decodes {best['tok_s_over_ct2']:.2f}x CTranslate2 int8 "
            f"with ROUGE-1 {best['rouge1']:.2f} vs {ct2['rouge1']:.2f}"
        )
    else:
        verdict = "NO: " + "; ".join(
            f"{r['backend']} {r['tok_s_over_ct2']:.2f}x CT2, ROUGE-1 {r['rouge1']:.2f} "
            f"vs {ct2['rouge1']:.2f}"
            for r in llama
        )
    print(
        f"\nprompts={args.prompts} max_new_tokens={args.max_new_tokens} threads={args.threads} "
        f"rounds={args.rounds}; medians over all prompts of all rounds; ROUGE on round 1 (greedy)"
    )
    print(
        f"llama.cpp > {SPEEDUP_NEEDED:.2f}x CT2 decode tok/s, ROUGE-1 loss <= "
        f"{ROUGE1_LOSS_ALLOWED}: {verdict}"
    )
    payload = {
        "prompts": args.prompts,
        "max_new_tokens": args.max_new_tokens,
        "threads": args.threads,
        "rounds": args.rounds,
        "backends": results,
        "verdict": verdict,
        "llama_cpp_beats_ct2": bool(winners),
    }
    write_results("decoders", payload)
    return payload


if __name__ == "__main__":
    main()
