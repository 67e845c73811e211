"""`newsroom eval-generation`: lead / base / finetuned / served on held-out articles.

- `lead`: the first sentence (summaries) or the lead's first words (headlines);
- `base`: the base LM, no adapter, no guard; `finetuned`: the task adapter, no guard;
- `served`: exactly what the API returns (adapter + faithfulness guard + fallback).
ROUGE-1/2/L are F1 x 100 (rouge-score, Porter stemming). `unsupported_rate` is the share of
numbers and named entities in outputs that the sources do not contain, pooled over the set,
measured by the same checker the guard enforces (`generation.guard`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from core.settings import GenerationConfig
from generation.data import DataFormat, Split, Task, load_examples, select_split
from generation.factory import build_model_set
from generation.guard import SourceFacts
from generation.prompting import prompt_ids, task_prompt
from generation.writer import CLEAN, TASK_OPTIONS, NewsWriter, lead_headline, lead_sentence

log = logging.getLogger(__name__)
SYSTEMS = ("lead", "base", "finetuned", "served")
LEAD_HEADLINE_WORDS = 8  # BBC headlines average ~6 words


@dataclass
class EvalGenerationConfig:
    task: Task
    data: Path
    format: DataFormat
    limit: int
    json_out: Path | None
    data_dir: Path
    generation: GenerationConfig
    split: Split = "val"
    val_fraction: float = 0.1
    examples_out: Path | None = None


def rouge_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for prediction, reference in zip(predictions, references, strict=True):
        scores = scorer.score(reference, prediction)
        for name in totals:
            totals[name] += scores[name].fmeasure
    n = max(1, len(predictions))
    return {name: round(100 * value / n, 2) for name, value in totals.items()}


def unsupported_rate(outputs: list[str], sources: list[str]) -> float:
    checked = unsupported = 0
    for output, source in zip(outputs, sources, strict=True):
        report = SourceFacts([source]).check(output)
        checked += report.checked
        unsupported += len(report.unsupported)
    return round(unsupported / checked, 4) if checked else 0.0


def _lead(task: Task, source: str) -> str:
    return (
        lead_headline(source, LEAD_HEADLINE_WORDS) if task == "headline" else lead_sentence(source)
    )


def main(config: EvalGenerationConfig, progress: bool = True) -> dict[str, Any]:
    examples = select_split(
        load_examples(config.task, config.data, config.format), config.split, config.val_fraction
    )[: config.limit]
    if not examples:
        raise ValueError(f"no {config.split} examples in {config.data}")
    adapter = (
        config.generation.headline_adapter
        if config.task == "headline"
        else config.generation.summary_adapter
    )
    if adapter is None or not (Path(adapter) / "adapter_config.json").is_file():
        raise ValueError(
            f"no {config.task} adapter at {adapter}: run `newsroom finetune --task {config.task}`"
        )
    base_models = build_model_set(config.generation, config.data_dir, adapters={})
    tuned_models = build_model_set(config.generation, config.data_dir)
    writer = NewsWriter(tuned_models)
    options = TASK_OPTIONS[config.task]

    def raw(models: Any, source: str) -> str:
        backend = models.get(config.task if models is tuned_models else "base")
        ids = prompt_ids(backend.tokenizer, task_prompt(backend.tokenizer, config.task, source))
        return CLEAN[config.task](backend.generate(ids, options))

    outputs: dict[str, list[str]] = {name: [] for name in SYSTEMS}
    fallbacks = 0
    for example in tqdm(examples, desc=f"eval {config.task}", disable=not progress):
        outputs["lead"].append(_lead(config.task, example.source))
        outputs["base"].append(raw(base_models, example.source))
        outputs["finetuned"].append(raw(tuned_models, example.source))
        # Title unknown to the served path here: the article body is the whole source.
        if config.task == "headline":
            served = writer.headlines("", example.source, n=1)[0]
        else:
            served = writer.summary("", example.source)
        fallbacks += served.fallback_reason is not None
        outputs["served"].append(served.text)

    references = [e.target for e in examples]
    sources = [e.source for e in examples]
    report = {
        "task": config.task,
        "n": len(examples),
        "systems": {
            name: {
                **rouge_scores(outputs[name], references),
                "unsupported_rate": unsupported_rate(outputs[name], sources),
            }
            for name in SYSTEMS
        },
    }
    if config.json_out:
        config.json_out.parent.mkdir(parents=True, exist_ok=True)
        config.json_out.write_text(json.dumps(report, indent=2) + "\n")
    if config.examples_out:
        with open(config.examples_out, "w", encoding="utf-8") as handle:
            for i, example in enumerate(examples):
                row = {
                    "id": example.id,
                    "reference": example.target,
                    **{name: outputs[name][i] for name in SYSTEMS},
                }
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    log.info("served fell back to an extract for %d of %d", fallbacks, len(examples))
    report_fallbacks = fallbacks
    print_table(report, report_fallbacks)
    return report


def print_table(report: dict[str, Any], fallbacks: int | None = None) -> None:
    print(f"\n{report['task']} — n={report['n']}")
    print(f"{'system':<10} {'ROUGE-1':>8} {'ROUGE-2':>8} {'ROUGE-L':>8} {'unsupported':>12}")
    for name, row in report["systems"].items():
        print(
            f"{name:<10} {row['rouge1']:>8.2f} {row['rouge2']:>8.2f} {row['rougeL']:>8.2f} "
            f"{row['unsupported_rate']:>12.4f}"
        )
    if fallbacks is not None:
        print(f"served: {fallbacks}/{report['n']} fell back to an extract")
