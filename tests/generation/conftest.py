"""Generation fixtures: a tiny randomly initialised Llama (contract tests) sharing SmolLM2's real
tokenizer, and a scripted backend for the guard's control flow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from generation.backends import DecodeOptions, LMBackend
from generation.lm import load_tokenizer
from generation.writer import ModelSet


class ScriptedBackend(LMBackend):
    """Returns queued outputs in order (then repeats the last): drives the guard's branches."""

    name = "torch"

    def __init__(self, tokenizer, outputs: list[str]) -> None:  # type: ignore[no-untyped-def]
        super().__init__(tokenizer, "scripted")
        self.outputs = list(outputs)
        self.calls: list[DecodeOptions] = []
        self.prompts: list[list[int]] = []

    def stream(self, prompt_ids: list[int], options: DecodeOptions) -> Iterator[str]:
        self.calls.append(options)
        self.prompts.append(prompt_ids)
        text = self.outputs.pop(0) if len(self.outputs) > 1 else self.outputs[0]
        for position, word in enumerate(text.split(" ")):
            yield word if position == 0 else " " + word


@pytest.fixture
def scripted(tiny_lm_dir: Path):  # type: ignore[no-untyped-def]
    """scripted(outputs) -> (ModelSet, backend)."""
    tokenizer = load_tokenizer(tiny_lm_dir)

    def make(outputs: list[str]) -> tuple[ModelSet, ScriptedBackend]:
        backend = ScriptedBackend(tokenizer, outputs)
        return ModelSet(lambda _adapter: backend, {}), backend

    return make
