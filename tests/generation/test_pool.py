"""The generation pool: bounded, and running at a lower scheduling priority than the loop."""

from __future__ import annotations

import os
import threading
import time

import pytest

from core.errors import Overloaded
from generation.pool import GenerationPool


def _own_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_generation_threads_run_niced_and_the_caller_does_not() -> None:
    before = _own_niceness()
    pool = GenerationPool(workers=1, queue_size=1, niceness=before + 7)
    try:
        assert pool.submit(_own_niceness).result(timeout=10) == before + 7
        # Threads the job starts (as CTranslate2 starts its workers) inherit it.
        seen: list[int] = []

        def spawn() -> None:
            child = threading.Thread(target=lambda: seen.append(_own_niceness()))
            child.start()
            child.join()

        pool.submit(spawn).result(timeout=10)
        assert seen == [before + 7]
    finally:
        pool.shutdown()
    assert _own_niceness() == before  # the serving thread keeps its priority
    plain = GenerationPool(workers=1, queue_size=1)
    assert plain.submit(_own_niceness).result(timeout=10) == before
    plain.shutdown()


def test_a_full_pool_refuses_at_once_with_a_retry_hint() -> None:
    release = threading.Event()
    pool = GenerationPool(workers=1, queue_size=1, seconds_per_job=3.0)
    try:
        running = [pool.submit(release.wait), pool.submit(release.wait)]
        with pytest.raises(Overloaded) as refused:
            pool.submit(release.wait)
        assert refused.value.retry_after_s >= 3 and pool.depth == 2
    finally:
        release.set()
        for job in running:
            job.result(timeout=10)
        pool.shutdown()
    # Slots are freed by the futures' done-callbacks, which may run just after result().
    deadline = time.monotonic() + 5
    while pool.depth and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.depth == 0
