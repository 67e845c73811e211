"""Dynamic batching: requests waiting at the same time decode as one batch, each caller gets
its own completion, a failure reaches every caller of its batch."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from generation.backends import DecodeOptions, LMBackend
from generation.batching import DecodeBatcher


class RecordingBackend(LMBackend):
    """Completes prompt [n] with "out-n"; the first batch waits until `release` is set, so
    the requests sent meanwhile must queue up behind it."""

    name = "torch"

    def __init__(self) -> None:
        super().__init__(None, "recording")  # type: ignore[arg-type]
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        self.fail = False

    def stream(self, prompt_ids: list[int], options: DecodeOptions) -> Iterator[str]:
        raise AssertionError("the batcher must decode through generate_batch")

    def generate_batch(self, prompts: list[list[int]], options: DecodeOptions) -> list[str]:
        self.batches.append([p[0] for p in prompts])
        self.started.set()
        self.release.wait(5)
        if self.fail:
            raise RuntimeError("model lost")
        return [f"out-{p[0]}" for p in prompts]


def _send(batcher: DecodeBatcher, backend: LMBackend, n: int, options: DecodeOptions, out):  # type: ignore[no-untyped-def]
    def run() -> None:
        try:
            out[n] = batcher.generate(backend, [n], options)
        except RuntimeError as error:
            out[n] = error

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_requests_waiting_together_share_one_batch() -> None:
    backend, batcher, out = RecordingBackend(), DecodeBatcher(max_batch=3), {}
    options = DecodeOptions(max_new_tokens=4)
    first = _send(batcher, backend, 0, options, out)
    assert backend.started.wait(5)  # request 0 decodes alone: nothing else was waiting
    others = [_send(batcher, backend, n, options, out) for n in range(1, 6)]
    while len(batcher._waiting) < 5:  # all five queued behind the running batch
        threading.Event().wait(0.01)
    backend.release.set()
    for thread in [first, *others]:
        thread.join(5)
    assert backend.batches == [[0], [1, 2, 3], [4, 5]]  # oldest first, at most max_batch
    assert out == {n: f"out-{n}" for n in range(6)}  # every caller gets its own completion


def test_different_options_never_share_a_batch() -> None:
    backend, batcher, out = RecordingBackend(), DecodeBatcher(max_batch=8), {}
    greedy, short = DecodeOptions(max_new_tokens=4), DecodeOptions(max_new_tokens=2)
    first = _send(batcher, backend, 0, greedy, out)
    assert backend.started.wait(5)
    others = [_send(batcher, backend, n, greedy if n % 2 else short, out) for n in range(1, 5)]
    while len(batcher._waiting) < 4:
        threading.Event().wait(0.01)
    backend.release.set()
    for thread in [first, *others]:
        thread.join(5)
    assert backend.batches == [[0], [1, 3], [2, 4]]
    assert out == {n: f"out-{n}" for n in range(5)}


def test_prompts_of_other_lengths_wait_for_a_batch_of_their_own() -> None:
    backend, batcher, out = RecordingBackend(), DecodeBatcher(max_batch=8), {}
    options = DecodeOptions()
    first = _send(batcher, backend, 0, options, out)
    assert backend.started.wait(5)
    threads = []
    for n in range(1, 5):
        prompt = [n] * (1 if n % 2 else 3)
        thread = threading.Thread(
            target=lambda n=n, prompt=prompt: out.__setitem__(
                n, batcher.generate(backend, prompt, options)
            )
        )
        thread.start()
        threads.append(thread)
        while len(batcher._waiting) < n:  # keep the arrival order fixed
            threading.Event().wait(0.01)
    backend.release.set()
    for thread in [first, *threads]:
        thread.join(5)
    assert backend.batches == [[0], [1, 3], [2, 4]]


def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_runs() -> None:
    backend, batcher, out = RecordingBackend(), DecodeBatcher(max_batch=4), {}
    options = DecodeOptions()
    backend.fail = True
    backend.release.set()
    threads = [_send(batcher, backend, n, options, out) for n in range(2)]
    for thread in threads:
        thread.join(5)
    assert all(isinstance(out[n], RuntimeError) for n in range(2))
    backend.fail = False
    assert batcher.generate(backend, [7], options) == "out-7"


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DecodeBatcher(max_batch=0)
