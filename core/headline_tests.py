"""`HeadlineTestService`: headline tests — an article's candidate headlines served by a
Thompson-sampling bandit, counted from readers' impressions and clicks, until a winner is locked.

Allocation: a reader's first sight of a tested article draws a variant from the Beta posteriors of
the shared tallies (`ranking.bandit.choose`) and that draw is stored as the reader's assignment
(first writer wins, atomically in `Counters`), so the reader keeps the same headline for the
test's life while new readers go more and more to the variants that get clicked. A hash of the
reader id would be sticky too, but it splits readers evenly by construction: the bandit could
never move traffic. A locked test shows its winner to everyone.

Counting: an impression counts once per reader and variant, a click once, and only after that
reader's counted impression of the same variant. Claims in `Counters` answer "counted before?"
fast; the `headline_events` rows are the facts (a unique constraint per reader, variant and type
makes them the final word, also after the counters were lost), the report reads them, and the
tallies the bandit samples from are refilled from them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import numpy as np
from sqlalchemy import (
    DateTime,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from core.counters import Counters
from core.domain import Article, EventDraft, as_utc, clean_text, utcnow
from core.errors import Conflict, InvalidInput, ModelUnavailable, NotFound
from core.storage import Base, PeriodicRead, insert_new
from ranking.bandit import choose, p_best

log = logging.getLogger(__name__)

Status = Literal["running", "locked", "stopped"]
Source = Literal["editor", "generated"]
MIN_VARIANTS = 2
MAX_VARIANTS = 10
HEADLINE_EVENT_TYPES = ("impression", "click")
DAY_S = 86_400
# Assignments and "counted before" claims: long enough for a test's life; when one expires, the
# unique rows in the database still refuse a second count (the claim is only the fast path).
CLAIM_TTL_S = 60 * DAY_S
CACHE_TTL_S = 2.0  # how long another process's new test, lock or stop may take to show here


class HeadlineTestRow(Base):
    __tablename__ = "headline_tests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    article_id: Mapped[str] = mapped_column(String(128), index=True)
    # The article id while the test is running or locked, NULL once stopped: unique, so two
    # processes creating a test for one article at once get one test and one conflict.
    live_article: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    winner: Mapped[str | None] = mapped_column(String(8), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class HeadlineVariantRow(Base):
    __tablename__ = "headline_variants"

    test_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    variant_id: Mapped[str] = mapped_column(String(8), primary_key=True)  # v1, v2, ...
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))


class HeadlineEventRow(Base):
    """A counted impression or click (repeats are not stored: the normal `events` keep them)."""

    __tablename__ = "headline_events"
    __table_args__ = (
        UniqueConstraint("user_id", "event_id", name="uq_headline_events_user_event"),
        UniqueConstraint(
            "test_id", "variant_id", "user_id", "type", name="uq_headline_events_once"
        ),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))  # keyed digest, as in `events`
    test_id: Mapped[str] = mapped_column(String(32), index=True)
    variant_id: Mapped[str] = mapped_column(String(8))
    # The reader's pseudonym; NULL once the reader was deleted (the counts stay, unlinked).
    user_id: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)
    type: Mapped[str] = mapped_column(String(16))
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class Variant:
    variant_id: str
    text: str
    source: str


@dataclass(slots=True)
class HeadlineTest:
    id: str
    article_id: str
    status: str
    winner: str | None
    variants: list[Variant]
    created_at: datetime
    updated_at: datetime

    def variant(self, variant_id: str | None) -> Variant | None:
        return next((v for v in self.variants if v.variant_id == variant_id), None)


@dataclass(frozen=True, slots=True)
class ShownHeadline:
    """The headline to show a reader: a variant of a live test, or the article's own title
    (`test_id` and `variant_id` None)."""

    article_id: str
    test_id: str | None
    variant_id: str | None
    text: str


@dataclass(frozen=True, slots=True)
class VariantReport:
    variant: Variant
    impressions: int
    clicks: int
    ctr: float
    p_best: float


@dataclass(frozen=True, slots=True)
class HeadlineReport:
    test: HeadlineTest
    variants: list[VariantReport]


@dataclass(frozen=True, slots=True)
class CheckedHeadlineEvent:
    test_id: str
    variant_id: str
    user: str  # pseudonym
    event_id: str  # digest
    type: str
    ts: datetime


@dataclass(slots=True)
class HeadlineEventReport:
    counted: int = 0
    not_counted: dict[str, int] = field(default_factory=dict)  # reason -> events

    def skip(self, reason: str) -> None:
        self.not_counted[reason] = self.not_counted.get(reason, 0) + 1


class HeadlineWriter(Protocol):
    """What generated variants need of `core.writing.WritingService`."""

    def headlines(
        self, article_id: str, user_id: str | None, n: int
    ) -> Awaitable[dict[str, Any]]: ...


class HeadlineStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        tables = [HeadlineTestRow.__table__, HeadlineVariantRow.__table__]
        Base.metadata.create_all(engine, tables=[*tables, HeadlineEventRow.__table__])

    # --- tests --------------------------------------------------------------------------------
    def insert_test(self, test: HeadlineTest) -> bool:
        """False if the article has a live test already (maybe created by another process)."""
        return insert_new(
            self.engine,
            insert(HeadlineTestRow).values(
                id=test.id,
                article_id=test.article_id,
                live_article=test.article_id,
                status=test.status,
                winner=None,
                created_at=test.created_at,
                updated_at=test.updated_at,
            ),
            insert(HeadlineVariantRow).values(
                [
                    {
                        "test_id": test.id,
                        "variant_id": v.variant_id,
                        "position": n,
                        "text": v.text,
                        "source": v.source,
                    }
                    for n, v in enumerate(test.variants)
                ]
            ),
        )

    def set_status(self, test_id: str, status: Status, winner: str | None) -> bool:
        """Lock or stop a test that is not stopped; False if there is none."""
        values: dict[str, object] = {"status": status, "winner": winner, "updated_at": utcnow()}
        if status == "stopped":
            values["live_article"] = None
        with self.engine.begin() as conn:
            result = conn.execute(
                update(HeadlineTestRow)
                .where(HeadlineTestRow.id == test_id, HeadlineTestRow.status != "stopped")
                .values(**values)
            )
        return bool(result.rowcount)

    def tests(
        self, *, test_id: str | None = None, article_id: str | None = None, live: bool = False
    ) -> list[HeadlineTest]:
        """Tests with their variants, oldest first, in one query."""
        t, v = HeadlineTestRow, HeadlineVariantRow
        query = select(
            t.id,
            t.article_id,
            t.status,
            t.winner,
            t.created_at,
            t.updated_at,
            v.variant_id,
            v.text,
            v.source,
        ).join(v, v.test_id == t.id)
        if test_id is not None:
            query = query.where(t.id == test_id)
        if article_id is not None:
            query = query.where(t.article_id == article_id)
        if live:
            query = query.where(t.live_article.is_not(None))
        found: dict[str, HeadlineTest] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query.order_by(t.created_at, t.id, v.position)):
                if row.id not in found:
                    found[row.id] = HeadlineTest(
                        row.id,
                        row.article_id,
                        row.status,
                        row.winner,
                        [],
                        as_utc(row.created_at) or utcnow(),
                        as_utc(row.updated_at) or utcnow(),
                    )
                found[row.id].variants.append(Variant(row.variant_id, row.text, row.source))
        return list(found.values())

    # --- events -------------------------------------------------------------------------------
    def insert_event(self, event: CheckedHeadlineEvent) -> bool:
        """False if it was counted before (this reader's variant and type, or event id)."""
        return insert_new(
            self.engine,
            insert(HeadlineEventRow).values(
                event_id=event.event_id,
                test_id=event.test_id,
                variant_id=event.variant_id,
                user_id=event.user,
                type=event.type,
                ts=event.ts,
            ),
        )

    def has_impression(self, test_id: str, variant_id: str, user: str) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(HeadlineEventRow.seq).where(
                    HeadlineEventRow.test_id == test_id,
                    HeadlineEventRow.variant_id == variant_id,
                    HeadlineEventRow.user_id == user,
                    HeadlineEventRow.type == "impression",
                )
            ).first()
        return row is not None

    def tallies(self, test_ids: Sequence[str]) -> dict[tuple[str, str, str], int]:
        """(test, variant, type) -> counted events."""
        if not test_ids:
            return {}
        e = HeadlineEventRow
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(e.test_id, e.variant_id, e.type, func.count())
                .where(e.test_id.in_(list(test_ids)))
                .group_by(e.test_id, e.variant_id, e.type)
            )
            return {(t, v, kind): int(n) for t, v, kind, n in rows}

    def readers(self, test_ids: Sequence[str]) -> list[tuple[str, str, str, str]]:
        """(test, variant, reader, type) of every counted event still linked to a reader,
        oldest first: what a refill restores assignments and claims from."""
        if not test_ids:
            return []
        e = HeadlineEventRow
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(e.test_id, e.variant_id, e.user_id, e.type)
                .where(e.test_id.in_(list(test_ids)), e.user_id.is_not(None))
                .order_by(e.seq)
            )
            return [(t, v, u, kind) for t, v, u, kind in rows]

    def user_events(self, user: str) -> list[dict[str, Any]]:
        e = HeadlineEventRow
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(e.test_id, e.variant_id, e.type, e.ts)
                .where(e.user_id == user)
                .order_by(e.seq)
            ).all()
        return [
            {"test_id": t, "headline_variant": v, "type": kind, "ts": as_utc(ts)}
            for t, v, kind, ts in rows
        ]

    def forget_reader(self, user: str) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(HeadlineEventRow)
                .where(HeadlineEventRow.user_id == user)
                .values(user_id=None)
            )
        return int(result.rowcount or 0)


