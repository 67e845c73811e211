"""LM backends behind one small interface: torch (fp32, the reference) and CTranslate2 (int8).

Both take chat-formatted prompt token ids and yield text pieces as tokens are decoded, so the
API can stream any backend. A LoRA adapter is merged into the weights before serving: the
served model is one plain causal LM per task, with no adapter overhead per token.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from core.files import staged_directory
from generation.lm import load_causal_lm, load_tokenizer, model_fingerprint

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

BackendName = Literal["torch", "ctranslate2"]


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 0.9
    # Small models loop without it (CTranslate2 greedy especially); 1.15 keeps names intact.
    repetition_penalty: float = 1.15
    seed: int = 0
    suppress: tuple[str, ...] = ()  # words the output must not contain (guard's retry)


class LMBackend(ABC):
    name: BackendName

    def __init__(self, tokenizer: PreTrainedTokenizerBase, version: str) -> None:
        self.tokenizer = tokenizer
        self.version = version

    @abstractmethod
    def stream(self, prompt_ids: list[int], options: DecodeOptions) -> Iterator[str]:
        """Text pieces, in order, whose concatenation is the whole completion. A generator:
        closing it early stops the decoding."""

    def generate(self, prompt_ids: list[int], options: DecodeOptions) -> str:
        return "".join(self.stream(prompt_ids, options)).strip()

    def generate_batch(self, prompts: list[list[int]], options: DecodeOptions) -> list[str]:
        """Completions of several prompts, in order, as `generate` would write each. This one
        decodes them one by one; a backend that decodes a batch at once overrides it."""
        return [self.generate(ids, options) for ids in prompts]

    def _suppressed_ids(self, words: tuple[str, ...]) -> list[list[int]]:
        """Token sequences of each word as it may appear (with/without a leading space)."""
        sequences: list[list[int]] = []
        for word in words:
            for variant in {word, " " + word, word.lower(), " " + word.lower()}:
                ids = self.tokenizer(variant, add_special_tokens=False)["input_ids"]
                if ids and ids not in sequences:
                    sequences.append(ids)
        return sequences


class _IncrementalDecoder:
    """Turns a growing list of token ids into new text pieces without splitting characters."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = ""

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next token
            return ""
        piece, self.emitted = text[len(self.emitted) :], text
        return piece


class GeneratedRepetitionPenalty:
    """CTRL-style repetition penalty over the generated tokens only (as CTranslate2 applies it),
    so both backends decode the same way."""

    def __init__(self, penalty: float, prompt_len: int) -> None:
        self.penalty = penalty
        self.prompt_len = prompt_len

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        generated = input_ids[:, self.prompt_len :]
        if self.penalty == 1.0 or generated.shape[1] == 0:
            return scores
        picked = scores.gather(1, generated)
        picked = picked.where(picked < 0, picked / self.penalty)
        picked = picked.where(picked >= 0, picked * self.penalty)
        return scores.scatter(1, generated, picked)


