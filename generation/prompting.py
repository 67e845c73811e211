"""Turning a task and its source text into model input, the same way in training and serving."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prompts import RenderedPrompt, format_sources, render

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Source budget per task, in tokens: a headline needs the lead, a one-sentence summary a bit more.
SOURCE_TOKENS = {"headline": 160, "summary": 320}
# A draft's prompt, in tokens: each source's lead (title + first sentences) is cut to its own
# budget and the whole prompt is capped, because a body without sentence ends is one "sentence"
# (a 19 KB one made every draft that retrieved it ~30x slower, holding the generation worker).
DRAFT_SOURCE_TOKENS = 128
DRAFT_BRIEF_TOKENS = 384
DRAFT_AUDIENCE_TOKENS = 64
MAX_DRAFT_PROMPT_TOKENS = 1536


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
    tokenizer: PreTrainedTokenizerBase, brief: str, audience: str, leads: list[tuple[str, str]]
) -> RenderedPrompt:
    """The draft template over (id, lead text) sources, at most `MAX_DRAFT_PROMPT_TOKENS` long:
    each lead gets `DRAFT_SOURCE_TOKENS`, less if the brief and many sources need the room."""
    brief = truncate_tokens(tokenizer, brief, DRAFT_BRIEF_TOKENS)
    audience = truncate_tokens(tokenizer, audience, DRAFT_AUDIENCE_TOKENS)
    budget = DRAFT_SOURCE_TOKENS
    while True:
        sources = [(i, truncate_tokens(tokenizer, text, budget)) for i, text in leads]
        prompt = render("draft", audience=audience, brief=brief, sources=format_sources(sources))
        excess = len(prompt_ids(tokenizer, prompt)) - MAX_DRAFT_PROMPT_TOKENS
        if excess <= 0 or not leads or budget == 0:
            return prompt
        # Re-encoding a cut text can differ by a token: shrink until the whole prompt fits.
        budget = max(0, budget - max(1, -(-excess // len(leads))))


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: RenderedPrompt) -> list[int]:
    """Chat-formatted token ids ending with the assistant turn's opening."""
    ids = tokenizer.apply_chat_template(
        prompt.messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return list(ids)
