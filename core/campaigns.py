"""`CampaignService`: advertisers' campaigns (creative, bid, budgets, schedule, targeting).

Field-level rules (positive prices, sizes) are checked where requests are parsed; the rules
that span fields or need the newsroom's state (end after start, known interest segments) are
checked here, on the merged campaign, so a PATCH can never produce a campaign a POST could not.
The creative and the free-text audience are embedded once, when they change.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np

from core.ad_store import AdStore, StoredCampaign
from core.domain import as_utc, utcnow
from core.errors import InvalidInput, NotFound


@dataclass(slots=True)
class Creative:
    title: str
    url: str
    body: str = ""
    category: str | None = None


@dataclass(slots=True)
class Targeting:
    categories: list[str] = field(default_factory=list)  # any of the reader's top interests
    segments: list[str] = field(default_factory=list)  # interest segments (`segment-N`)
    audience: str | None = None  # free text, matched by embedding similarity
    audience_threshold: float | None = None  # None: the newsroom's default

    @property
    def untargeted(self) -> bool:
        return not (self.categories or self.segments or self.audience)


@dataclass(slots=True)
class Campaign:
    id: str
    advertiser: str
    creative: Creative
    bid_cpc: float
    daily_budget: float
    status: str  # active | paused
    targeting: Targeting
    total_budget: float | None = None
    start: datetime | None = None
    end: datetime | None = None
    frequency_cap: int | None = None  # impressions per reader per UTC day
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    creative_vector: np.ndarray | None = None  # (d,) unit
    audience_vector: np.ndarray | None = None  # (d,) unit

    def live_at(self, moment: datetime) -> bool:
        """Active and inside its schedule."""
        return (
            self.status == "active"
            and (self.start is None or self.start <= moment)
            and (self.end is None or moment < self.end)
        )

    def spec(self) -> dict[str, Any]:
        """What the advertiser set, as JSON-ready data."""
        return {
            "advertiser": self.advertiser,
            "creative": {
                "title": self.creative.title,
                "body": self.creative.body,
                "url": self.creative.url,
                "category": self.creative.category,
            },
            "bid_cpc": self.bid_cpc,
            "daily_budget": self.daily_budget,
            "total_budget": self.total_budget,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "status": self.status,
            "targeting": {
                "categories": self.targeting.categories,
                "segments": self.targeting.segments,
                "audience": self.targeting.audience,
                "audience_threshold": self.targeting.audience_threshold,
            },
            "frequency_cap": self.frequency_cap,
        }

    @classmethod
    def from_spec(
        cls,
        campaign_id: str,
        spec: dict[str, Any],
        created_at: datetime | None = None,
        updated_at: datetime | None = None,
    ) -> Campaign:
        creative, targeting = spec["creative"], spec.get("targeting") or {}

        def moment(value: Any) -> datetime | None:
            if value is None or isinstance(value, datetime):
                return as_utc(value)
            return as_utc(datetime.fromisoformat(value))

        return cls(
            id=campaign_id,
            advertiser=spec["advertiser"],
            creative=Creative(
                title=creative["title"],
                url=creative["url"],
                body=creative.get("body") or "",
                category=(creative.get("category") or None),
            ),
            bid_cpc=float(spec["bid_cpc"]),
            daily_budget=float(spec["daily_budget"]),
            total_budget=None if spec.get("total_budget") is None else float(spec["total_budget"]),
            start=moment(spec.get("start")),
            end=moment(spec.get("end")),
            status=spec.get("status") or "active",
            targeting=Targeting(
                categories=[c.lower() for c in targeting.get("categories") or []],
                segments=list(targeting.get("segments") or []),
                audience=(targeting.get("audience") or None),
                audience_threshold=targeting.get("audience_threshold"),
            ),
            frequency_cap=spec.get("frequency_cap"),
            created_at=created_at or utcnow(),
            updated_at=updated_at or utcnow(),
        )

    @classmethod
    def from_stored(cls, stored: StoredCampaign) -> Campaign:
        campaign = cls.from_spec(stored.id, stored.spec, stored.created_at, stored.updated_at)
        campaign.creative_vector = stored.creative_vector
        campaign.audience_vector = stored.audience_vector
        return campaign

    def stored(self) -> StoredCampaign:
        assert self.creative_vector is not None
        return StoredCampaign(
            id=self.id,
            advertiser=self.advertiser,
            spec=self.spec(),
            status=self.status,
            creative_vector=self.creative_vector,
            audience_vector=self.audience_vector,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


class CampaignNotFound(NotFound):
    def __init__(self, campaign_id: str) -> None:
        super().__init__(f"campaign {campaign_id!r} does not exist", field="campaign_id")


class CampaignService:
    def __init__(
        self,
        store: AdStore,
        encode: Callable[[list[str]], np.ndarray],
        known_segments: Callable[[], list[str]],
    ) -> None:
        """`encode`: texts -> (n, d) unit vectors (the article embedder);
        `known_segments`: the interest segments a campaign may target now."""
        self.store = store
        self.encode = encode
        self.known_segments = known_segments

    def create(self, spec: dict[str, Any]) -> Campaign:
        campaign = Campaign.from_spec("c-" + secrets.token_hex(6), spec)
        self._check(campaign)
        self._embed(campaign, creative=True, audience=True)
        self.store.insert_campaign(campaign.stored())
        return campaign

    def get(self, campaign_id: str) -> Campaign:
        stored = self.store.get_campaign(campaign_id)
        if stored is None:
            raise CampaignNotFound(campaign_id)
        return Campaign.from_stored(stored)

    def list(self, status: str | None = None) -> list[Campaign]:
        return [Campaign.from_stored(s) for s in self.store.list_campaigns(status)]

    def update(self, campaign_id: str, changes: dict[str, Any]) -> Campaign:
        """Merge `changes` (only the fields sent; nested creative/targeting merge too) and
        check the result as a whole. A pause or a new bid holds from the next feed on."""
        current = self.get(campaign_id)
        spec = current.spec()
        for key, value in changes.items():
            if key in ("creative", "targeting") and isinstance(value, dict):
                spec[key] = {**spec[key], **value}
            else:
                spec[key] = value
        updated = Campaign.from_spec(campaign_id, spec, current.created_at, utcnow())
        self._check(updated)
        creative_changed = (updated.creative.title, updated.creative.body) != (
            current.creative.title,
            current.creative.body,
        )
        audience_changed = updated.targeting.audience != current.targeting.audience
        updated = replace(
            updated,
            creative_vector=current.creative_vector,
            audience_vector=current.audience_vector,
        )
        self._embed(updated, creative=creative_changed, audience=audience_changed)
        if not self.store.update_campaign(updated.stored()):
            raise CampaignNotFound(campaign_id)
        return updated

    def delete(self, campaign_id: str) -> None:
        if not self.store.delete_campaign(campaign_id):
            raise CampaignNotFound(campaign_id)

    def _check(self, campaign: Campaign) -> None:
        if campaign.start and campaign.end and campaign.end <= campaign.start:
            raise InvalidInput("end must be after start", field="end")
        if campaign.total_budget is not None and campaign.total_budget < campaign.bid_cpc:
            raise InvalidInput(
                "total_budget is below one click at bid_cpc: it could never buy a click",
                field="total_budget",
            )
        if campaign.daily_budget < campaign.bid_cpc:
            raise InvalidInput(
                "daily_budget is below one click at bid_cpc: it could never buy a click",
                field="daily_budget",
            )
        wanted = campaign.targeting.segments
        if wanted:
            known = set(self.known_segments())
            unknown = [s for s in wanted if s not in known]
            if unknown:
                listed = ", ".join(sorted(known)) if known else "none yet"
                raise InvalidInput(
                    f"unknown interest segment {unknown[0]!r}; known: {listed} (GET /v1/segments)",
                    field="targeting.segments",
                )

    def _embed(self, campaign: Campaign, creative: bool, audience: bool) -> None:
        texts, slots = [], []
        if creative or campaign.creative_vector is None:
            texts.append(f"{campaign.creative.title}. {campaign.creative.body}".strip())
            slots.append("creative")
        if campaign.targeting.audience and (audience or campaign.audience_vector is None):
            texts.append(campaign.targeting.audience)
            slots.append("audience")
        if not campaign.targeting.audience:
            campaign.audience_vector = None
        if not texts:
            return
        vectors = self.encode(texts)
        for slot, vector in zip(slots, vectors, strict=True):
            setattr(campaign, f"{slot}_vector", np.asarray(vector, dtype=np.float32))
