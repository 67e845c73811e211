"""`newsroom eval-drafts`: what a writer gets from `POST /v1/drafts` on articles never trained on.

Held-out BBC articles (the validation side of the draft fine-tune's split, the same examples the
adapter's validation loss is computed on): the brief is the headline, the sources are the
article's other sentences (the reporter's notes) and the lead of the most similar other article;
the sentences a real reporter wrote from them are the reference. Each system runs the served
draft path (`NewsWriter.draft`: sentence-level checks, one rewrite, extracts for what fails):

- `base`: SmolLM2-135M-Instruct without an adapter;
- `draft adapter`: the same with `models/lora-draft` merged (if it exists).

Reported per system, over every sentence of every draft: the share that is the model's own words
and passes the checks (`model_grounded`), the share of model sentences that copy a source nearly
verbatim, the share of numbers and names in the served drafts that no source has (`unsupported`),
and per draft the time to the first token, to the finished draft, and that time scaled to 150
words (the issue's yardstick), medians.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from core.settings import GenerationConfig, RetrievalConfig
from generation.data import load_examples, select_split

SYSTEMS = ("base", "draft adapter")


@dataclass
class EvalDraftsConfig:
    data: Path
    json_out: Path
    data_dir: Path
    generation: GenerationConfig
    retrieval: RetrievalConfig
    limit: int = 12
    val_fraction: float = 0.1
    systems: tuple[str, ...] = SYSTEMS


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else 0.0


def run_system(writer: Any, examples: list[Any], name: str) -> dict[str, Any]:
    from generation.guard import SourceFacts
    from generation.writer import SourceArticle

    sentences: list[dict[str, Any]] = []
    ttft: list[float] = []
    total: list[float] = []
    per_150: list[float] = []
    claims = unsupported = 0
    drafts: list[dict[str, Any]] = []
    for example in tqdm(examples, desc=f"drafts ({name})"):
        sources = [SourceArticle(source_id, "", text) for source_id, text in example.sources]
        first: list[float] = []
        started = time.perf_counter()

        def on_token(_: str, first: list[float] = first, started: float = started) -> None:
            if not first:
                first.append(time.perf_counter() - started)

        result = writer.draft(example.brief, example.audience, sources, on_token, n_headlines=0)
        elapsed = time.perf_counter() - started
        words = len(result.draft.text.split())
        ttft.append(first[0] if first else elapsed)
        total.append(elapsed)
        per_150.append(elapsed * 150 / max(words, 1))
        facts = SourceFacts([example.brief, *(text for _, text in example.sources)])
        found = facts.claims(result.draft.text)
        check = facts.check(result.draft.text)
        claims += len(found.numbers) + len(found.entities)
        unsupported += len(check.unsupported)
        rows = [s.as_dict() for s in result.sentences]
        sentences.extend(rows)
        drafts.append({"id": example.id, "brief": example.brief, "sentences": rows})
    n = len(sentences)
    model = [s for s in sentences if s["origin"] == "model"]
    return {
        "drafts": len(examples),
        "sentences": n,
        "model_grounded": round(len(model) / n, 3) if n else 0.0,
        "verbatim": round(sum(bool(s.get("verbatim")) for s in model) / n, 3) if n else 0.0,
        "all_extract_drafts": sum(
            all(s["origin"] == "extract" for s in d["sentences"]) for d in drafts
        ),
        "unsupported": round(unsupported / claims, 4) if claims else 0.0,
        "ttft_s": _median(ttft),
        "draft_s": _median(total),
        "per_150_words_s": _median(per_150),
        "examples": drafts[:4],
    }


def main(config: EvalDraftsConfig) -> dict[str, Any]:
    from generation.factory import build_model_set
    from generation.writer import NewsWriter
    from retrieval.embedder import Embedder

    examples = select_split(load_examples("draft", config.data, "bbc"), "val", config.val_fraction)[
        : config.limit
    ]
    if not examples:
        raise ValueError(f"no held-out draft examples in {config.data}")
    rc = config.retrieval
    embedder = Embedder(rc.model_path(), rc.batch_size, rc.lead_words, rc.query_cache_size)
    adapter = config.generation.draft_adapter
    systems: dict[str, Any] = {}
    for name in config.systems:
        if name == "draft adapter":
            if adapter is None or not (Path(adapter) / "adapter_config.json").is_file():
                systems[name] = {"skipped": f"no draft adapter at {adapter}"}
                continue
            models = build_model_set(config.generation, config.data_dir)
        else:
            models = build_model_set(config.generation, config.data_dir, adapters={"draft": None})
        systems[name] = run_system(NewsWriter(models, embedder.encode), examples, name)
    report = {
        "kind": "drafts",
        "config": {
            "data": str(config.data),
            "limit": config.limit,
            "val_fraction": config.val_fraction,
            "backend": config.generation.backend,
            "draft_adapter": str(adapter),
        },
        "systems": systems,
    }
    config.json_out.parent.mkdir(parents=True, exist_ok=True)
    config.json_out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_table(report: dict[str, Any]) -> str:
    rows = [
        "| system | drafts | sentences | model-written & grounded | near-verbatim | all-extract "
        "drafts | unsupported numbers/names | first token s | draft s | s per 150 words |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in report["systems"].items():
        if "skipped" in r:
            rows.append(f"| {name} | {r['skipped']} |||||||||")
            continue
        rows.append(
            f"| {name} | {r['drafts']} | {r['sentences']} | {r['model_grounded']:.1%} | "
            f"{r['verbatim']:.1%} | {r['all_extract_drafts']} | {r['unsupported']:.1%} | "
            f"{r['ttft_s']:.2f} | {r['draft_s']:.1f} | {r['per_150_words_s']:.1f} |"
        )
    return "\n".join(rows)


__all__ = ["EvalDraftsConfig", "format_table", "main", "run_system"]