class TorchBackend(LMBackend):
    name: BackendName = "torch"

    def __init__(
        self, model: Any, tokenizer: PreTrainedTokenizerBase, version: str, threads: int = 1
    ) -> None:
        super().__init__(tokenizer, version)
        self.model = model
        self.threads = threads

    def _generate_kwargs(self, options: DecodeOptions, prompt_len: int) -> dict[str, Any]:
        from transformers import LogitsProcessorList

        kwargs: dict[str, Any] = {
            "max_new_tokens": options.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
            # transformers' own repetition_penalty also penalises every prompt token, which
            # pushes the model away from the article's own words (measured: 0.51 unsupported
            # on base headlines vs 0.13 with CTranslate2, which penalises generated tokens only).
            "logits_processor": LogitsProcessorList(
                [GeneratedRepetitionPenalty(options.repetition_penalty, prompt_len)]
            ),
        }
        if options.temperature > 0:
            kwargs.update(do_sample=True, temperature=options.temperature, top_p=options.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if options.suppress:
            kwargs["bad_words_ids"] = self._suppressed_ids(options.suppress)
        return kwargs

    def stream(self, prompt_ids: list[int], options: DecodeOptions) -> Iterator[str]:
        import queue

        import torch

        # `generate` pushes ids into a streamer; run it in a thread and yield as they arrive
        # (the pattern of transformers' TextIteratorStreamer, on ids so decoding stays ours).
        arrivals: queue.Queue[int | BaseException | None] = queue.Queue()

        closed = threading.Event()

        class _Closed(Exception):
            """Raised into `generate` once nobody reads: it stops at the next token."""

        class _Streamer:
            seen_prompt = False

            def put(self, value: Any) -> None:
                if closed.is_set():
                    raise _Closed
                if not self.seen_prompt:  # the first call carries the prompt
                    self.seen_prompt = True
                    return
                for token in value.reshape(-1).tolist():
                    arrivals.put(int(token))

            def end(self) -> None:
                arrivals.put(None)

        def run() -> None:
            try:
                torch.set_num_threads(self.threads)
                if options.temperature > 0:
                    torch.manual_seed(options.seed)
                input_ids = torch.tensor([prompt_ids])
                with torch.inference_mode():
                    self.model.generate(
                        input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        streamer=_Streamer(),
                        **self._generate_kwargs(options, len(prompt_ids)),
                    )
            except BaseException as error:  # re-raised in the consumer's thread
                arrivals.put(error)

        worker = threading.Thread(target=run, daemon=True, name="torch-generate")
        worker.start()
        decoder = _IncrementalDecoder(self.tokenizer)
        try:
            while (item := arrivals.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                if item == self.tokenizer.eos_token_id:
                    continue
                piece = decoder.push(item)
                if piece:
                    yield piece
        finally:
            # Also when the consumer stops early (the generator is closed): decoding stops too
            # instead of running to max_new_tokens on a thread nobody reads.
            closed.set()
            worker.join()


class CTranslate2Backend(LMBackend):
    name: BackendName = "ctranslate2"

    def __init__(self, generator: Any, tokenizer: PreTrainedTokenizerBase, version: str) -> None:
        super().__init__(tokenizer, version)
        self.generator = generator

    def _decode_kwargs(self, options: DecodeOptions) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_length": options.max_new_tokens,
            "repetition_penalty": options.repetition_penalty,
            "end_token": self.tokenizer.eos_token,
        }
        if options.temperature > 0:
            kwargs.update(
                sampling_topk=50,
                sampling_topp=options.top_p,
                sampling_temperature=options.temperature,
            )
            import ctranslate2

            # The generate calls take no seed; the process-wide one makes variants repeatable.
            ctranslate2.set_random_seed(options.seed + 1)
        if options.suppress:
            kwargs["suppress_sequences"] = [
                self.tokenizer.convert_ids_to_tokens(ids)
                for ids in self._suppressed_ids(options.suppress)
            ]
        return kwargs

    def generate_batch(self, prompts: list[list[int]], options: DecodeOptions) -> list[str]:
        """Prompts of equal length decode as one batch: every step runs their matmuls at once.
        Prompts of other lengths go in their own batches, because CTranslate2 reads the part of
        a longer prompt beyond the shortest one token per step, which measured slower than
        decoding each alone (26.1 s vs 18.4 s for 8 XSum prompts of 186-392 tokens; 8 of 392
        together: 17.6 s vs 22.9 s alone). News prompts mostly fill the prompt budget, so they
        share a length (`bench/batching`)."""
        texts: list[str] = [""] * len(prompts)
        by_length: dict[int, list[int]] = {}
        for n, ids in enumerate(prompts):
            by_length.setdefault(len(ids), []).append(n)
        kwargs = self._decode_kwargs(options)
        for rows in by_length.values():
            results = self.generator.generate_batch(
                [self.tokenizer.convert_ids_to_tokens(prompts[n]) for n in rows],
                include_prompt_in_result=False,
                **kwargs,
            )
            for n, result in zip(rows, results, strict=True):
                ids = result.sequences_ids[0]
                texts[n] = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        return texts

    def stream(self, prompt_ids: list[int], options: DecodeOptions) -> Iterator[str]:
        tokens = self.tokenizer.convert_ids_to_tokens(prompt_ids)
        kwargs = self._decode_kwargs(options)
        decoder = _IncrementalDecoder(self.tokenizer)
        steps = self.generator.generate_tokens(tokens, **kwargs)
        try:
            for step in steps:
                if step.is_last and step.token_id == self.tokenizer.eos_token_id:
                    break
                piece = decoder.push(step.token_id)
                if piece:
                    yield piece
        finally:
            steps.close()  # CTranslate2 stops decoding when its generator is closed


def _merged_model_dir(base_dir: Path, adapter_dir: Path | None, scratch: Path) -> Path:
    if adapter_dir is None:
        return base_dir
    model = load_causal_lm(base_dir, adapter_dir, merge=True)
    out = scratch / "merged"
    model.save_pretrained(out)
    load_tokenizer(base_dir).save_pretrained(out)
    return out


def convert_to_ctranslate2(base_dir: Path, adapter_dir: Path | None, cache_root: Path) -> Path:
    """int8 CTranslate2 copy of base (+ merged adapter), cached by the adapter's content."""
    import ctranslate2.converters

    version = model_fingerprint(base_dir, adapter_dir)
    out = Path(cache_root) / f"ct2-{version}"
    if (out / "model.bin").is_file():
        return out
    with (
        staged_directory(out) as staging,
        tempfile.TemporaryDirectory(prefix=".merge-", dir=out.parent) as scratch,
    ):
        source = _merged_model_dir(base_dir, adapter_dir, Path(scratch))
        ctranslate2.converters.TransformersConverter(str(source)).convert(
            str(staging), quantization="int8", force=True
        )
    return out


_conversion_lock = threading.Lock()


def load_backend(
    backend: BackendName,
    base_dir: Path,
    adapter_dir: Path | None,
    cache_root: Path,
    *,
    threads: int = 1,
    workers: int = 1,
) -> LMBackend:
    """The factory: one served model (base or base+adapter) on the chosen backend."""
    tokenizer = load_tokenizer(base_dir)
    version = model_fingerprint(base_dir, adapter_dir)
    if backend == "torch":
        model = load_causal_lm(base_dir, adapter_dir, merge=True)
        return TorchBackend(model, tokenizer, version, threads=threads)
    import ctranslate2

    with _conversion_lock:
        model_dir = convert_to_ctranslate2(base_dir, adapter_dir, cache_root)
    generator = ctranslate2.Generator(
        str(model_dir),
        device="cpu",
        compute_type="int8",
        inter_threads=workers,
        intra_threads=threads,
    )
    return CTranslate2Backend(generator, tokenizer, version)
