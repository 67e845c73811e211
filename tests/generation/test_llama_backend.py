"""The llama.cpp backend (an optional extra) keeps the `LMBackend` contract, on the real SmolLM2
converted to a q8_0 GGUF. Skipped when llama-cpp-python is not installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.backends import DecodeOptions
from generation.prompting import prompt_ids, task_prompt

REPO_ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("llama_cpp", reason="llama-cpp-python is an optional extra")
pytest.importorskip("sentencepiece", reason="llama.cpp's converter imports sentencepiece")

ARTICLE = (
    "The Bank of England held interest rates at 5% on Thursday, saying inflation was falling "
    "faster than expected. Governor Andrew Bailey said cuts could come later in the year."
)


@pytest.fixture(scope="module")
def llama_backend(served_models_dir: Path):  # type: ignore[no-untyped-def]
    from generation.gguf import converter_dir
    from generation.llama_backend import load_llama_backend
    from generation.lm import SMOLLM2_NAME

    # The converter fetched once for the repo (`python -m generation.gguf fetch`) is reused
    # instead of downloading the sdist again into the test's models dir.
    shared = converter_dir(REPO_ROOT / "var" / "models")
    tools = served_models_dir / "tools"
    if (shared / "convert_hf_to_gguf.py").is_file() and not tools.exists():
        tools.mkdir()
        (tools / shared.name).symlink_to(shared, target_is_directory=True)
    backend = load_llama_backend(
        served_models_dir / SMOLLM2_NAME, None, served_models_dir, threads=1
    )
    backend.cache_root = served_models_dir  # type: ignore[attr-defined]
    gguf = served_models_dir / f"gguf-{backend.version}" / "model.gguf"
    backend.gguf_mtime = gguf.stat().st_mtime_ns  # type: ignore[attr-defined]
    return backend


@pytest.mark.slow
def test_llama_backend_keeps_the_backend_contract(llama_backend) -> None:  # type: ignore[no-untyped-def]
    from generation.gguf import convert_to_gguf

    backend = llama_backend
    ids = prompt_ids(backend.tokenizer, task_prompt(backend.tokenizer, "summary", ARTICLE))
    options = DecodeOptions(max_new_tokens=24)
    pieces = list(backend.stream(ids, options))
    assert len(pieces) >= 2 and all(isinstance(p, str) and p for p in pieces)
    whole = "".join(pieces)
    assert len(backend.tokenizer(whole, add_special_tokens=False)["input_ids"]) <= 24
    assert backend.generate(ids, options) == whole.strip()  # greedy: repeatable
    assert {w.lower().strip(".,") for w in whole.split()} & set(ARTICLE.lower().split())

    # Closing the generator stops decoding: a next call starts from a clean state.
    stream = backend.stream(ids, options)
    assert next(stream) == pieces[0]
    stream.close()
    assert backend.generate(ids, options) == whole.strip()

    sampled = {
        backend.generate(ids, DecodeOptions(max_new_tokens=12, temperature=1.5, seed=s))
        for s in range(4)
    }
    assert len(sampled) > 1  # seeds change samples...
    again = DecodeOptions(max_new_tokens=12, temperature=1.5, seed=1)
    assert backend.generate(ids, again) == backend.generate(ids, again)  # ...repeatably

    word = next(w for w in whole.split() if w.isalpha() and w[0].isupper() and w != "The")
    suppressed = backend.generate(ids, DecodeOptions(max_new_tokens=24, suppress=(word,)))
    assert word not in suppressed

    # The GGUF is cached by the model's fingerprint: asking again converts nothing.
    from generation.lm import SMOLLM2_NAME

    models = backend.cache_root
    path = convert_to_gguf(models / SMOLLM2_NAME, None, models)
    assert path.parent.name == f"gguf-{backend.version}" and path.is_file()
    assert path.stat().st_mtime_ns == backend.gguf_mtime


def test_the_closed_stream_stops_at_the_next_token(llama_backend) -> None:  # type: ignore[no-untyped-def]
    backend = llama_backend
    evaluated = []
    original = backend.model.eval

    def counting(tokens):  # type: ignore[no-untyped-def]
        evaluated.append(len(tokens))
        return original(tokens)

    backend.model.eval = counting
    try:
        ids = prompt_ids(backend.tokenizer, task_prompt(backend.tokenizer, "summary", ARTICLE))
        stream = backend.stream(ids, DecodeOptions(max_new_tokens=48))
        next(stream)
        stream.close()
    finally:
        backend.model.eval = original
    assert evaluated[0] == len(ids) and len(evaluated) <= 4  # prompt + a token or two, not 48
