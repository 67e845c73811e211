"""llama.cpp (llama-cpp-python) behind the `LMBackend` interface: an optional extra.

Not in the default install: `pip install llama-cpp-python==0.3.36 sentencepiece -c
constraints.txt` (see `generation.gguf`). The served model is a GGUF made locally from the same
merged base + LoRA as the other backends (`convert_to_gguf`).

Prompts stay identical across backends: the HF tokenizer makes the ids and they are fed to
llama.cpp as token ids; text comes back through the same incremental decoder.

llama.cpp runs the forward pass; the next token is picked here, in numpy, from the last
position's logits, so decoding means exactly what it means on torch and CTranslate2:

- repetition penalty: CTRL-style over the *generated* tokens only (`GeneratedRepetitionPenalty`'s
  rule). llama.cpp's own `repeat_penalty` covers the last `repeat_last_n` tokens of the whole
  context, prompt included, so at the first steps it penalises the article's own words; even
  with `repeat_last_n = max_new_tokens` the window starts on the prompt's tail. It is therefore
  not used (penalty 1.0 in llama.cpp);
- greedy at temperature 0; otherwise top-k 50 (as CTranslate2), top-p, temperature, with a
  numpy generator seeded by `options.seed` (repeatable per seed);
- `options.suppress`: banned sequences as transformers' `bad_words_ids` does it (the last token
  of a sequence is masked when the generated text ends with the rest of it);
- `max_new_tokens`, stop at EOS; closing the generator stops decoding at the next token.

One `llama_cpp.Llama` holds one KV cache: a backend decodes one stream at a time (consume or
close a stream before starting the next; give each worker thread its own backend).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from generation.backends import DecodeOptions, LMBackend, _IncrementalDecoder
from generation.lm import load_tokenizer, model_fingerprint

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

SAMPLING_TOP_K = 50  # as the CTranslate2 backend samples


class LlamaCppBackend(LMBackend):
    name = "llama_cpp"  # type: ignore[assignment]

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerBase, version: str) -> None:
        super().__init__(tokenizer, version)
        self.model = model
        self.n_vocab = int(model.n_vocab())

    def _logits(self) -> np.ndarray:
        """The last evaluated position's logits (a copy: llama.cpp reuses the buffer)."""
        pointer = self.model._ctx.get_logits()
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).astype(np.float32)

    def _pick(
        self,
        logits: np.ndarray,
        generated: list[int],
        options: DecodeOptions,
        banned: list[list[int]],
        rng: np.random.Generator,
    ) -> int:
        if options.repetition_penalty != 1.0 and generated:
            seen = np.unique(np.asarray(generated, dtype=np.int64))
            picked = logits[seen]
            logits[seen] = np.where(
                picked < 0, picked * options.repetition_penalty, picked / options.repetition_penalty
            )
        for sequence in banned:
            head = sequence[:-1]
            if not head or generated[-len(head) :] == head:
                logits[sequence[-1]] = -np.inf
        if options.temperature <= 0:
            return int(np.argmax(logits))
        top = np.argpartition(-logits, SAMPLING_TOP_K - 1)[:SAMPLING_TOP_K]
        scores = logits[top].astype(np.float64) / options.temperature
        order = np.argsort(-scores)
        top, scores = top[order], scores[order]
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        keep = int(np.searchsorted(np.cumsum(probs), options.top_p) + 1)
        probs = probs[:keep] / probs[:keep].sum()
        return int(top[rng.choice(keep, p=probs)])

    def stream(self, prompt_ids: list[int], options: DecodeOptions) -> Iterator[str]:
        eos = self.tokenizer.eos_token_id
        banned = self._suppressed_ids(options.suppress) if options.suppress else []
        rng = np.random.default_rng(options.seed)
        decoder = _IncrementalDecoder(self.tokenizer)
        generated: list[int] = []
        # No KV reuse across calls: every prompt is evaluated whole, as on the other backends.
        self.model.reset()
        self.model.eval(list(prompt_ids))
        while len(generated) < options.max_new_tokens:
            token = self._pick(self._logits(), generated, options, banned, rng)
            if token == eos:
                break
            generated.append(token)
            piece = decoder.push(token)
            if piece:
                yield piece  # a closed generator never resumes: decoding stops here
            if len(generated) < options.max_new_tokens:
                self.model.eval([token])


_params_lock = threading.Lock()


@contextmanager
def _model_params(**fields: Any) -> Iterator[None]:
    """`llama_cpp.Llama` takes no argument for some model params: patch the defaults it reads
    while it loads (under a lock: the patch is process-wide)."""
    import llama_cpp.llama as high_level

    low_level = high_level.llama_cpp
    original = low_level.llama_model_default_params

    def patched() -> Any:
        params = original()
        for name, value in fields.items():
            setattr(params, name, value)
        return params

    with _params_lock:
        low_level.llama_model_default_params = patched
        try:
            yield
        finally:
            low_level.llama_model_default_params = original


def load_llama_backend(
    base_dir: Path,
    adapter_dir: Path | None,
    cache_root: Path,
    threads: int = 1,
    *,
    quantization: str = "q8_0",
    n_ctx: int = 2048,
    extra_buffers: bool = False,
) -> LlamaCppBackend:
    """base (+ merged adapter) as a GGUF (built once, cached) on llama.cpp's CPU backend.

    `extra_buffers` is llama.cpp's `use_extra_bufts` (CPU weight repacking, AMX): off by
    default, because with it llama-cpp-python 0.3.36's wheel segfaults on the first decode of
    any quantized GGUF (q8_0, q4_0) on this machine's CPU (AVX-512 + AMX_INT8); f32 is fine."""
    import llama_cpp

    from generation.gguf import convert_to_gguf

    path = convert_to_gguf(base_dir, adapter_dir, cache_root, quantization)
    with _model_params(use_extra_bufts=extra_buffers):
        model = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
    version = f"{model_fingerprint(base_dir, adapter_dir)}-{quantization}"
    return LlamaCppBackend(model, load_tokenizer(base_dir), version)
