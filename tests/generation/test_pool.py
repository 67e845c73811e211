"""The generation pool is bounded: a full pool refuses at once instead of queueing."""

from __future__ import annotations

import threading
import time

import pytest

from core.errors import Overloaded
from generation.pool import GenerationPool


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
