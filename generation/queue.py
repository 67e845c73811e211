"""Where generation jobs wait and run: one interface, two implementations.

- `LocalGenerationQueue` (embedded mode): a bounded pool of threads in this process.
- `RedisGenerationQueue` (shared mode): Dramatiq on Redis, served by `newsroom
  generation-worker` processes on any host. Dramatiq because its Redis broker acknowledges a
  message only when the job is done and requeues the messages of a worker whose heartbeat
  stopped (a worker killed mid-draft is retried by another within `worker_heartbeat_seconds`),
  runs sync code on threads (model work is sync), and is maintained. Tokens and results come
  back on a Redis stream per job (`newsroom:job:<id>`), which a client reads from the start
  whenever it attaches, so no token is lost.

Both refuse a job at once (`Overloaded`: 503 + Retry-After) when workers + `queue_size` jobs
are in flight, and a client that goes away cancels its job (checked between tokens).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import GenerationCancelled, Overloaded
from generation.jobs import GenerationFailed, GenerationJob, JobRunner, error_of
from generation.pool import GenerationPool

if TYPE_CHECKING:
    import redis

    from core.settings import GenerationConfig

log = logging.getLogger(__name__)

QUEUE_NAME = "newsroom-generation"
ACTOR_NAME = "generate"
NAMESPACE = "newsroom:dramatiq"
WORKERS_KEY = "newsroom:gen:workers"  # worker id -> last heartbeat (ms)


def job_stream_key(job_id: str) -> str:
    return f"newsroom:job:{job_id}"


def job_cancel_key(job_id: str) -> str:
    return f"newsroom:job:{job_id}:cancel"


@dataclass(frozen=True, slots=True)
class JobEvent:
    """`token` (text), `sentence` (a draft sentence, checked, as it completes), `restart` (a
    lost worker's job started over: drop the text so far), `done` (the result), `error` (a
    failure as data)."""

    kind: str
    data: Any


class GenerationQueue(ABC):
    @abstractmethod
    def check_capacity(self) -> None:
        """Raise `Overloaded` (or `GenerationFailed` when nothing can run jobs) now, before a
        response has started."""

    @abstractmethod
    def events(self, job: GenerationJob) -> AsyncIterator[JobEvent]:
        """Submit `job` and yield its events until `done` or `error`; closing the iterator
        early cancels the job."""

    async def run(self, job: GenerationJob) -> Any:
        """Submit `job` and await its result (raises what the job raised)."""
        from generation.jobs import raise_error

        events = self.events(job)
        try:
            async for event in events:
                if event.kind == "done":
                    return event.data
                if event.kind == "error":
                    raise_error(event.data)
        finally:
            await events.aclose()
        raise GenerationFailed("the generation job ended without a result")

    def run_blocking(self, job: GenerationJob) -> Any:
        """`run` from synchronous code (the CLI)."""
        return asyncio.run(self.run(job))

    @property
    @abstractmethod
    def depth(self) -> int:
        """Jobs running or waiting."""

    @abstractmethod
    def workers(self) -> int:
        """Workers able to run jobs now."""

    @abstractmethod
    def close(self) -> None: ...


class LocalGenerationQueue(GenerationQueue):
    """Model work on a bounded thread pool of this process, apart from the feed (generation
    takes seconds, a feed milliseconds)."""

    def __init__(self, workers: int, queue_size: int, runner: Callable[[], JobRunner]) -> None:
        self.pool = GenerationPool(workers, queue_size)
        self._runner = runner  # built on first use: models load when first needed

    def check_capacity(self) -> None:
        self.pool.check()

    async def events(self, job: GenerationJob) -> AsyncIterator[JobEvent]:
        loop = asyncio.get_running_loop()
        arrivals: asyncio.Queue[JobEvent] = asyncio.Queue()
        cancelled = threading.Event()

        def on_token(piece: str) -> None:
            loop.call_soon_threadsafe(arrivals.put_nowait, JobEvent("token", piece))

        def on_sentence(sentence: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(arrivals.put_nowait, JobEvent("sentence", sentence))

        def work() -> Any:
            return self._runner().run(job, on_token, cancelled.is_set, on_sentence)

        future = self.pool.submit(work)

        def finished(done: Any) -> None:
            if done.cancelled():
                return  # nobody is reading any more
            error = done.exception()
            event = JobEvent("error", error_of(error)) if error else JobEvent("done", done.result())
            loop.call_soon_threadsafe(arrivals.put_nowait, event)

        future.add_done_callback(finished)
        try:
            while True:
                event = await arrivals.get()
                yield event
                if event.kind in ("done", "error"):
                    return
        finally:
            cancelled.set()  # a client that left stops its job at the next token ...
            future.cancel()  # ... or, still queued, never starts it (its slot is freed now)

    def run_blocking(self, job: GenerationJob) -> Any:
        return self._runner().run(job)

    @property
    def depth(self) -> int:
        return self.pool.depth

    def workers(self) -> int:
        return self.pool.workers

    def close(self) -> None:
        self.pool.shutdown()


class RedisGenerationQueue(GenerationQueue):
    def __init__(self, url: str, client: redis.Redis, config: GenerationConfig) -> None:
        self.url = url
        self.client = client
        self.config = config
        self._broker: Any = None
        self._async: Any = None  # redis.asyncio client, bound to the loop that made it
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    # --- plumbing ---------------------------------------------------------------------------
    def broker(self) -> Any:
        with self._lock:
            if self._broker is None:
                self._broker = make_broker(self.url, self.config, client=self.client)
            return self._broker

    def _aio(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._async is None or self._async_loop is not loop:
            import redis.asyncio

            self._async = redis.asyncio.Redis.from_url(
                self.url, socket_connect_timeout=self.config.job_timeout_seconds
            )
            self._async_loop = loop
        return self._async

    def workers(self) -> int:
        cutoff = (time.time() - self.config.worker_heartbeat_seconds) * 1000
        beats = self.client.hgetall(WORKERS_KEY)
        return sum(1 for ms in beats.values() if float(ms) >= cutoff)

    @property
    def depth(self) -> int:
        # Dramatiq keeps every unacknowledged message (waiting or running) in this hash.
        return int(self.client.hlen(f"{NAMESPACE}:{QUEUE_NAME}.msgs"))

    def check_capacity(self) -> None:
        workers = self.workers()
        if workers == 0:
            raise GenerationFailed(
                "no generation worker is running: start `newsroom generation-worker` (it needs "
                "the same NEWSROOM_REDIS_URL and adapters as the API)",
            )
        depth = self.depth
        if depth >= workers + self.config.queue_size:
            waiting = depth - workers + 1
            raise Overloaded(
                f"generation queue is full ({depth} jobs in flight); retry shortly",
                retry_after_s=max(1, round(waiting * 2.0 / workers)),
            )

    # --- a job ------------------------------------------------------------------------------
    async def events(self, job: GenerationJob) -> AsyncIterator[JobEvent]:
        from dramatiq import Message

        await asyncio.to_thread(self.check_capacity)
        timeout = self.config.job_timeout_seconds
        job = GenerationJob(job.kind, job.args, job.model, job.job_id, time.time() + timeout)
        message = Message(
            queue_name=QUEUE_NAME,
            actor_name=ACTOR_NAME,
            args=(job.to_dict(),),
            kwargs={},
            options={},
        )
        await asyncio.to_thread(self.broker().enqueue, message)
        aio = self._aio()
        key = job_stream_key(job.job_id)
        last = "0-0"
        attempts = 0
        finished = False
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        try:
            while time.monotonic() < deadline:
                reply = await aio.xread({key: last}, block=1000, count=64)
                if not reply:
                    # Nothing for a while: a running job whose worker died is requeued by the
                    # broker; with no worker left at all, fail now rather than at the deadline.
                    stalled = time.monotonic() - quiet_since > self.config.worker_heartbeat_seconds
                    if stalled and await asyncio.to_thread(self.workers) == 0:
                        yield JobEvent(
                            "error",
                            error_of(GenerationFailed("the generation worker was lost; retry")),
                        )
                        finished = True
                        return
                    continue
                quiet_since = time.monotonic()
                for entry_id, fields in reply[0][1]:
                    last = entry_id
                    kind = fields[b"t"].decode()
                    data = json.loads(fields[b"d"]) if fields.get(b"d") else None
                    if kind == "start":
                        attempts += 1
                        if attempts > 1:
                            yield JobEvent("restart", {"attempt": attempts})
                    elif kind in ("token", "sentence", "done", "error"):
                        yield JobEvent(kind, data)
                        if kind in ("done", "error"):
                            finished = True
                            return
            yield JobEvent(
                "error", error_of(GenerationFailed(f"generation took over {timeout:.0f} s"))
            )
            finished = True
        finally:
            if not finished:  # the client left: stop the job at its next token
                with contextlib.suppress(Exception):
                    await aio.set(job_cancel_key(job.job_id), b"1", ex=600)

    def close(self) -> None:
        if self._broker is not None:
            with contextlib.suppress(Exception):
                self._broker.close()


def make_broker(url: str, config: GenerationConfig, client: Any = None) -> Any:
    """Dramatiq's Redis broker with this project's settings: a worker counts as dead after
    `worker_heartbeat_seconds` without a heartbeat, and every broker call may requeue a dead
    worker's messages (cheap at our job rates), so a lost job restarts within seconds."""
    from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker
    from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, ShutdownNotifications

    broker = RedisBroker(
        url=None if client is not None else url,
        client=client,
        namespace=NAMESPACE,
        heartbeat_timeout=int(config.worker_heartbeat_seconds * 1000),
        maintenance_chance=MAINTENANCE_SCALE // 10,
        # No Retries middleware: a job that fails reports its error to its client, which asks
        # again if it wants; a job whose *worker* died is requeued by the broker instead.
        middleware=[AgeLimit(), ShutdownNotifications(), Callbacks(), Pipelines()],
    )
    broker.declare_queue(QUEUE_NAME)
    return broker


def stream_event(client: Any, job_id: str, kind: str, data: Any = None) -> None:
    """Append to a job's stream (worker side); the stream expires ten minutes after its last
    entry."""
    key = job_stream_key(job_id)
    fields: dict[str, Any] = {"t": kind}
    if data is not None:
        fields["d"] = json.dumps(data)
    pipe = client.pipeline(transaction=False)
    pipe.xadd(key, fields, maxlen=10_000, approximate=True)
    pipe.expire(key, 600)
    pipe.execute()


__all__ = [
    "GenerationCancelled",
    "GenerationJob",
    "GenerationQueue",
    "JobEvent",
    "LocalGenerationQueue",
    "RedisGenerationQueue",
]
