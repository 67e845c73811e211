"""Dynamic batching: decodes asked for at the same time on one model run as one batch.

Each decoding step of a batch runs its sequences' matmuls together, so aggregate tokens/s can
grow with the batch while each request waits longer. How much depends on the prompt: on this
2-core CPU, 8 equal 105-token prompts with 48 new tokens decoded 2.6x faster together, 8 news
summaries of 392 tokens (the prompt's forward pass dominating) only 1.19x (`python -m
bench.batching`). There is no timer: a decoder thread that is free takes the oldest waiting
request and every other one waiting for the same model, options and prompt length (up to
`max_batch`); requests that arrive while it decodes join the next batch. Under no load that is
batch 1 with no added latency; under load, batches form by themselves. Only whole, non-streamed
completions batch (summaries, the greedy headline); a streamed draft decodes alone so its tokens
reach the writer as they come.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from generation.backends import DecodeOptions, LMBackend


@dataclass(eq=False, slots=True)
class _Request:
    backend: LMBackend
    options: DecodeOptions
    prompt_ids: list[int]
    done: threading.Event = field(default_factory=threading.Event)
    text: str = ""
    error: BaseException | None = None


class DecodeBatcher:
    """`decoders` threads (one per core given to generation) decode batches of up to
    `max_batch` waiting requests each."""

    def __init__(self, max_batch: int = 8, decoders: int = 1) -> None:
        if max_batch < 1 or decoders < 1:
            raise ValueError("max_batch and decoders must be at least 1")
        self.max_batch = max_batch
        self.decoders = decoders
        self._waiting: deque[_Request] = deque()
        self._ready = threading.Condition()
        self._threads: list[threading.Thread] = []
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # the latest batches' sizes

    def generate(self, backend: LMBackend, prompt_ids: list[int], options: DecodeOptions) -> str:
        """`backend.generate(prompt_ids, options)`, batched with whatever else is waiting."""
        request = _Request(backend, options, prompt_ids)
        with self._ready:
            self._start_decoders()
            self._waiting.append(request)
            self._ready.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.text

    def _start_decoders(self) -> None:
        # Caller holds the lock. Started on first use: a process that never generates has none.
        while len(self._threads) < self.decoders:
            thread = threading.Thread(target=self._decode_forever, daemon=True, name="decode")
            thread.start()
            self._threads.append(thread)

    def _take_batch(self) -> list[_Request]:
        """The oldest request and the next ones for the same model and options (in order)."""
        with self._ready:
            while not self._waiting:
                self._ready.wait()
            first = self._waiting.popleft()
            batch = [first]
            rest: deque[_Request] = deque()
            while self._waiting:
                request = self._waiting.popleft()
                # Equal prompt lengths too: CTranslate2 batches only those well (backends.py).
                same = (
                    request.backend is first.backend
                    and request.options == first.options
                    and len(request.prompt_ids) == len(first.prompt_ids)
                )
                if same and len(batch) < self.max_batch:
                    batch.append(request)
                else:
                    rest.append(request)
            self._waiting = rest
            self.batch_sizes.append(len(batch))
            return batch

    def _decode_forever(self) -> None:
        while True:
            batch = self._take_batch()
            first = batch[0]
            try:
                texts = first.backend.generate_batch([r.prompt_ids for r in batch], first.options)
            except BaseException as error:  # every caller of the batch sees the failure
                for request in batch:
                    request.error = error
                    request.done.set()
                continue
            for request, text in zip(batch, texts, strict=True):
                request.text = text
                request.done.set()
