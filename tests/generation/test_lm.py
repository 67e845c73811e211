"""Loader and backend contracts on a tiny random Llama; one real SmolLM2 generation."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from generation.backends import DecodeOptions, load_backend
from generation.lm import is_model_dir, load_tokenizer, resolve_base_model
from generation.prompting import prompt_ids, task_prompt


@pytest.mark.parametrize("backend_name", ["torch", "ctranslate2"])
def test_backend_contract_on_a_tiny_model(
    backend_name: str, tiny_lm_dir: Path, tmp_path: Path
) -> None:
    backend = load_backend(backend_name, tiny_lm_dir, None, tmp_path)  # type: ignore[arg-type]
    ids = prompt_ids(backend.tokenizer, task_prompt(backend.tokenizer, "headline", "Some news."))
    options = DecodeOptions(max_new_tokens=6)
    pieces = list(backend.stream(ids, options))
    assert 1 <= len(pieces) <= 6 and all(isinstance(p, str) for p in pieces)
    assert backend.generate(ids, options) == "".join(pieces).strip()  # greedy: repeatable
    sampled = {
        backend.generate(ids, DecodeOptions(max_new_tokens=6, temperature=1.5, seed=s))
        for s in range(4)
    }
    assert len(sampled) > 1  # seeds change samples
    assert (
        backend.version
        == load_backend(
            backend_name,
            tiny_lm_dir,
            None,
            tmp_path,  # type: ignore[arg-type]
        ).version
    )


def test_a_configured_directory_must_be_a_model(tmp_path: Path) -> None:
    from core.errors import ModelUnavailable

    with pytest.raises(ModelUnavailable, match=r"config\.json"):
        resolve_base_model(tmp_path, tmp_path)


@pytest.mark.slow
def test_real_smollm2_converts_once_and_writes_a_headline(
    served_models_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "models").symlink_to(served_models_dir, target_is_directory=True)
    base = resolve_base_model(None, tmp_path)  # the session fixture converted it already
    assert is_model_dir(base) and base.parent == tmp_path / "models"
    assert (base / "newsroom_source.json").is_file()
    tokenizer = load_tokenizer(base)
    assert tokenizer.eos_token == "<|im_end|>"
    backend = load_backend("ctranslate2", base, None, tmp_path / "models")
    article = (
        "The Bank of England held interest rates at 5% on Thursday, saying inflation was "
        "falling faster than expected. Governor Andrew Bailey said cuts could come later."
    )
    ids = prompt_ids(tokenizer, task_prompt(tokenizer, "headline", article))
    text = backend.generate(ids, DecodeOptions(max_new_tokens=24))
    assert len(text.split()) >= 2
    assert len({w.lower().strip(".,") for w in text.split()} & set(article.lower().split())) >= 1

    # The guard's retry suppresses what it rejected: on both backends the word disappears.
    for name in ("ctranslate2", "torch"):
        served = load_backend(name, base, None, tmp_path / "models")  # type: ignore[arg-type]
        first = served.generate(ids, DecodeOptions(max_new_tokens=24))
        word = next(w for w in first.split() if w.isalpha() and w[0].isupper())
        again = served.generate(ids, DecodeOptions(max_new_tokens=24, suppress=(word,)))
        assert word not in again, (name, word, again)


def test_torch_repetition_penalty_spares_the_prompt() -> None:
    import torch

    from generation.backends import GeneratedRepetitionPenalty

    penalty = GeneratedRepetitionPenalty(2.0, prompt_len=2)
    ids = torch.tensor([[5, 1, 1, 3]])  # prompt: 5, 1; generated: 1, 3
    scores = torch.tensor([[1.0, 2.0, -2.0, 4.0, 0.5, 8.0]])
    expected = torch.tensor([[1.0, 1.0, -2.0, 2.0, 0.5, 8.0]])  # 1 and 3 halved, 5 untouched
    assert torch.equal(penalty(ids, scores), expected)
    negative = GeneratedRepetitionPenalty(2.0, prompt_len=0)(torch.tensor([[2]]), scores.clone())
    assert negative[0, 2] == -4.0  # a negative score is multiplied, as in CTRL


def test_closing_a_torch_stream_stops_its_decoding(tiny_lm_dir: Path, tmp_path: Path) -> None:
    backend = load_backend("torch", tiny_lm_dir, None, tmp_path)
    ids = prompt_ids(backend.tokenizer, task_prompt(backend.tokenizer, "headline", "Some news."))
    before = set(threading.enumerate())
    stream = backend.stream(ids, DecodeOptions(max_new_tokens=1500))
    assert next(stream)
    assert set(threading.enumerate()) - before  # generate() runs on a thread of its own
    stream.close()  # a consumer that stops reading (a client that went away)
    assert not set(threading.enumerate()) - before  # ... which has stopped, not decoding on


@pytest.mark.parametrize("backend_name", ["torch", "ctranslate2"])
def test_a_batch_decodes_as_each_prompt_would_alone(
    backend_name: str, tiny_lm_dir: Path, tmp_path: Path
) -> None:
    backend = load_backend(backend_name, tiny_lm_dir, None, tmp_path)  # type: ignore[arg-type]
    texts = ["Some news.", "A much longer piece of news about the city council budget vote."]
    prompts = [
        prompt_ids(backend.tokenizer, task_prompt(backend.tokenizer, "summary", text))
        for text in texts * 2
    ]
    options = DecodeOptions(max_new_tokens=8)
    alone = [backend.generate(ids, options) for ids in prompts]
    assert backend.generate_batch(prompts, options) == alone  # prompts of unequal length pad
    assert backend.generate_batch([], options) == []
