"""Following the change log: gaps from out-of-order commits are waited for, then given up."""

from __future__ import annotations

from dataclasses import dataclass

from core.changes import ChangeFollower, LogCursor
from core.storage import LoggedChange, LoggedEvent


@dataclass(frozen=True)
class Row:
    seq: int


def test_cursor_applies_new_rows_once_and_remembers_gaps() -> None:
    cursor = LogCursor()
    assert [r.seq for r in cursor.accept([Row(1), Row(2), Row(5)], now=0.0)] == [1, 2, 5]
    assert set(cursor.gaps) == {3, 4} and cursor.high == 5 and cursor.position == 2
    # 4 commits late: applied once; a repeat of 5 is not applied again.
    assert [r.seq for r in cursor.accept([Row(4), Row(5)], now=1.0)] == [4]
    assert set(cursor.gaps) == {3}
    assert cursor.expire(now=5.0, timeout_s=10.0) == 0
    assert cursor.expire(now=11.0, timeout_s=10.0) == 1  # 3 was rolled back or deleted
    assert cursor.gaps == {} and cursor.position == 5


class FakeLog:
    """A database whose inserts commit out of order."""

    def __init__(self) -> None:
        self.events: dict[int, LoggedEvent] = {}

    def commit(self, seq: int) -> None:
        self.events[seq] = LoggedEvent(seq, "u", seq, "click")

    def events_after(self, seq: int, limit: int) -> list[LoggedEvent]:
        return [e for q, e in sorted(self.events.items()) if q > seq][:limit]

    def events_at(self, seqs: list[int]) -> list[LoggedEvent]:
        return [self.events[q] for q in seqs if q in self.events]

    def changes_after(self, seq: int) -> list[LoggedChange]:
        return []

    def changes_at(self, seqs: list[int]) -> list[LoggedChange]:
        return []


def test_follower_applies_a_late_commit_exactly_once() -> None:
    log = FakeLog()
    applied: list[int] = []
    follower = ChangeFollower(
        log,  # type: ignore[arg-type]
        lambda events: applied.extend(e.seq for e in events),
        lambda changes: None,
        LogCursor(),
        LogCursor(),
    )
    log.commit(1)
    log.commit(3)  # seq 2 is still in flight
    follower.catch_up()
    log.commit(2)
    follower.catch_up()
    follower.catch_up()
    assert applied == [1, 3, 2]
    assert follower.events.position == 3
