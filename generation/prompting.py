"""Turning a task and its source text into model input, the same way in training and serving."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from prompts import RenderedPrompt, format_sources, render

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Source budget per task, in tokens: a headline needs the lead, a one-sentence summary a bit more.
SOURCE_TOKENS = {"headline": 160, "summary": 320}
# A draft's sources: each is cut to its share of the whole budget, and to at most one source's
# cap, so neither one huge article nor many sources can make a prompt slow to read.
DRAFT_SOURCE_TOKENS = 360
DRAFT_TOTAL_SOURCE_TOKENS = 720
BRIEF_TOKENS = 160


def truncate_tokens(tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens]).rstrip()


def task_prompt(
    tokenizer: PreTrainedTokenizerBase, task: str, source: str, **extra: str
) -> RenderedPrompt:
    budget = SOURCE_TOKENS.get(task.removeprefix("personalized_"), 320)
    return render(task, article=truncate_tokens(tokenizer, source, budget), **extra)


def draft_prompt(
    tokenizer: PreTrainedTokenizerBase,
    brief: str,
    audience: str,
    sources: Sequence[tuple[str, str]],
) -> RenderedPrompt:
    """The draft prompt from a brief and (source id, text) pairs, each source truncated by
    tokens to its share of the budget (training and serving build it the same way)."""
    share = min(DRAFT_SOURCE_TOKENS, DRAFT_TOTAL_SOURCE_TOKENS // max(1, len(sources)))
    cut = [(source_id, truncate_tokens(tokenizer, text, share)) for source_id, text in sources]
    return render(
        "draft",
        audience=audience or "a general audience",
        brief=truncate_tokens(tokenizer, brief, BRIEF_TOKENS),
        sources=format_sources(cut),
    )


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: RenderedPrompt) -> list[int]:
    """Chat-formatted token ids ending with the assistant turn's opening."""
    ids = tokenizer.apply_chat_template(
        prompt.messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return list(ids)
