"""Feed scoring in worker processes: past one process's GIL.

A feed is ~3 ms of GIL-holding Python; one serving process tops out near 250 feeds/s on any
number of cores, and queues well before that. `FeedWorkers` starts N replica processes, each
holding its own copy of what a feed reads (catalog, index, live counts, profiles), and sends
each feed request to the least busy one.

Consistency: the serving process stays the only writer. Every change a feed can see (events,
article upserts and deletions, reader deletion, retention purges) is applied there first, then
sent to every replica down the same ordered stream that carries feed requests, before the write
is acknowledged. A feed asked for after a write therefore reaches its replica after that write:
a reader's click is out of their next feed whichever replica serves it. A replica that fails to
apply a change exits rather than serve stale feeds; its pending and later feeds are scored in
the serving process, which always holds the full state.

Wire format: 4-byte big-endian length + pickle, over one Unix socket pair per replica. Only the
serving process and its own children are on either end.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import multiprocessing
import os
import pickle
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.settings import RankingConfig
from retrieval.catalog import CatalogRow
from retrieval.index import IndexConfig

log = logging.getLogger(__name__)

HEADER = struct.Struct(">I")


class WorkerLost(RuntimeError):
    """The replica that held a feed request died; score it in the serving process."""


@dataclass(frozen=True)
class ReplicaSpec:
    """Everything a replica needs to load the same state the serving process has."""

    database_url: str
    user_id_key: bytes | None
    index_path: Path
    model_name: str
    dim: int
    index_config: IndexConfig
    ranking: RankingConfig
    # How a replica answers: the feed's final bytes (the API's JSON), so serialising runs in
    # parallel too. Sent by reference: a module-level function.
    render: Callable[[Any], bytes] | None = None


# --- framing ----------------------------------------------------------------------------------
def _frame(message: object) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(payload)) + payload


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buffer = bytearray(n)
    view = memoryview(buffer)
    got = 0
    while got < n:
        read = sock.recv_into(view[got:])
        if read == 0:
            return None
        got += read
    return bytes(buffer)


def _pop_message(buffer: bytearray) -> Any:
    """The first whole message in `buffer`, removed from it; None while it is incomplete."""
    if len(buffer) < HEADER.size:
        return None
    end = HEADER.size + HEADER.unpack_from(buffer)[0]
    if len(buffer) < end:
        return None
    message = pickle.loads(buffer[HEADER.size : end])
    del buffer[:end]
    return message


def _recv_message(sock: socket.socket) -> Any:
    header = _recv_exact(sock, HEADER.size)
    if header is None:
        return None
    payload = _recv_exact(sock, HEADER.unpack(header)[0])
    return None if payload is None else pickle.loads(payload)


# --- the replica process ----------------------------------------------------------------------
def replica_main(sock: socket.socket, spec: ReplicaSpec) -> None:
    """Entry point of a replica process: load, say ready, then serve messages in order."""
    # Ctrl-C reaches the whole process group: the serving process decides when replicas stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        replica = _Replica.load(spec)
    except Exception as exc:
        log.exception("feed replica %d failed to load", os.getpid())
        sock.sendall(_frame(("failed", repr(exc))))
        return
    sock.sendall(_frame(("ready", os.getpid(), replica.size)))
    channel = _Channel(sock)
    for message in channel.messages():
        if message[0] == "stop":
            return
        if message[0] == "feed":
            _, request_id, user_id, k, category, exclude_read = message
            try:
                feed = replica.recommender.feed(user_id, k, category, exclude_read)
                reply = (request_id, spec.render(feed) if spec.render else feed)
            except Exception as exc:  # one bad request must not take the replica down
                log.exception("feed failed in replica %d", os.getpid())
                reply = (request_id, f"{type(exc).__name__}: {exc}")
            channel.reply(reply)
            continue
        try:
            replica.apply(message)
        except Exception:
            # A change not applied would leave this copy behind the serving process for good.
            log.exception("feed replica %d could not apply %r; exiting", os.getpid(), message[0])
            return


class _Channel:
    """The replica's end of the socket. It never blocks on writing: replies the serving
    process is not reading yet wait here, and incoming messages keep being read. Otherwise a
    replica stuck sending replies, while the serving process is stuck sending it a large
    change (its event loop waiting for that send's lock), would wait on each other for ever."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.inbox = bytearray()
        self.outbox = bytearray()

    def messages(self) -> Iterator[Any]:
        """Messages in arrival order, until the serving process closes its end."""
        while True:
            while (message := _pop_message(self.inbox)) is not None:
                yield message
            readable, writable, _ = select.select(
                [self.sock], [self.sock] if self.outbox else [], []
            )
            if writable:
                self._flush()
            if readable:
                try:
                    data = self.sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                if not data:
                    return
                self.inbox += data

    def reply(self, message: object) -> None:
        self.outbox += _frame(message)
        self._flush()

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self.outbox)
        except BlockingIOError:
            return
        del self.outbox[:sent]


