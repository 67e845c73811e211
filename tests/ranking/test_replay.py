"""Replayed MIND events: ids derived from the data (idempotent) and from the reader's pseudonym,
never from the raw reader id."""

from __future__ import annotations

import hashlib
from itertools import islice

from ranking.replay import mind_behavior_events, mind_impression_events
from tests.conftest import data_path


def _pseudonym(user_id: str) -> str:
    return "p_" + hashlib.sha256(user_id.encode()).hexdigest()[:40]


def test_replayed_event_ids_never_carry_the_raw_reader_id() -> None:
    readers = (
        (mind_impression_events, "mind_small_dev_impressions"),
        (mind_behavior_events, "mind_small_train_sample"),
    )
    for read, folder in readers:
        events = list(islice(read(data_path(folder), _pseudonym), 3000))
        again = list(islice(read(data_path(folder), _pseudonym), 3000))
        assert [e.event_id for e in events] == [e.event_id for e in again]  # idempotent
        history = [e for e in events if "-h-" in (e.event_id or "")]
        assert history, folder
        for event in events:
            assert event.user_id.startswith("mind-")
            assert event.user_id.removeprefix("mind-") not in (event.event_id or ""), event
        assert all(e.event_id.startswith(f"r-{_pseudonym(e.user_id)}-h-") for e in history)
