"""Generation queues: a cached or refused request never waits, a client that leaves cancels its
job, and the Redis queue carries tokens and results from a worker process's jobs."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from core.errors import GenerationCancelled, Overloaded
from core.settings import GenerationConfig
from generation.jobs import GenerationFailed, GenerationJob, JobRunner
from generation.queue import WORKERS_KEY, LocalGenerationQueue, RedisGenerationQueue


class SlowRunner(JobRunner):
    """Streams `tokens` words, `delay` seconds apart, checking cancellation between them."""

    def __init__(self, tokens: int = 50, delay: float = 0.02) -> None:
        self.tokens = tokens
        self.delay = delay
        self.cancelled_at: int | None = None
        self.finished = threading.Event()

    def run(self, job, on_token=None, cancelled=None, on_sentence=None) -> Any:  # type: ignore[no-untyped-def]
        try:
            for n in range(self.tokens):
                if cancelled is not None and cancelled():
                    self.cancelled_at = n
                    raise GenerationCancelled("the client went away")
                if on_token is not None:
                    on_token(f"w{n} ")
                time.sleep(self.delay)
            return {"text": " ".join(f"w{n}" for n in range(self.tokens)), "kind": job.kind}
        finally:
            self.finished.set()


def _job() -> GenerationJob:
    return GenerationJob("draft", {"brief": "b"}, "model-v")


def test_local_queue_streams_tokens_then_the_result() -> None:
    runner = SlowRunner(tokens=5, delay=0)
    queue = LocalGenerationQueue(1, 2, lambda: runner)

    async def collect() -> list[str]:
        return [event.kind async for event in queue.events(_job())]

    try:
        assert asyncio.run(collect()) == ["token"] * 5 + ["done"]
        assert asyncio.run(queue.run(_job()))["kind"] == "draft"
    finally:
        queue.close()


def test_a_client_that_leaves_cancels_its_job_and_frees_the_slot() -> None:
    runner = SlowRunner(tokens=500, delay=0.01)
    queue = LocalGenerationQueue(1, 0, lambda: runner)

    async def leave_after_three_tokens() -> None:
        events = queue.events(_job())
        seen = 0
        async for _event in events:
            seen += 1
            if seen == 3:
                break
        await events.aclose()

    try:
        asyncio.run(leave_after_three_tokens())
        assert runner.finished.wait(5)
        assert runner.cancelled_at is not None and runner.cancelled_at < 100
        deadline = time.monotonic() + 5
        while queue.depth and time.monotonic() < deadline:
            time.sleep(0.01)
        assert queue.depth == 0
        queue.check_capacity()  # the slot is free again
    finally:
        queue.close()


def test_a_full_local_queue_refuses_before_anything_starts() -> None:
    release = threading.Event()

    class Blocking(SlowRunner):
        def run(self, job, on_token=None, cancelled=None, on_sentence=None):  # type: ignore[no-untyped-def]
            release.wait(10)
            return {}

    queue = LocalGenerationQueue(1, 0, lambda: Blocking())

    async def occupy_then_check() -> None:
        events = queue.events(_job())
        task = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.1)
        with pytest.raises(Overloaded):
            queue.check_capacity()
        release.set()
        await task
        await events.aclose()

    try:
        asyncio.run(occupy_then_check())
    finally:
        release.set()
        queue.close()


def _config() -> GenerationConfig:
    return GenerationConfig(worker_heartbeat_seconds=3, job_timeout_seconds=30, queue_size=2)


def test_redis_queue_without_a_worker_refuses_and_says_what_to_start(
    redis_server, redis_client
) -> None:  # type: ignore[no-untyped-def]
    queue = RedisGenerationQueue(redis_server.url, redis_client, _config())
    with pytest.raises(GenerationFailed, match="generation-worker"):
        queue.check_capacity()


def test_redis_queue_runs_jobs_on_a_worker_and_relays_tokens(redis_server, redis_client) -> None:  # type: ignore[no-untyped-def]
    import dramatiq

    from generation.queue import ACTOR_NAME, QUEUE_NAME, make_broker
    from generation.worker import JobHandler

    config = _config()
    broker = make_broker(redis_server.url, config)
    dramatiq.Actor(
        JobHandler(SlowRunner(tokens=6, delay=0), redis_server.client()),
        broker=broker,
        actor_name=ACTOR_NAME,
        queue_name=QUEUE_NAME,
        priority=0,
        options={},
    )
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    redis_client.hset(WORKERS_KEY, "test-worker", str(time.time() * 1000))
    queue = RedisGenerationQueue(redis_server.url, redis_client, config)

    async def collect() -> list[str]:
        return [event.kind async for event in queue.events(_job())]

    try:
        kinds = asyncio.run(collect())
        assert kinds == ["token"] * 6 + ["done"]
        assert asyncio.run(queue.run(_job()))["kind"] == "draft"
        # Over capacity (1 worker + queue_size 2 jobs in flight): refused with a retry hint.
        redis_client.hset(
            "newsroom:dramatiq:newsroom-generation.msgs", mapping={"a": "x", "b": "y", "c": "z"}
        )
        with pytest.raises(Overloaded):
            queue.check_capacity()
    finally:
        worker.stop()
        broker.close()
        queue.close()