class _Replica:
    def __init__(self, recommender: Any, size: int) -> None:
        self.recommender = recommender
        self.size = size

    @classmethod
    def load(cls, spec: ReplicaSpec) -> _Replica:
        from core.storage import Storage
        from core.threads import limit_threads
        from ranking.recommend import build_recommender
        from retrieval.catalog import ArticleCatalog
        from retrieval.sync import open_index

        limit_threads(spec.ranking.torch_threads)
        storage = Storage(spec.database_url, spec.user_id_key)
        catalog = ArticleCatalog()
        catalog.upsert(storage.catalog_rows())
        # The serving process saved the snapshot before starting replicas; reconciling with the
        # database is a check here, never a write (the snapshot file is the serving process's).
        index, _ = open_index(
            storage, spec.index_path, spec.model_name, spec.dim, spec.index_config
        )
        recommender = build_recommender(spec.ranking, storage, index, catalog)
        if recommender is None:
            raise RuntimeError(f"no ranking head at {spec.ranking.model_dir}")
        gc.collect()
        gc.freeze()  # as in the serving process: keep full collections off the loaded state
        return cls(recommender, len(index))

    def apply(self, message: tuple) -> None:
        kind = message[0]
        recommender = self.recommender
        if kind == "events":
            _, interactions, user_ids = message
            # Their stored profiles already hold these events: reloaded on the next feed.
            recommender.profiles.forget(user_ids)
            recommender.state.apply_all(interactions)
        elif kind == "articles":
            _, keys, vectors, hashes, rows = message
            if len(keys):
                recommender.index.add(keys, vectors, hashes)
            recommender.catalog.upsert(rows)
        elif kind == "remove_article":
            _, key = message
            recommender.index.remove(np.array([key], dtype=np.int64))
            recommender.catalog.remove(key)
        elif kind == "reset_interactions":
            _, user_ids = message  # None: every profile (retention rewrote stored ones)
            if user_ids is None:
                recommender.profiles.clear()
            else:
                recommender.profiles.forget(user_ids)
            recommender.reset_interactions()
        else:
            raise ValueError(f"unknown message {kind!r}")


# --- the serving side -------------------------------------------------------------------------
@dataclass(eq=False)
class _Worker:
    process: multiprocessing.process.BaseProcess
    sock: socket.socket
    pid: int = 0
    alive: bool = True  # gets feeds and changes
    closed: bool = False  # socket closed and no longer read
    in_flight: int = 0
    buffer: bytearray = field(default_factory=bytearray)  # replies read so far
    # Feeds (event loop) and changes (write threads) share the socket.
    lock: threading.Lock = field(default_factory=threading.Lock)


