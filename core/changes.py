"""Following the database's logs: how every process keeps its in-memory state in step.

Two sequence-numbered tables are the logs: `events` (the live popularity, click-through and
co-click counts are folds over it) and `changes` (article upserts and deletions for the FAISS
index and the catalog, reader deletions and retention purges for the counts). Both are written
in the transaction that makes the change, so a log can never miss one, and a process that
starts late or falls behind reads on from where it was.

Why tables, and not `LISTEN/NOTIFY` or a Redis stream: a table is written atomically with the
change itself (a stream written after the commit loses entries when a process dies in between),
it is replayable from any position (NOTIFY is fire-and-forget: a process that was down misses
it), and it lives in the source of truth, so a Redis restart loses nothing. A Redis message on
`newsroom:changes` only wakes the followers early; they also poll every
`shared.change_poll_seconds`.

Sequence numbers are handed out at insert and committed in any order, so a reader of the log can
see seq 105 before 104 commits. `LogCursor` remembers such gaps and asks for them again until
they appear or `gap_timeout` passes (a rolled-back insert, or a row deleted before it was read,
leaves a gap for good).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from core.storage import LoggedChange, LoggedEvent, Storage

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)


class Sequenced(Protocol):
    @property
    def seq(self) -> int: ...


S = TypeVar("S", bound=Sequenced)


@dataclass
class LogCursor:
    """Where a follower is in one log: everything up to `high` has been applied except the
    seqs in `gaps` (first noticed at monotonic time), which may still commit."""

    high: int = 0
    gaps: dict[int, float] = field(default_factory=dict)

    def accept(self, rows: Sequence[S], now: float) -> list[S]:
        """The rows to apply, in seq order: new ones above `high`, and gaps that committed."""
        fresh: list[S] = []
        for row in sorted(rows, key=lambda r: r.seq):
            if row.seq > self.high:
                for missing in range(self.high + 1, row.seq):
                    self.gaps[missing] = now
                self.high = row.seq
                fresh.append(row)
            elif self.gaps.pop(row.seq, None) is not None:
                fresh.append(row)
        return fresh

    def expire(self, now: float, timeout_s: float) -> int:
        """Stop waiting for gaps older than `timeout_s`; returns how many were dropped."""
        stale = [seq for seq, since in self.gaps.items() if now - since > timeout_s]
        for seq in stale:
            del self.gaps[seq]
        return len(stale)

    @property
    def position(self) -> int:
        """The highest seq below which nothing is still expected."""
        return min(self.gaps) - 1 if self.gaps else self.high


@dataclass(slots=True)
class FollowerStats:
    events_applied: int = 0
    changes_applied: int = 0
    gaps_dropped: int = 0
    last_catch_up: float = 0.0  # wall-clock time of the last completed catch-up
    errors: int = 0


class ChangeFollower:
    """Applies both logs to this process's state: `catch_up()` reads what is new and hands it,
    in seq order, to `on_events` and `on_changes`. In embedded mode the writer calls it after
    each commit (one process, nothing else writes); in shared mode a thread also calls it on
    every wake-up or poll, and the writer still calls it so that its own process sees its
    writes at once."""

    def __init__(
        self,
        storage: Storage,
        on_events: Callable[[list[LoggedEvent]], None],
        on_changes: Callable[[list[LoggedChange]], None],
        events: LogCursor,
        changes: LogCursor,
        gap_timeout_s: float = 10.0,
        batch: int = 10_000,
    ) -> None:
        self.storage = storage
        self.on_events = on_events
        self.on_changes = on_changes
        self.events = events
        self.changes = changes
        self.gap_timeout_s = gap_timeout_s
        self.batch = batch
        self.stats = FollowerStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def catch_up(self) -> int:
        """Apply everything new in both logs; returns how many entries were applied."""
        with self._lock:
            applied = 0
            while True:
                now = time.monotonic()
                rows = self.storage.events_after(self.events.high, self.batch)
                if self.events.gaps:
                    rows += self.storage.events_at(list(self.events.gaps))
                fresh = self.events.accept(rows, now)
                if fresh:
                    self.on_events(fresh)
                    self.stats.events_applied += len(fresh)
                    applied += len(fresh)
                changes = self.storage.changes_after(self.changes.high)
                if self.changes.gaps:
                    changes += self.storage.changes_at(list(self.changes.gaps))
                new_changes = self.changes.accept(changes, now)
                if new_changes:
                    self.on_changes(new_changes)
                    self.stats.changes_applied += len(new_changes)
                    applied += len(new_changes)
                self.stats.gaps_dropped += self.events.expire(now, self.gap_timeout_s)
                self.stats.gaps_dropped += self.changes.expire(now, self.gap_timeout_s)
                if len(rows) < self.batch:  # caught up (else: a backlog, read on)
                    break
            self.stats.last_catch_up = time.time()
            return applied

    # --- shared mode: a thread ---------------------------------------------------------------
    def start(self, poll_s: float, wake: redis.Redis | None = None) -> None:
        """Follow in a daemon thread: every `poll_s`, or sooner when a message arrives on
        `core.shared.CHANGES_CHANNEL` (published by writers after their commits)."""
        self._thread = threading.Thread(
            target=self._run, args=(poll_s, wake), name="newsroom-follower", daemon=True
        )
        self._thread.start()

    def _run(self, poll_s: float, wake: redis.Redis | None) -> None:
        from core.shared import CHANGES_CHANNEL

        pubsub = None
        while not self._stop.is_set():
            try:
                if wake is not None and pubsub is None:
                    pubsub = wake.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(CHANGES_CHANNEL)
                self.catch_up()
            except Exception as exc:
                self.stats.errors += 1
                log.warning("change log follower: %s (retrying)", exc)
                if pubsub is not None:
                    _close_quietly(pubsub)
                    pubsub = None
                self._stop.wait(poll_s)
                continue
            if pubsub is not None:
                try:
                    # Sleeps until a writer's wake-up or the poll interval; drain the rest.
                    if pubsub.get_message(timeout=poll_s) is not None:
                        while pubsub.get_message(timeout=0) is not None:
                            pass
                except Exception:
                    _close_quietly(pubsub)
                    pubsub = None
            else:
                self._stop.wait(poll_s)
        if pubsub is not None:
            _close_quietly(pubsub)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _close_quietly(pubsub: object) -> None:
    with contextlib.suppress(Exception):
        pubsub.close()  # type: ignore[attr-defined]
