"""Turning a task and its source text into model input, the same way in training and serving."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from prompts import RenderedPrompt, format_sources, render

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Source budget per task, in tokens: a headline needs the lead, a one-sentence summary a bit more.
SOURCE_TOKENS = {"headline": 160, "summary": 320}
# A draft's sources: each is cut to its share of the whole budget, and to at most one source's
# cap, and the whole prompt is capped too: a body without sentence ends once made every draft
# that retrieved it ~30x slower, holding the generation worker. Training builds the same prompt.
DRAFT_SOURCE_TOKENS = 360
DRAFT_TOTAL_SOURCE_TOKENS = 720
DRAFT_BRIEF_TOKENS = 384
DRAFT_AUDIENCE_TOKENS = 64
MAX_DRAFT_PROMPT_TOKENS = 1536


@lru_cache(maxsize=8)
def _special_tokens(tokenizer: PreTrainedTokenizerBase) -> re.Pattern[str] | None:
    """Every special token's text (`<|im_start|>`, `<|endoftext|>`, `<repo_name>` …), longest
    first. None of them contains whitespace, which is what makes one pass of `sub` enough."""
    tokens = set(tokenizer.all_special_tokens)
    tokens |= {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    tokens = {t for t in tokens if t and not any(ch.isspace() for ch in t)}
    if not tokens:
        return None
    return re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))


def strip_special_tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> str:
    """`text` with every special token's text replaced by a space. Untrusted text (articles,
    briefs, model output) must never carry one: in a chat template `<|im_start|>system` would
    open a turn of its own. A space cannot be part of a token, so no new one can form."""
    pattern = _special_tokens(tokenizer)
    return text if pattern is None else pattern.sub(" ", text)


def truncate_tokens(tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int) -> str:
    ids = tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens]).rstrip()


def _variable(tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int) -> str:
    return truncate_tokens(tokenizer, strip_special_tokens(tokenizer, text), max_tokens)


def task_prompt(
    tokenizer: PreTrainedTokenizerBase,
    task: str,
    source: str,
    version: str | None = None,
    **extra: str,
) -> RenderedPrompt:
    budget = SOURCE_TOKENS.get(task.removeprefix("personalized_"), 320)
    extra = {name: strip_special_tokens(tokenizer, value) for name, value in extra.items()}
    return render(task, version, article=_variable(tokenizer, source, budget), **extra)


def draft_prompt(
    tokenizer: PreTrainedTokenizerBase,
    brief: str,
    audience: str,
    sources: Sequence[tuple[str, str]],
) -> RenderedPrompt:
    """The draft prompt from a brief and (source id, text) sources, each source cut by tokens to
    its share of the budget, the whole at most `MAX_DRAFT_PROMPT_TOKENS` (training and serving
    build it the same way)."""
    brief = _variable(tokenizer, brief, DRAFT_BRIEF_TOKENS)
    audience = _variable(tokenizer, audience or "a general audience", DRAFT_AUDIENCE_TOKENS)
    texts = [(source_id, strip_special_tokens(tokenizer, text)) for source_id, text in sources]
    budget = min(DRAFT_SOURCE_TOKENS, DRAFT_TOTAL_SOURCE_TOKENS // max(1, len(texts)))
    while True:
        cut = [(source_id, truncate_tokens(tokenizer, text, budget)) for source_id, text in texts]
        prompt = render("draft", audience=audience, brief=brief, sources=format_sources(cut))
        excess = len(prompt_ids(tokenizer, prompt)) - MAX_DRAFT_PROMPT_TOKENS
        if excess <= 0 or not texts or budget == 0:
            return prompt
        # Re-encoding a cut text can differ by a token: shrink until the whole prompt fits.
        budget = max(0, budget - max(1, -(-excess // len(texts))))


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: RenderedPrompt) -> list[int]:
    """Chat-formatted token ids ending with the assistant turn's opening.

    Only the chat template's own text may yield special tokens: it is rendered around
    placeholders and tokenized as usual, while each message's text is tokenized with
    `split_special_tokens=True`, so a `<|im_end|>` that slipped into a message is characters,
    never a token. For ordinary text the ids equal `apply_chat_template(tokenize=True)`'s."""
    marks = [f"\x00{n}\x00" for n in range(len(prompt.messages))]
    skeleton = tokenizer.apply_chat_template(
        [
            {**message, "content": mark}
            for message, mark in zip(prompt.messages, marks, strict=True)
        ],
        add_generation_prompt=True,
        tokenize=False,
    )
    ids: list[int] = []
    rest = str(skeleton)
    for message, mark in zip(prompt.messages, marks, strict=True):
        template_text, found, rest = rest.partition(mark)
        if not found:
            raise ValueError(
                "the tokenizer's chat template rewrites message text; prompt_ids needs one "
                "that inserts it verbatim"
            )
        ids += tokenizer(template_text, add_special_tokens=False)["input_ids"]
        ids += tokenizer(message["content"], add_special_tokens=False, split_special_tokens=True)[
            "input_ids"
        ]
    ids += tokenizer(rest, add_special_tokens=False)["input_ids"]
    return ids
