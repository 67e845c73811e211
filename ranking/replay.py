"""Replay real MIND reading histories as events, so a demo has real users with real feeds.

Event ids are derived from the data, so replaying twice records nothing new. A history item's id
names its reader by pseudonym (`pseudonym`: the storage's), never by the raw id, so no id made
here says who read what, wherever it is seen before storage digests it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path

from core.datasets import read_mind_behaviors
from core.domain import EventDraft
from ranking.data import read_impressions

Pseudonym = Callable[[str], str]


def mind_impression_events(data_dir: Path, pseudonym: Pseudonym) -> Iterator[EventDraft]:
    """impressions.jsonl: history items become clicks, shown candidates impressions, and the
    clicked candidates clicks. User ids are `mind-<user_key>`."""
    alias = lru_cache(maxsize=4096)(pseudonym)  # a reader's rows come together
    for imp in read_impressions(data_dir):
        user = f"mind-{imp.user_key}"
        for item in imp.history:
            if not item.id.startswith("title:"):
                yield EventDraft(user, item.id, "click", event_id=f"r-{alias(user)}-h-{item.id}")
        for item in imp.candidates:
            if item.id.startswith("title:"):
                continue
            yield EventDraft(
                user, item.id, "impression", event_id=f"r-{imp.impression_id}-i-{item.id}"
            )
            if item.clicked:
                yield EventDraft(
                    user, item.id, "click", event_id=f"r-{imp.impression_id}-c-{item.id}"
                )


def mind_behavior_events(data_dir: Path, pseudonym: Pseudonym) -> Iterator[EventDraft]:
    """behaviors.tsv: history ids become clicks; impressions and clicks at the logged time."""
    alias = lru_cache(maxsize=4096)(pseudonym)
    for row in read_mind_behaviors(data_dir):
        user = f"mind-{row.user_id}"
        for nid in row.history:
            yield EventDraft(user, nid, "click", event_id=f"r-{alias(user)}-h-{nid}")
        for nid, clicked in row.impressions:
            yield EventDraft(
                user, nid, "impression", event_id=f"r-{row.impression_id}-i-{nid}", ts=row.time
            )
            if clicked:
                yield EventDraft(
                    user, nid, "click", event_id=f"r-{row.impression_id}-c-{nid}", ts=row.time
                )