def _tally_key(test_id: str, variant_id: str, kind: str) -> str:
    return f"hl:n:{test_id}:{variant_id}:{kind}"


def _assign_key(test_id: str, user: str) -> str:
    return f"hl:as:{test_id}:{user}"


def _claim_key(test_id: str, variant_id: str, user: str, kind: str) -> str:
    return f"hl:once:{test_id}:{variant_id}:{user}:{kind}"


def _report_rng(test_id: str) -> np.random.Generator:
    # Seeded by the test: the same counts give the same p_best on every process and refresh.
    return np.random.default_rng(int(hashlib.sha256(test_id.encode()).hexdigest()[:16], 16))


class HeadlineTestService:
    def __init__(
        self,
        store: HeadlineStore,
        counters: Counters,
        article: Callable[[str], Article],
        pseudonym: Callable[[str], str],
        event_digest: Callable[[str, str], str],
        max_chars: int,
        cache_ttl_s: float = CACHE_TTL_S,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.store = store
        self.counters = counters
        self.article = article  # raises ArticleNotFound
        self.pseudonym = pseudonym
        self.event_digest = event_digest
        self.max_chars = max_chars
        self.rng = rng or np.random.default_rng()
        self.writer: HeadlineWriter | None = None  # set when generation is on
        self._rng_lock = threading.Lock()  # a numpy Generator is not thread-safe
        # article id -> its live test
        self._live = PeriodicRead(
            lambda: {t.article_id: t for t in self.store.tests(live=True)}, cache_ttl_s, {}
        )

    # --- creating and ending tests ------------------------------------------------------------
    def _editor_variants(self, texts: Sequence[str], generated: int) -> list[Variant]:
        if generated < 0:
            raise InvalidInput("generated must be 0 or more", field="generated")
        total = len(texts) + generated
        if total > MAX_VARIANTS:
            where = "generated" if generated else "variants"
            raise InvalidInput(
                f"{len(texts)} variants and {generated} generated make {total}; a test has at "
                f"most {MAX_VARIANTS}",
                field=where,
            )
        if total < MIN_VARIANTS:
            raise InvalidInput(
                f"a test needs at least {MIN_VARIANTS} headlines: send more `variants`, or ask "
                "for `generated` ones",
                field="variants",
            )
        variants: list[Variant] = []
        seen: set[str] = set()
        for n, raw in enumerate(texts):
            text = " ".join(clean_text(raw).split())
            if not text:
                raise InvalidInput("a headline variant is empty", field=f"variants[{n}]")
            if len(text) > self.max_chars:
                raise InvalidInput(
                    f"a headline is at most {self.max_chars} characters, like a title",
                    field=f"variants[{n}]",
                )
            if text.casefold() in seen:
                raise InvalidInput(
                    "variants must be distinct: this one repeats an earlier one",
                    field=f"variants[{n}]",
                )
            seen.add(text.casefold())
            variants.append(Variant(f"v{len(variants) + 1}", text, "editor"))
        return variants

    async def _generated_variants(
        self, article_id: str, n: int, taken: list[Variant]
    ) -> list[Variant]:
        if self.writer is None:
            raise ModelUnavailable(
                "generation is off on this server, so `generated` variants cannot be written: "
                "send only your own `variants`",
                field="generated",
            )
        result = await self.writer.headlines(article_id, None, n)
        seen = {v.text.casefold() for v in taken}
        variants: list[Variant] = []
        for item in result["headlines"]:
            text = " ".join(clean_text(item["text"]).split())
            if text and len(text) <= self.max_chars and text.casefold() not in seen:
                seen.add(text.casefold())
                variants.append(Variant(f"v{len(taken) + len(variants) + 1}", text, "generated"))
        return variants

    async def create(
        self, article_id: str, texts: Sequence[str], generated: int = 0
    ) -> HeadlineTest:
        """A running test of the editor's `texts` and `generated` variants from the headline
        model (which may take a while: the request waits for it, or is refused when the
        generation queue is full)."""
        variants = self._editor_variants(texts, generated)
        await asyncio.to_thread(self.article, article_id)  # 404 for an unknown article
        if await asyncio.to_thread(self.store.tests, article_id=article_id, live=True):
            raise self._busy(article_id)
        if generated:
            variants += await self._generated_variants(article_id, generated, variants)
        if len(variants) < MIN_VARIANTS:
            raise InvalidInput(
                f"the model wrote only {len(variants)} distinct headlines besides yours; a test "
                f"needs {MIN_VARIANTS}: send more `variants`",
                field="generated",
            )
        now = utcnow()
        test = HeadlineTest(
            f"ht-{uuid.uuid4().hex[:12]}", article_id, "running", None, variants, now, now
        )
        if not await asyncio.to_thread(self.store.insert_test, test):
            raise self._busy(article_id)
        self._invalidate()
        return test

    @staticmethod
    def _busy(article_id: str) -> Conflict:
        return Conflict(
            f"article {article_id!r} has a running or locked headline test already: stop it "
            "(POST /v1/headline-tests/{test_id}/stop) before starting another",
            field="id",
        )

    def get(self, test_id: str) -> HeadlineTest:
        found = self.store.tests(test_id=test_id)
        if not found:
            raise NotFound(f"headline test {test_id!r} does not exist", field="test_id")
        return found[0]

    def lock(self, test_id: str, variant_id: str | None = None) -> HeadlineReport:
        """Show `variant_id` (default: the likeliest best) to every reader from now on."""
        report = self.report(test_id)
        if report.test.status == "stopped":
            raise Conflict(
                f"headline test {test_id!r} is stopped; start a new one", field="test_id"
            )
        if variant_id is None:
            if not any(v.impressions for v in report.variants):
                raise InvalidInput(
                    "no impressions counted yet, so there is no best variant: name the "
                    "`variant_id` to lock",
                    field="variant_id",
                )
            variant_id = max(report.variants, key=lambda v: v.p_best).variant.variant_id
        elif report.test.variant(variant_id) is None:
            ids = ", ".join(v.variant_id for v in report.test.variants)
            raise InvalidInput(
                f"variant {variant_id!r} is not in test {test_id!r} (it has {ids})",
                field="variant_id",
            )
        if not self.store.set_status(test_id, "locked", variant_id):
            raise Conflict(f"headline test {test_id!r} was stopped meanwhile", field="test_id")
        self._invalidate()
        return self.report(test_id)

    def stop(self, test_id: str) -> HeadlineReport:
        """End the test: readers see the article's own title again; the counts stay."""
        test = self.get(test_id)
        if test.status != "stopped":
            self.store.set_status(test_id, "stopped", test.winner)
            self._invalidate()
        return self.report(test_id)

    def forget_article(self, article_id: str) -> None:
        """A deleted article's live test stops."""
        for test in self.store.tests(article_id=article_id, live=True):
            self.store.set_status(test.id, "stopped", test.winner)
        self._invalidate()

    # --- reports ------------------------------------------------------------------------------
    def report(self, test_id: str) -> HeadlineReport:
        """Counts from the stored facts; p_best from their Beta posteriors."""
        test = self.get(test_id)
        tallies = self.store.tallies([test.id])
        shown = [tallies.get((test.id, v.variant_id, "impression"), 0) for v in test.variants]
        clicked = [tallies.get((test.id, v.variant_id, "click"), 0) for v in test.variants]
        best = p_best(shown, clicked, _report_rng(test.id))
        rows = [
            VariantReport(v, n, c, round(c / n, 5) if n else 0.0, float(p))
            for v, n, c, p in zip(test.variants, shown, clicked, best, strict=True)
        ]
        return HeadlineReport(test, rows)

    def reports_of(self, article_id: str) -> list[HeadlineReport]:
        """The article's tests, oldest first (404 for an unknown article)."""
        self.article(article_id)
        return [self.report(t.id) for t in self.store.tests(article_id=article_id)]

    # --- serving ------------------------------------------------------------------------------
    def _live_tests(self) -> dict[str, HeadlineTest]:
        """Live tests by article: one query per `cache_ttl_s` at most, so a feed with no tested
        article costs a dict lookup per item."""
        return self._live.get()

    def _invalidate(self) -> None:
        self._live.invalidate()

    def headline(self, article_id: str, user_id: str) -> ShownHeadline:
        """What to show this reader for the article: their variant, or its own title."""
        test = self._live_tests().get(article_id)
        if test is None:
            return ShownHeadline(article_id, None, None, self.article(article_id).title)
        (variant,) = self._assign([test], self.pseudonym(user_id))
        return ShownHeadline(article_id, test.id, variant.variant_id, variant.text)

    def for_feed(self, user_id: str, article_ids: Sequence[str]) -> dict[str, ShownHeadline]:
        """The shown headline of each tested article among `article_ids` (usually none)."""
        live = self._live_tests()
        tests = [live[a] for a in dict.fromkeys(article_ids) if a in live]
        if not tests:
            return {}
        chosen = self._assign(tests, self.pseudonym(user_id))
        return {
            t.article_id: ShownHeadline(t.article_id, t.id, v.variant_id, v.text)
            for t, v in zip(tests, chosen, strict=True)
        }

    def _assign(self, tests: Sequence[HeadlineTest], user: str) -> list[Variant]:
        """Each test's variant for the reader: the winner of a locked test; else the reader's
        stored assignment, or a Thompson draw stored as it (first writer wins)."""
        running = [t for t in tests if t.status == "running"]
        stored = self.counters.get_many([_assign_key(t.id, user) for t in running])
        assigned = {t.id: int(value) for t, value in zip(running, stored, strict=True)}
        result = []
        for test in tests:
            winner = test.variant(test.winner) if test.status == "locked" else None
            if winner is not None:
                result.append(winner)
                continue
            index = assigned.get(test.id, 0)
            if not 1 <= index <= len(test.variants):
                index = self._draw(test, user)
            result.append(test.variants[index - 1])
        return result

    def _draw(self, test: HeadlineTest, user: str) -> int:
        """A new reader's variant (1-based), stored unless another request stored one first."""
        keys = [_tally_key(test.id, v.variant_id, k) for v in test.variants for k in ("i", "c")]
        values = self.counters.get_many(keys)
        shown = [int(x) for x in values[0::2]]
        # A click's tally can land before its impression's (another process between the two
        # writes): never more clicks than impressions.
        clicked = [min(int(c), n) for c, n in zip(values[1::2], shown, strict=True)]
        with self._rng_lock:
            index = choose(shown, clicked, self.rng) + 1
        # Adds only to a missing (zero) key: the value after is whoever's draw came first.
        _, value = self.counters.add_if_under(
            _assign_key(test.id, user), index, 0.5, ttl_s=CLAIM_TTL_S
        )
        return int(value)

    # --- events -------------------------------------------------------------------------------
    def check_events(self, drafts: Sequence[tuple[str, EventDraft]]) -> list[CheckedHeadlineEvent]:
        """Validate the `headline_variant` of article events before anything of their request
        is stored: (field prefix for errors, draft) -> what to count. Reads the live tests
        fresh (not the serving cache): a test created elsewhere a moment ago is known."""
        if not drafts:
            return []
        live = {t.article_id: t for t in self.store.tests(live=True)}
        now = utcnow()
        checked = []
        for where, draft in drafts:
            if draft.type not in HEADLINE_EVENT_TYPES:
                raise InvalidInput(
                    f"headline_variant goes with impression and click events, not {draft.type!r}",
                    field=f"{where}headline_variant",
                )
            test = live.get(draft.article_id)
            if test is None or test.variant(draft.headline_variant) is None:
                what = (
                    f"article {draft.article_id!r} has no running or locked headline test"
                    if test is None
                    else f"headline test {test.id!r} has no variant {draft.headline_variant!r}"
                )
                raise InvalidInput(
                    f"{what}: send the variant_id that GET /v1/articles/{{id}}/headline or the "
                    "feed gave",
                    field=f"{where}headline_variant",
                )
            user = self.pseudonym(draft.user_id)
            event_id = draft.event_id or uuid.uuid4().hex
            checked.append(
                CheckedHeadlineEvent(
                    test.id,
                    draft.headline_variant or "",
                    user,
                    self.event_digest(user, f"headline:{event_id}"),
                    draft.type,
                    draft.ts or now,
                )
            )
        return checked

    def record_checked(self, checked: Sequence[CheckedHeadlineEvent]) -> HeadlineEventReport:
        """Count checked events, oldest first (an impression before its click)."""
        report = HeadlineEventReport()
        for event in sorted(checked, key=lambda e: e.ts):
            if event.type == "click" and not self._saw(event):
                report.skip("no_impression")
            elif self._count(event):
                report.counted += 1
            else:
                report.skip(f"repeat_{event.type}")
        return report

    def _saw(self, event: CheckedHeadlineEvent) -> bool:
        claim = _claim_key(event.test_id, event.variant_id, event.user, "impression")
        return self.counters.get(claim) >= 1 or self.store.has_impression(
            event.test_id, event.variant_id, event.user
        )

    def _count(self, event: CheckedHeadlineEvent) -> bool:
        claim = _claim_key(event.test_id, event.variant_id, event.user, event.type)
        if not self.counters.claim(claim, CLAIM_TTL_S):
            return False
        try:
            # Refused when counted before the counters were lost (the claim stays: it is true).
            if not self.store.insert_event(event):
                return False
        except Exception:
            self.counters.release(claim)
            raise
        kind = "i" if event.type == "impression" else "c"
        self.counters.add(_tally_key(event.test_id, event.variant_id, kind), 1.0)
        return True

    # --- counters, readers' rights ------------------------------------------------------------
    def refill_counters(self) -> None:
        """Tallies, assignments and claims of the live tests from the counted events: after a
        start with empty counters, or when Redis came back empty."""
        tests = self.store.tests(live=True)
        ids = [t.id for t in tests]
        tallies = {
            _tally_key(t, v, "i" if kind == "impression" else "c"): float(n)
            for (t, v, kind), n in self.store.tallies(ids).items()
        }
        position = {(t.id, v.variant_id): n + 1 for t in tests for n, v in enumerate(t.variants)}
        claims: dict[str, float] = {}
        for test_id, variant_id, user, kind in self.store.readers(ids):
            claims[_claim_key(test_id, variant_id, user, kind)] = 1.0
            # A reader's first counted impression is the variant they were assigned.
            claims.setdefault(_assign_key(test_id, user), float(position[(test_id, variant_id)]))
        if tallies:
            self.counters.set_many(tallies, ttl_s=None)
        if claims:
            self.counters.set_many(claims, ttl_s=CLAIM_TTL_S)
        log.info("headline counters refilled: %d tallies, %d claims", len(tallies), len(claims))

    def user_events(self, user_id: str) -> list[dict[str, Any]]:
        """The reader's counted headline impressions and clicks (their export)."""
        return self.store.user_events(self.pseudonym(user_id))

    def forget_user(self, user_id: str) -> int:
        """Unlink a deleted reader's counted events (the counts stay) and drop their
        assignments and claims; returns the events unlinked."""
        user = self.pseudonym(user_id)
        forgotten = self.store.forget_reader(user)
        for test in self.store.tests(live=True):
            self.counters.release(_assign_key(test.id, user))
            for variant in test.variants:
                for kind in HEADLINE_EVENT_TYPES:
                    self.counters.release(_claim_key(test.id, variant.variant_id, user, kind))
        return forgotten