class FeedWorkers:
    """N replica processes scoring feeds for the serving process (see the module docstring)."""

    def __init__(self, spec: ReplicaSpec, count: int, start_timeout_s: float = 600.0) -> None:
        if count < 1:
            raise ValueError("count must be >= 1")
        self.spec = spec
        self.count = count
        self.start_timeout_s = start_timeout_s
        self._workers: list[_Worker] = []
        self._pending: dict[int, tuple[_Worker, asyncio.Future]] = {}
        self._ids = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.served = 0  # feeds answered by replicas

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Spawn the replicas and wait until each has loaded (blocking). No write may happen
        between this call and the first `broadcast`: a replica loads the state of now."""
        context = multiprocessing.get_context("spawn")  # never fork a process holding threads
        started = time.perf_counter()
        for _ in range(self.count):
            ours, theirs = socket.socketpair()
            process = context.Process(
                target=replica_main, args=(theirs, self.spec), name="newsroom-feed", daemon=True
            )
            process.start()
            theirs.close()
            self._workers.append(_Worker(process, ours))
        for worker in self._workers:
            worker.sock.settimeout(self.start_timeout_s)
            try:
                message = _recv_message(worker.sock)
            except TimeoutError:
                message = None
            worker.sock.settimeout(None)
            if message is None or message[0] != "ready":
                detail = message[1] if message else "no answer"
                log.error("feed replica did not start (%s); scoring in-process instead", detail)
                self._retire(worker)
                worker.process.kill()  # a replica still loading must not linger
                worker.process.join(5)
                continue
            worker.pid = message[1]
        log.info(
            "%d of %d feed replicas ready in %.1fs",
            self.live,
            self.count,
            time.perf_counter() - started,
        )

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read replies on `loop` (the serving event loop)."""
        self._loop = loop
        for worker in self._workers:
            if worker.alive:
                loop.add_reader(worker.sock.fileno(), self._on_readable, worker)

    def close(self, timeout_s: float = 10.0) -> None:
        for worker in self._workers:
            # Not waiting on a send that cannot finish: such a replica is killed below.
            if worker.alive and worker.lock.acquire(timeout=1.0):
                try:
                    with contextlib.suppress(OSError):
                        worker.sock.sendall(_frame(("stop",)))
                finally:
                    worker.lock.release()
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
            self._retire(worker)

    @property
    def live(self) -> int:
        return sum(w.alive for w in self._workers)

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self._workers if w.alive]

    # --- feeds ----------------------------------------------------------------------------
    async def feed(self, user_id: str, k: int, category: str | None, exclude_read: bool) -> Any:
        """The feed from the least busy replica, as `spec.render` made it (the `Feed` itself
        without one); `WorkerLost` when none can answer."""
        live = [w for w in self._workers if w.alive]
        if not live or self._loop is None:
            raise WorkerLost("no feed replica is running")
        live.sort(key=lambda w: w.in_flight)
        # Least busy first, but not one whose socket a write thread holds (a change being sent,
        # replicas one after another): this is the event loop, and every request would wait.
        worker = next((w for w in live if w.lock.acquire(blocking=False)), None)
        if worker is None:
            worker = live[0]
            worker.lock.acquire()
        request_id = next(self._ids)
        future = self._loop.create_future()
        self._pending[request_id] = (worker, future)
        worker.in_flight += 1
        try:
            try:
                worker.sock.sendall(
                    _frame(("feed", request_id, user_id, k, category, exclude_read))
                )
            except OSError as exc:
                self._lost(worker)
                raise WorkerLost(str(exc)) from exc
            finally:
                worker.lock.release()
            result = await future
        finally:
            worker.in_flight -= 1
            self._pending.pop(request_id, None)
        if isinstance(result, str):  # an error's text (answers are bytes or a Feed)
            raise RuntimeError(f"feed replica {worker.pid}: {result}")
        self.served += 1
        return result

    # --- changes --------------------------------------------------------------------------
    def events(self, interactions: Sequence[tuple[str, int, str]], user_ids: Sequence[str]) -> None:
        self._broadcast(("events", list(interactions), list(user_ids)))

    def articles(
        self, keys: np.ndarray, vectors: np.ndarray, hashes: list[str], rows: list[CatalogRow]
    ) -> None:
        self._broadcast(("articles", keys, vectors, hashes, rows))

    def remove_article(self, key: int) -> None:
        self._broadcast(("remove_article", key))

    def reset_interactions(self, user_ids: Sequence[str] | None) -> None:
        """Counts were rebuilt from the database (reader deleted, events purged); the cached
        profiles of `user_ids` (None: all of them) are stale."""
        self._broadcast(("reset_interactions", None if user_ids is None else list(user_ids)))

    def _broadcast(self, message: tuple) -> None:
        frame = _frame(message)
        for worker in self._workers:
            if not worker.alive:
                continue
            try:
                with worker.lock:
                    worker.sock.sendall(frame)
            except OSError:
                # Marked at once: no later feed may reach a copy that missed this change.
                worker.alive = False
                log.error("feed replica %d is gone; scoring its share in-process", worker.pid)
                self._lost_threadsafe(worker)

    # --- internals ------------------------------------------------------------------------
    def _on_readable(self, worker: _Worker) -> None:
        try:
            data = worker.sock.recv(1 << 20)
        except OSError:
            data = b""
        if not data:
            log.error("feed replica %d exited; scoring its share in-process", worker.pid)
            self._lost(worker)
            return
        worker.buffer += data
        while (message := _pop_message(worker.buffer)) is not None:
            request_id, result = message
            pending = self._pending.get(request_id)
            if pending is not None and not pending[1].done():
                pending[1].set_result(result)

    def _lost_threadsafe(self, worker: _Worker) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._lost, worker)
        else:
            self._retire(worker)

    def _lost(self, worker: _Worker) -> None:
        """On the event loop: stop reading, fail its waiting feeds (they are re-scored here)."""
        self._retire(worker)
        for pending_worker, future in list(self._pending.values()):
            if pending_worker is worker and not future.done():
                future.set_exception(WorkerLost(f"feed replica {worker.pid} exited"))

    def _retire(self, worker: _Worker) -> None:
        """Stop routing to `worker` and close its socket; on the event loop once attached."""
        worker.alive = False
        if worker.closed:
            return
        worker.closed = True
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(ValueError, RuntimeError):
                self._loop.remove_reader(worker.sock.fileno())
        with contextlib.suppress(OSError):
            worker.sock.close()
