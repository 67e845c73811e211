"""A bounded worker pool for generation, apart from the feed's CPU pool.

Generation takes seconds; the feed takes milliseconds. Sharing one pool would let a burst of
drafts delay every page render, so generation gets its own few threads and a bounded queue:
when `workers + queue_size` jobs are in flight, a new job is refused at once (503 +
Retry-After) instead of waiting behind minutes of work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from core.errors import Overloaded

T = TypeVar("T")


class GenerationPool:
    def __init__(self, workers: int, queue_size: int, seconds_per_job: float = 2.0) -> None:
        self.workers = workers
        self.capacity = workers + queue_size
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="generate")
        self._in_flight = 0
        self._lock = threading.Lock()
        self._seconds_per_job = seconds_per_job

    @property
    def depth(self) -> int:
        """Jobs running or waiting."""
        return self._in_flight

    def _refuse_if_full(self) -> None:
        # Caller holds the lock.
        if self._in_flight >= self.capacity:
            waiting = self._in_flight - self.workers + 1
            raise Overloaded(
                f"generation queue is full ({self._in_flight} jobs in flight); retry shortly",
                retry_after_s=max(1, round(waiting * self._seconds_per_job / self.workers)),
            )

    def check(self) -> None:
        """Raise `Overloaded` if a job submitted now would be refused."""
        with self._lock:
            self._refuse_if_full()

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        with self._lock:
            self._refuse_if_full()
            self._in_flight += 1
        try:
            future = self._executor.submit(fn, *args)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(lambda _f: self._release())
        return future

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
