"""Turning a task and its source text into model input, the same way in training and serving."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prompts import RenderedPrompt, render

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Source budget per task, in tokens: a headline needs the lead, a one-sentence summary a bit more.
SOURCE_TOKENS = {"headline": 160, "summary": 320}


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


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: RenderedPrompt) -> list[int]:
    """Chat-formatted token ids ending with the assistant turn's opening."""
    ids = tokenizer.apply_chat_template(
        prompt.messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return list(ids)
