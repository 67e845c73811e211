"""`ReaderService`: reader events in; readers' rights (export, deletion) and retention.

An event batch is one database transaction (events + the profiles they change, read under a
row lock), then the new profiles are published to the profile cache before the response: a
click acknowledged by any process is in that reader's next feed from every process. The live
counts follow the events log (`core.changes`), in this process right after the commit.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from core.domain import AdEventDraft, Event, EventDraft, utcnow
from core.errors import InvalidInput, LimitExceeded, ModelUnavailable, UnknownUser
from core.storage import Storage, StoredProfile
from generation.cache import reader_segment
from ranking.profile import EVENT_TYPES, UserProfile
from ranking.profile_store import VersionedProfile
from ranking.recommend import Recommender

if TYPE_CHECKING:
    from core.headline_tests import HeadlineTestService
    from core.sponsored import SponsoredService

log = logging.getLogger(__name__)


@dataclass(slots=True)
class EventReport:
    accepted: int
    duplicates: int


class CacheUpdateFailed(ModelUnavailable):
    """The events are stored but the shared profile cache did not take them (503): the
    client's retry is safe (event ids make it idempotent) and republishes them."""


class ReaderService:
    def __init__(
        self,
        storage: Storage,
        recommender: Recommender | None,
        key_of: Callable[[str], int | None],
        write_lock: threading.Lock,
        after_write: Callable[[], None],
        ads: SponsoredService,
        max_bulk_events: int = 5000,
    ) -> None:
        self.storage = storage
        self.ads = ads
        self.recommender = recommender
        self.key_of = key_of
        self.max_bulk_events = max_bulk_events
        self._write_lock = write_lock
        self._after_write = after_write
        self.on_deleted: list[Callable[[str], None]] = []  # told a reader id was deleted
        self.on_recorded: list[Callable[[list[Event]], None]] = []  # told the new events
        self.on_purged: list[Callable[[datetime], None]] = []  # told the retention cutoff
        # More of what is stored about a reader, for their export: name -> records.
        self.exports: dict[str, Callable[[str], list[dict[str, Any]]]] = {}
        # Counts impressions and clicks naming a `headline_variant` (set by the service).
        self.headlines: HeadlineTestService | None = None
        # Readers whose new profile the cache refused (Redis down): republished on the next
        # event batch, or by `repair()` when the cache is back.
        self._unpublished: set[str] = set()

    def _require_recommender(self) -> Recommender:
        if self.recommender is None:
            raise ModelUnavailable(
                "no ranking head is loaded: train one with `newsroom train-ranker` or set "
                "NEWSROOM_RANKING__MODEL_DIR"
            )
        return self.recommender

    # --- events -------------------------------------------------------------------------------
    def _validate(self, drafts: list[tuple[str, EventDraft]]) -> list[Event]:
        """(field prefix for errors, draft) -> events."""
        now = utcnow()
        events: list[Event] = []
        for where, draft in drafts:
            if draft.type not in EVENT_TYPES:
                raise InvalidInput(
                    f"unknown event type {draft.type!r}; use one of {', '.join(EVENT_TYPES)}",
                    field=f"{where}type",
                )
            key = self.key_of(draft.article_id)
            if key is None:
                raise InvalidInput(
                    f"article {draft.article_id!r} does not exist; ingest it before sending "
                    "events about it",
                    field=f"{where}article_id",
                )
            ts = draft.ts or now
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=now.tzinfo)
            if (ts - now).total_seconds() > 300:
                raise InvalidInput("ts is in the future", field=f"{where}ts")
            events.append(
                Event(
                    event_id=draft.event_id or uuid.uuid4().hex,
                    user_id=draft.user_id,
                    article_id=draft.article_id,
                    article_key=key,
                    type=draft.type,
                    ts=ts,
                    dwell_ms=draft.dwell_ms,
                )
            )
        return events

    def record_events(self, drafts: Sequence[EventDraft | AdEventDraft]) -> EventReport:
        """Store events (idempotent by event id) and update profiles in the same transaction;
        publish the new profiles before returning. Ad events (`AdEventDraft`, naming a
        campaign) go to the sponsored service; every event of the request is checked before
        any is stored."""
        if len(drafts) > self.max_bulk_events:
            raise LimitExceeded(
                f"{len(drafts)} events in one request; the limit is {self.max_bulk_events}",
                field="events",
            )
        batch = len(drafts) > 1
        articles: list[tuple[str, EventDraft]] = []
        ads: list[tuple[str, AdEventDraft]] = []
        for n, draft in enumerate(drafts):
            where = f"events[{n}]." if batch else ""
            if isinstance(draft, AdEventDraft):
                ads.append((where, draft))
            else:
                articles.append((where, draft))
        checked_ads = self.ads.check_events(ads) if ads else []
        tested = [(w, d) for w, d in articles if d.headline_variant is not None]
        if tested and self.headlines is None:
            raise InvalidInput("headline tests are off on this server", field="headline_variant")
        checked_headlines = self.headlines.check_events(tested) if self.headlines else []
        report = self._record_article_events(articles) if articles else EventReport(0, 0)
        if checked_headlines and self.headlines is not None:
            # Alongside the article events just stored (which keep every repeat).
            self.headlines.record_checked(checked_headlines)
        if checked_ads:
            ad_report = self.ads.record_checked(checked_ads)
            report.accepted += ad_report.accepted
            report.duplicates += ad_report.duplicates
        return report

    def _record_article_events(self, drafts: list[tuple[str, EventDraft]]) -> EventReport:
        recommender = self._require_recommender()
        events = self._validate(drafts)
        with self._write_lock:
            try:
                new, written, folded = self._store(recommender, events)
            except IntegrityError:
                # Another process stored one of these event ids between our check and our
                # insert: check again (now they are known, and left out).
                new, written, folded = self._store(recommender, events)
            self._after_write()
        pseudonym = self.storage.pseudonym
        # Readers with only repeated events: a retry after a failed publish (here or on another
        # process) lands here, so their stored profile is published again.
        republish = {pseudonym(e.user_id) for e in events} - {p.pseudonym for p in written}
        items = [VersionedProfile(folded[p.pseudonym], p.version) for p in written]
        self._publish(recommender, items, republish)
        for listener in self.on_recorded:
            listener(new)
        return EventReport(accepted=len(new), duplicates=len(events) - len(new))

    def _store(
        self, recommender: Recommender, events: list[Event]
    ) -> tuple[list[Event], list[StoredProfile], dict[str, UserProfile]]:
        """(the new events, the stored profiles with versions, the profile objects)."""
        new = self._fresh(events)
        folded: dict[str, UserProfile] = {}

        def update(stored: dict[str, StoredProfile | None]) -> list[StoredProfile]:
            folded.clear()  # a retried transaction folds again from what it reads
            folded.update(recommender.fold_events(new, stored))
            return [
                StoredProfile(user, p.vector_sum.tobytes(), p.state_json(), 0)
                for user, p in folded.items()
            ]

        return new, self.storage.record_events(new, update), folded

    def _fresh(self, events: list[Event]) -> list[Event]:
        # An event id is the reader's own: unique per (reader, id), not across readers.
        known = self.storage.known_events([(e.user_id, e.event_id) for e in events])
        fresh: dict[tuple[str, str], Event] = {}
        for event in events:
            key = (event.user_id, event.event_id)
            if key not in known:
                fresh.setdefault(key, event)
        return list(fresh.values())

    def _publish(
        self, recommender: Recommender, items: list[VersionedProfile], republish: set[str]
    ) -> None:
        profiles = recommender.profiles
        try:
            again = (republish | self._unpublished) - {i.profile.user_id for i in items}
            if again:
                profiles.publish(self.storage.load_profiles(sorted(again)).values())
            profiles.cache.publish(items)
            self._unpublished -= again | {i.profile.user_id for i in items}
        except Exception as exc:
            if not _is_outage(exc):
                raise
            self._unpublished.update(i.profile.user_id for i in items)
            raise CacheUpdateFailed(
                "events stored, but the shared profile cache is unreachable: retry the same "
                "events (their ids make the retry safe)"
            ) from exc

    def repair(self) -> int:
        """Republish profiles the cache refused earlier; returns how many are still pending."""
        if self.recommender is None or not self._unpublished:
            return len(self._unpublished)
        pending = sorted(self._unpublished)
        self.recommender.profiles.publish(self.storage.load_profiles(pending).values())
        self._unpublished -= set(pending)
        return len(self._unpublished)

    # --- readers' rights ------------------------------------------------------------------------
    def export_user(self, user_id: str, generated: list[dict[str, Any]]) -> dict[str, Any]:
        """Everything stored about a reader: events, profile, outputs written for them alone;
        `UnknownUser` (404, like deletion) when nothing is stored."""
        profile = self.recommender.profiles.get(user_id) if self.recommender else None
        events = self.storage.user_events(user_id)
        ad_events = self.ads.user_events(user_id)
        more = {name: export(user_id) for name, export in self.exports.items()}
        stored = (profile, events, generated, ad_events, *more.values())
        if not any(stored):
            raise UnknownUser(user_id)
        return {
            "user_id": user_id,
            "events": events,
            "ad_events": ad_events,
            **more,
            "profile": None
            if profile is None
            else {
                "n_events": profile.n_events,
                "categories": profile.category_affinity(),
                "history": [
                    a.id for a in self.storage.articles_by_keys(list(profile.history)).values()
                ],
                "dismissed": [
                    a.id for a in self.storage.articles_by_keys(list(profile.dismissed)).values()
                ],
            },
            "generated": generated,
        }

    def delete_user(self, user_id: str) -> dict[str, int]:
        """Remove the reader's events, profile, per-reader outputs and their share of the live
        popularity and co-click counts, in the database, the shared cache and every process
        (the change log carries the deletion to the others)."""
        pseudonym = self.storage.pseudonym(user_id)
        with self._write_lock:
            removed = self.storage.delete_user(user_id, reader_segment(pseudonym))
            tombstone = removed.pop("tombstone_version")
            if self.recommender is not None:
                self.recommender.profiles.forget(user_id, tombstone)
            self._after_write()
        removed["ad_events"] = self.ads.forget_user(user_id)
        for listener in self.on_deleted:
            listener(user_id)
        if not any(removed[kind] for kind in ("events", "profiles", "ad_events")):
            raise UnknownUser(user_id)
        return removed

    def purge_expired_events(self, retention_days: float) -> int:
        """Delete events older than the retention, and what profiles keep of them: history,
        read and dismissed entries, and their count; a profile left without events goes too.
        The revised profiles replace their cached copies (a version above the old ones), and
        every process reloads its live counts. Returns the events deleted."""
        cutoff = utcnow() - timedelta(days=retention_days)

        def revise(
            pseudonym: str, vector: bytes, state: str, lost: int
        ) -> tuple[bytes, str] | None:
            profile = UserProfile.from_state(pseudonym, vector, state)
            profile.forget_before(cutoff.timestamp(), lost)
            return (vector, profile.state_json()) if profile.n_events else None

        with self._write_lock:
            removed, revised = self.storage.delete_events_before(cutoff, revise)
            if removed:
                self._after_write()
        for listener in self.on_purged:
            listener(cutoff)
        if self.recommender is not None and revised:
            profiles = self.recommender.profiles
            profiles.publish([p for p in revised if p.vector])
            for gone in (p for p in revised if not p.vector):
                profiles.cache.forget(gone.pseudonym, gone.version)
        return removed


def _is_outage(exc: Exception) -> bool:
    import redis

    return isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError)
