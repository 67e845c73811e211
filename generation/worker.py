"""`newsroom generation-worker`: runs generation jobs from the Redis queue (shared mode).

It needs no database and no index (a job carries its texts), only Redis and the models, so it
can run on other (GPU) hosts. Each worker loads the served models once, announces itself every
two seconds under `newsroom:gen:workers` (the API refuses jobs at once when no worker is
alive), and streams every token of a job to the job's Redis stream. Dramatiq acknowledges a job
when it is done: if this process is killed mid-job, the broker hands the job to another worker
once this one's heartbeat is `worker_heartbeat_seconds` old, and the client sees the draft
start over.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from typing import Any

from core.errors import GenerationCancelled
from core.settings import Settings
from generation.jobs import GenerationJob, JobRunner, error_of
from generation.queue import (
    ACTOR_NAME,
    QUEUE_NAME,
    WORKERS_KEY,
    job_cancel_key,
    make_broker,
    stream_event,
)

log = logging.getLogger(__name__)
CANCEL_CHECK_TOKENS = 8  # a Redis read every this many tokens: cancellation within ~0.2 s


def build_runner(settings: Settings) -> JobRunner:
    from generation.factory import build_batcher, build_model_set
    from generation.writer import NewsWriter
    from retrieval.embedder import Embedder

    rc = settings.retrieval
    embedder = Embedder(rc.model_path(), rc.batch_size, rc.lead_words, rc.query_cache_size)
    writer = NewsWriter(
        build_model_set(settings.generation, settings.data_dir),
        embedder.encode,
        batcher=build_batcher(settings.generation),
    )
    return JobRunner(writer)


class JobHandler:
    """The actor's body: one job, its events on the job's stream."""

    def __init__(self, runner: JobRunner, client: Any) -> None:
        self.runner = runner
        self.client = client

    def __call__(self, payload: dict[str, Any]) -> None:
        job = GenerationJob.from_dict(payload)
        cancel_key = job_cancel_key(job.job_id)
        seen = 0

        def cancelled() -> bool:
            nonlocal seen
            seen += 1
            return seen % CANCEL_CHECK_TOKENS == 1 and bool(self.client.exists(cancel_key))

        def on_token(piece: str) -> None:
            stream_event(self.client, job.job_id, "token", piece)

        def on_sentence(sentence: dict[str, Any]) -> None:
            stream_event(self.client, job.job_id, "sentence", sentence)

        if job.expired or self.client.exists(cancel_key):
            log.info("job %s skipped: its client gave up", job.job_id)
            return
        stream_event(self.client, job.job_id, "start", {"worker": os.getpid()})
        try:
            result = self.runner.run(job, on_token, cancelled, on_sentence)
        except GenerationCancelled as exc:
            stream_event(self.client, job.job_id, "error", error_of(exc))
            return
        except Exception as exc:
            log.exception("job %s failed", job.job_id)
            stream_event(self.client, job.job_id, "error", error_of(exc))
            return
        stream_event(self.client, job.job_id, "done", result)


def run_worker(settings: Settings, threads: int = 1, warm: bool = True) -> None:
    """Serve jobs until SIGTERM or SIGINT."""
    import dramatiq

    from core.shared import connect

    if settings.redis_url is None:
        raise SystemExit(
            "generation-worker serves shared mode: set NEWSROOM_REDIS_URL (and the same "
            "NEWSROOM_DATABASE_URL and adapters as the API)"
        )
    config = settings.generation
    client = connect(settings.redis_url, settings.shared.redis_timeout_seconds)
    runner = build_runner(settings)
    if warm:
        started = time.perf_counter()
        for role in ("headline", "summary", "draft", "base"):
            runner.writer.models.get(role)
        elapsed = time.perf_counter() - started
        log.info("models ready in %.1fs: %s", elapsed, runner.writer.models.loaded())
    broker = make_broker(settings.redis_url, config)
    dramatiq.Actor(
        JobHandler(runner, client),
        broker=broker,
        actor_name=ACTOR_NAME,
        queue_name=QUEUE_NAME,
        priority=0,
        options={"max_age": int(config.job_timeout_seconds * 1000)},
    )
    worker = dramatiq.Worker(broker, worker_threads=threads)
    # One job at a time per thread: a busy worker must not hold a second job back from an
    # idle one.
    worker.queue_prefetch = threads
    identity = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.is_set():
            try:
                client.hset(WORKERS_KEY, identity, str(time.time() * 1000))
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
            stop.wait(2.0)
        try:
            client.hdel(WORKERS_KEY, identity)
        except Exception as exc:
            log.debug("could not unregister: %s", exc)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the current job, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    beat = threading.Thread(target=heartbeat, name="generation-heartbeat", daemon=True)
    beat.start()
    worker.start()
    log.info("generation worker %s serving %s with %d thread(s)", identity, QUEUE_NAME, threads)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        worker.stop(timeout=int(config.job_timeout_seconds * 1000))
        broker.close()
        stop.set()
        beat.join(timeout=5)
