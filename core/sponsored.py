"""`SponsoredService`: sponsored items in feeds, their delivery control, and advertisers' reports.

Placement (`place`): the live campaigns whose targeting matches the reader, that still have
budget, are not ahead of their pace and are under the reader's frequency cap, are scored by
the ranking head's ad task (`ranking.ad_head`) and auctioned (`ranking.auction`) against the
organic items they would push down.

Delivery (`record_events`): ad events name a `campaign_id`. An impression counts toward the
frequency cap and records the price a click on it costs (the GSP price of the feed that showed
it); a click is charged only when the reader has a recorded impression of the campaign that day
and has not clicked it already that day, and only while the budget lasts. Budgets, caps and
claims are `Counters` (atomic in Redis in shared mode, so any number of processes agree: a day's
spend ends at most one click's price above its budget); the ad events in the database are the
facts, and the counters are refilled from them when they are lost.

Reports (`report`): totals by day from the database; audience breakdowns (interest segment,
reader's top category) count readers, with OpenDP's Laplace noise and a k-reader threshold, and
never contain a reader id.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np

from core.ad_store import AdEventRecord, AdStore, DailyTotals
from core.campaigns import Campaign, CampaignService
from core.counters import Counters
from core.domain import AdEventDraft, utcnow
from core.errors import InvalidInput
from core.settings import AdsConfig
from generation.segments import InterestSegments
from ranking.ad_head import AdHead, score_creatives
from ranking.auction import AdBid, AuctionConfig, run_auction
from ranking.profile import UserProfile
from ranking.recommend import RankedItem, Recommender

log = logging.getLogger(__name__)

AD_EVENT_TYPES = ("impression", "click", "conversion")
DAY_S = 86_400
COUNTER_TTL_S = 3 * DAY_S  # a day's counters outlive the day by enough for late events


@dataclass(slots=True)
class ReaderView:
    """What targeting may look at: interests, never the history itself."""

    top_categories: list[str]
    segment: str | None
    segment_interests: list[str]
    vector: np.ndarray | None


@dataclass(slots=True)
class SponsoredItem:
    campaign: Campaign
    position: int  # index in the final feed
    price_cpc: float
    pctr: float
    explanation: str
    matched: list[str]


@dataclass(slots=True)
class Eligibility:
    campaign: Campaign
    matched: list[tuple[str, str]] | None  # (code, words); None: targeting does not match
    blocked: str | None  # why it may not be shown now (budget, pace, cap, schedule)


@dataclass(slots=True)
class AdEventReport:
    accepted: int = 0
    duplicates: int = 0
    billed: int = 0
    unbilled: dict[str, int] = field(default_factory=dict)  # reason -> clicks


def _keys(campaign_id: str, day: date) -> tuple[str, str]:
    return f"ads:spend:{campaign_id}:{day}", f"ads:spend:{campaign_id}:total"


def _seen_key(campaign_id: str, user: str, day: date) -> str:
    return f"ads:seen:{campaign_id}:{user}:{day}"


def _price_key(campaign_id: str, user: str, day: date) -> str:
    return f"ads:price:{campaign_id}:{user}:{day}"


def _click_key(campaign_id: str, user: str, day: date) -> str:
    return f"ads:click:{campaign_id}:{user}:{day}"


def day_share(moment: datetime) -> float:
    """How much of the UTC day has passed, in [0, 1)."""
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return (moment - start).total_seconds() / DAY_S


class SponsoredService:
    def __init__(
        self,
        store: AdStore,
        campaigns: CampaignService,
        counters: Counters,
        recommender: Recommender | None,
        ad_head: AdHead,
        config: AdsConfig,
        pseudonym: Callable[[str], str],
        event_digest: Callable[[str, str], str],
        segments: Callable[[], InterestSegments | None],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.campaigns = campaigns
        self.counters = counters
        self.recommender = recommender
        self.ad_head = ad_head
        self.config = config
        self.auction = AuctionConfig(
            tuple(config.positions), config.reserve_ecpm, config.exchange_rate
        )
        self.pseudonym = pseudonym
        self.event_digest = event_digest  # the keyed digest `events` keep too
        self.segments = segments
        self.clock = clock
        self._cache: dict[str, Campaign] = {}
        self._cache_lock = threading.Lock()

    # --- the live campaigns -----------------------------------------------------------------
    def live_campaigns(self, now: datetime) -> list[Campaign]:
        """Active campaigns inside their schedule: one small query per call (a pause or an
        edit made by any process holds from the next feed), full rows only for changed ones."""
        versions = self.store.campaign_versions("active")
        with self._cache_lock:
            stale = [
                cid
                for cid, ts in versions.items()
                if cid not in self._cache or self._cache[cid].updated_at != ts
            ]
        fresh = {s.id: Campaign.from_stored(s) for s in self.store.campaigns_by_id(stale)}
        with self._cache_lock:
            self._cache = {
                cid: fresh.get(cid) or self._cache[cid]
                for cid in versions
                if cid in fresh or cid in self._cache
            }
            live = [c for c in self._cache.values() if c.live_at(now)]
        live.sort(key=lambda c: c.id)
        return live[: self.config.max_campaigns]

    # --- targeting --------------------------------------------------------------------------
    def reader_view(self, profile: UserProfile | None) -> ReaderView:
        if profile is None:
            return ReaderView([], None, [], None)
        vector = profile.vector
        segment, interests = None, []
        segments = self.segments()
        if (
            vector is not None
            and segments is not None
            and segments.centroids.shape[1:] == vector.shape
        ):
            index = segments.assign(vector)
            segment, interests = f"segment-{index}", list(segments.labels[index])
        return ReaderView(profile.top_categories(3), segment, interests, vector)

    def match(self, campaign: Campaign, reader: ReaderView) -> list[tuple[str, str]] | None:
        """The targeting rules the reader meets (each kind that is set must match: any of its
        values) as (code, words for the explanation); None when they do not see it."""
        targeting = campaign.targeting
        reasons: list[tuple[str, str]] = []
        if targeting.categories:
            shared = [c for c in reader.top_categories if c in targeting.categories]
            if not shared:
                return None
            reasons.append((f"category:{shared[0]}", f"you often read {shared[0]}"))
        if targeting.segments:
            if reader.segment not in targeting.segments:
                return None
            topics = ", ".join(reader.segment_interests) or "your topics"
            reasons.append(
                (f"segment:{reader.segment}", f"you are among readers interested in {topics}")
            )
        if targeting.audience:
            threshold = targeting.audience_threshold
            if threshold is None:
                threshold = self.config.audience_threshold
            if reader.vector is None or campaign.audience_vector is None:
                return None
            similarity = float(reader.vector @ campaign.audience_vector)
            if similarity < threshold:
                return None
            reasons.append(
                (
                    "audience",
                    "your reading is close to the audience the advertiser described, "
                    f"“{targeting.audience}”",
                )
            )
        return reasons

    @staticmethod
    def explain(campaign: Campaign, reasons: list[tuple[str, str]]) -> str:
        why = (
            "; ".join(words for _, words in reasons)
            if reasons
            else "it is shown to all readers and is not based on your reading"
        )
        return f"Sponsored by {campaign.advertiser}. You see this ad because {why}."

    # --- delivery state ---------------------------------------------------------------------
    def eligibility(
        self, campaigns: Sequence[Campaign], reader: ReaderView, user: str | None, now: datetime
    ) -> list[Eligibility]:
        """Targeting, then budget, pace and frequency cap in one counters read."""
        day = now.date()
        keys: list[str] = []
        for campaign in campaigns:
            keys += _keys(campaign.id, day)
            keys.append(_seen_key(campaign.id, user, day) if user else "ads:none")
        values = self.counters.get_many(keys)
        elapsed = day_share(now)
        result = []
        for n, campaign in enumerate(campaigns):
            spent_today, spent_total, seen = values[3 * n : 3 * n + 3]
            blocked = None
            if not campaign.live_at(now):
                blocked = "not live (paused or outside its schedule)"
            elif spent_today >= campaign.daily_budget:
                blocked = "daily budget spent"
            elif campaign.total_budget is not None and spent_total >= campaign.total_budget:
                blocked = "total budget spent"
            elif self._ahead(campaign, spent_today, elapsed):
                blocked = "ahead of its pace for the day"
            elif campaign.frequency_cap is not None and seen >= campaign.frequency_cap:
                blocked = "frequency cap reached for this reader today"
            result.append(Eligibility(campaign, self.match(campaign, reader), blocked))
        return result

    def _ahead(self, campaign: Campaign, spent_today: float, elapsed: float) -> bool:
        """Spent what the even pace allows by now (plus the slack): wait for the day."""
        allowed = campaign.daily_budget * (elapsed + self.config.pacing_slack)
        return spent_today > 0 and spent_today >= allowed

    def pctr(self, profile: UserProfile | None, campaigns: Sequence[Campaign]) -> np.ndarray:
        """(C,) calibrated click probabilities of the creatives for this reader."""
        if self.recommender is None or not campaigns:
            return np.zeros(len(campaigns), dtype=np.float32)
        vector = profile.vector if profile else None
        user = self.recommender.user_context(profile, vector)
        vectors = np.stack([c.creative_vector for c in campaigns]).astype(np.float32)
        categories = [c.creative.category for c in campaigns]
        scores = score_creatives(self.recommender.scorer, user, vectors, categories)
        return self.ad_head.probability(scores)

    # --- placement --------------------------------------------------------------------------
    def place(
        self, user_id: str, profile: UserProfile | None, organic: Sequence[RankedItem], slots: int
    ) -> list[SponsoredItem]:
        if slots > self.config.max_ads:
            raise InvalidInput(
                f"ads={slots} is above this newsroom's limit of {self.config.max_ads}",
                field="ads",
            )
        if slots <= 0 or not organic:
            return []
        now = self.clock()
        campaigns = self.live_campaigns(now)
        if not campaigns:
            return []
        user = self.pseudonym(user_id)
        reader = self.reader_view(profile)
        eligible = [
            e
            for e in self.eligibility(campaigns, reader, user, now)
            if e.matched is not None and e.blocked is None
        ]
        if not eligible:
            return []
        chosen = [e.campaign for e in eligible]
        probabilities = self.pctr(profile, chosen)
        by_id = {e.campaign.id: (e, float(p)) for e, p in zip(eligible, probabilities, strict=True)}
        bids = [AdBid(c.id, c.bid_cpc, by_id[c.id][1]) for c in chosen]
        placements = run_auction(bids, [i.click_probability for i in organic], slots, self.auction)
        day = now.date()
        if placements:
            # The price a click on this impression costs, read back when the impression is
            # reported (the client reports what it showed; the server priced it here).
            self.counters.set_many(
                {_price_key(p.bid.campaign_id, user, day): p.price_cpc for p in placements},
                ttl_s=COUNTER_TTL_S,
            )
        items = []
        for placement in placements:
            eligibility, probability = by_id[placement.bid.campaign_id]
            matched = eligibility.matched or []
            items.append(
                SponsoredItem(
                    campaign=eligibility.campaign,
                    position=placement.position,
                    price_cpc=placement.price_cpc,
                    pctr=probability,
                    explanation=self.explain(eligibility.campaign, matched),
                    matched=[code for code, _ in matched] or ["untargeted"],
                )
            )
        return items

    # --- ad events --------------------------------------------------------------------------
    def check_events(
        self, drafts: Sequence[tuple[str, AdEventDraft]]
    ) -> list[tuple[AdEventDraft, datetime, Campaign]]:
        """Validate ad events before anything of their request is stored: (field prefix for
        errors, e.g. `events[3].`, draft) -> (draft, when, campaign)."""
        now = utcnow()
        checked = []
        for where, draft in drafts:
            if draft.type not in AD_EVENT_TYPES:
                raise InvalidInput(
                    f"an ad event is one of {', '.join(AD_EVENT_TYPES)}, not {draft.type!r}",
                    field=f"{where}type",
                )
            stored = self.store.get_campaign(draft.campaign_id)
            if stored is None:
                raise InvalidInput(
                    f"campaign {draft.campaign_id!r} does not exist", field=f"{where}campaign_id"
                )
            ts = draft.ts or now
            if (ts - now).total_seconds() > 300:
                raise InvalidInput("ts is in the future", field=f"{where}ts")
            checked.append((draft, ts, Campaign.from_stored(stored)))
        return checked

    def record_checked(
        self, checked: Sequence[tuple[AdEventDraft, datetime, Campaign]]
    ) -> AdEventReport:
        """Store and charge checked ad events, oldest first (an impression before its click)."""
        report = AdEventReport()
        for draft, ts, campaign in sorted(checked, key=lambda item: item[1]):
            self._record(draft, ts, campaign, report)
        return report

    def _record(
        self, draft: AdEventDraft, ts: datetime, campaign: Campaign, report: AdEventReport
    ) -> None:
        user = self.pseudonym(draft.user_id)
        digest = self.event_digest(user, draft.event_id or uuid.uuid4().hex)
        if self.store.known_event(user, digest):
            report.duplicates += 1
            return
        day = ts.date()
        record = AdEventRecord(digest, campaign.id, user, draft.type, ts)
        undo: list[Callable[[], None]] = []
        try:
            if draft.type == "impression":
                self._impression(record, campaign, draft.user_id, undo)
            elif draft.type == "click":
                reason = self._click(record, campaign, undo)
                if reason is None:
                    report.billed += 1
                else:
                    report.unbilled[reason] = report.unbilled.get(reason, 0) + 1
            else:
                record.billed = self.store.clicked(campaign.id, user, day)
            if self.store.insert_event(record):
                report.accepted += 1
            else:  # the same event id raced in from another request
                for step in reversed(undo):
                    step()
                report.duplicates += 1
        except Exception:
            for step in reversed(undo):
                step()
            raise

    def _impression(
        self, record: AdEventRecord, campaign: Campaign, user_id: str, undo: list
    ) -> None:
        day = record.ts.date()
        seen = _seen_key(campaign.id, record.user, day)
        self.counters.add(seen, 1.0, ttl_s=COUNTER_TTL_S)
        undo.append(lambda: self.counters.add(seen, -1.0, ttl_s=COUNTER_TTL_S))
        served = self.counters.get(_price_key(campaign.id, record.user, day))
        # Not priced by a feed of ours (or the counters were lost): never above the bid.
        record.price = served if served > 0 else campaign.bid_cpc
        profile = self.recommender.profiles.get(user_id) if self.recommender is not None else None
        reader = self.reader_view(profile)
        record.segment = reader.segment
        record.category = reader.top_categories[0] if reader.top_categories else None

    def _click(self, record: AdEventRecord, campaign: Campaign, undo: list) -> str | None:
        """Charge a click: None if billed, else why not."""
        day = record.ts.date()
        price = self.store.impression_price(campaign.id, record.user, day)
        if price is None:
            return "no_impression"
        claim = _click_key(campaign.id, record.user, day)
        if not self.counters.claim(claim, COUNTER_TTL_S):
            return "repeat_click"
        undo.append(lambda: self.counters.release(claim))
        daily_key, total_key = _keys(campaign.id, day)
        if campaign.total_budget is not None:
            added, _ = self.counters.add_if_under(total_key, price, campaign.total_budget)
            if not added:
                return "total_budget_spent"
        else:
            self.counters.add(total_key, price)
        undo.append(lambda: self.counters.add(total_key, -price))
        budget = campaign.daily_budget
        added, _ = self.counters.add_if_under(daily_key, price, budget, COUNTER_TTL_S)
        if not added:
            self.counters.add(total_key, -price)
            undo.pop()
            return "daily_budget_spent"
        undo.append(lambda: self.counters.add(daily_key, -price, ttl_s=COUNTER_TTL_S))
        record.price, record.billed = price, True
        return None

    # --- counters ---------------------------------------------------------------------------
    def refill_counters(self) -> None:
        """Spend, frequency caps and click claims of today (and spend ever) from the ad events:
        after a start with empty counters, or when Redis came back empty."""
        today = self.clock().date()
        spend_today, spend_total = self.store.spend(today)
        values: dict[str, float] = {}
        for cid, spent in spend_today.items():
            values[_keys(cid, today)[0]] = spent
        for cid, spent in spend_total.items():
            values[_keys(cid, today)[1]] = spent
        for (cid, user), seen in self.store.impressions_per_reader(today).items():
            values[_seen_key(cid, user, today)] = float(seen)
        if values:
            self.counters.set_many(values, ttl_s=None)
        log.info("ad counters refilled: %d values", len(values))

    # --- reports ----------------------------------------------------------------------------
    def report(self, campaign_id: str) -> dict[str, Any]:
        campaign = self.campaigns.get(campaign_id)
        days = self.store.daily_totals(campaign_id)
        total = DailyTotals(
            date.min,
            sum(d.impressions for d in days),
            sum(d.clicks for d in days),
            sum(d.billed_clicks for d in days),
            sum(d.conversions for d in days),
            sum(d.spend for d in days),
        )
        return {
            "campaign_id": campaign.id,
            "advertiser": campaign.advertiser,
            **_figures(total),
            "days": [{"day": d.day.isoformat(), **_figures(d)} for d in days],
            "pacing": self.pacing(campaign),
            "audience": self.audience(campaign_id),
        }

    def pacing(self, campaign: Campaign) -> dict[str, Any]:
        now = self.clock()
        daily_key, total_key = _keys(campaign.id, now.date())
        spent_today, spent_total = self.counters.get_many([daily_key, total_key])
        elapsed = day_share(now)
        expected = campaign.daily_budget * elapsed
        if not campaign.live_at(now):
            state = "not_live"
        elif spent_today >= campaign.daily_budget or (
            campaign.total_budget is not None and spent_total >= campaign.total_budget
        ):
            state = "budget_spent"
        elif self._ahead(campaign, spent_today, elapsed):
            state = "ahead"  # throttled until the day catches up
        elif spent_today < 0.5 * expected:
            state = "behind"
        else:
            state = "on_pace"
        return {
            "state": state,
            "day": now.date().isoformat(),
            "daily_budget": campaign.daily_budget,
            "spend_today": round(spent_today, 4),
            "expected_by_now": round(expected, 4),
            "day_elapsed": round(elapsed, 4),
            "total_budget": campaign.total_budget,
            "spend_total": round(spent_total, 4),
        }

    def audience(self, campaign_id: str) -> dict[str, Any]:
        """Readers reached and readers who clicked, per interest segment and per top category:
        each count has Laplace noise (OpenDP) and a cell is shown only when it has at least k
        readers (true and noisy). Every reader is in one cell per breakdown, so one breakdown
        is a partition and its two counts cost ε/4 each: ε for the report."""
        k, epsilon = self.config.report_min_readers, self.config.report_epsilon
        queries = 4
        noise = _laplace(scale=queries / epsilon)
        breakdowns: dict[str, list[dict[str, Any]]] = {}
        hidden = 0
        for column in ("segment", "category"):
            cells = []
            for cell, readers, clickers in self.store.readers_by_cell(campaign_id, column):
                noisy_readers = max(0, noise(readers))
                if readers < k or noisy_readers < k:
                    hidden += 1
                    continue
                noisy_clickers = min(max(0, noise(clickers)), noisy_readers)
                cells.append({"cell": cell, "readers": noisy_readers, "clickers": noisy_clickers})
            breakdowns[column] = cells
        return {
            "by_segment": breakdowns["segment"],
            "by_category": breakdowns["category"],
            "min_readers": k,
            "epsilon": epsilon,
            "mechanism": f"OpenDP discrete Laplace, scale {queries / epsilon:g} per count",
            "cells_hidden": hidden,
        }

    # --- preview, readers' rights -----------------------------------------------------------
    def preview(self, campaign_id: str, readers: Sequence[str]) -> list[dict[str, Any]]:
        """Would each example reader see the campaign now, and why (not)."""
        campaign = self.campaigns.get(campaign_id)
        now = self.clock()
        rows = []
        for n, user_id in enumerate(readers):
            profile = self.recommender.profiles.get(user_id) if self.recommender else None
            view = self.reader_view(profile)
            (eligibility,) = self.eligibility([campaign], view, self.pseudonym(user_id), now)
            probability = float(self.pctr(profile, [campaign])[0])
            if eligibility.matched is None:
                reason = "targeting does not match this reader"
            elif eligibility.blocked:
                reason = eligibility.blocked
            else:
                reason = self.explain(campaign, eligibility.matched)
            rows.append(
                {
                    "reader": f"example reader {n + 1}",
                    "interests": view.top_categories,
                    "segment": view.segment,
                    "eligible": eligibility.matched is not None and eligibility.blocked is None,
                    "why": reason,
                    "pctr": round(probability, 5),
                    "ecpm": round(1000 * probability * campaign.bid_cpc, 4),
                }
            )
        return rows

    def user_events(self, user_id: str) -> list[dict[str, Any]]:
        return self.store.user_events(self.pseudonym(user_id))

    def forget_user(self, user_id: str) -> int:
        """Unlink a deleted reader's ad events; returns how many."""
        return self.store.forget_reader(self.pseudonym(user_id))


def _figures(totals: DailyTotals) -> dict[str, Any]:
    impressions, clicks = totals.impressions, totals.clicks
    return {
        "impressions": impressions,
        "clicks": clicks,
        "billed_clicks": totals.billed_clicks,
        "ctr": round(clicks / impressions, 5) if impressions else 0.0,
        "conversions": totals.conversions,
        "spend": round(totals.spend, 4),
        "avg_cpc": round(totals.spend / totals.billed_clicks, 4) if totals.billed_clicks else 0.0,
        "ecpm": round(1000 * totals.spend / impressions, 4) if impressions else 0.0,
    }


def _laplace(scale: float) -> Callable[[int], int]:
    """Integer counts with discrete Laplace noise of `scale` (ε = 1/scale per count of
    sensitivity 1), from OpenDP."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    measurement = dp.m.make_laplace(dp.atom_domain(T=int), dp.absolute_distance(T=int), scale)
    assert math.isclose(measurement.map(1), 1 / scale)
    return lambda count: int(measurement(int(count)))
