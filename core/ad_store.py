"""Campaigns and ad events in the database (the source of truth beside the fast counters).

Tables live on the same SQLAlchemy metadata and engine as the rest of `core.storage`. Ad events
keep the reader's pseudonym only so that a click can be matched to its impression and a reader
counted once in a breakdown; a reader's deletion clears it (the counts stay, unlinked).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
from sqlalchemy import (
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    and_,
    case,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import Case, ColumnElement

from core.domain import as_utc, utcnow
from core.storage import Base, insert_new


class CampaignRow(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    advertiser: Mapped[str] = mapped_column(String(200))
    spec: Mapped[str] = mapped_column(Text)  # the campaign as the advertiser set it (JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    creative_vector: Mapped[bytes] = mapped_column(LargeBinary)
    audience_vector: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


AD_EVENT_UNIQUE = "uq_ad_events_user_event"


class AdEventRow(Base):
    __tablename__ = "ad_events"
    __table_args__ = (UniqueConstraint("user_id", "event_id", name=AD_EVENT_UNIQUE),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))  # keyed digest, as in `events`
    campaign_id: Mapped[str] = mapped_column(String(32), index=True)
    # The reader's pseudonym; NULL once the reader was deleted.
    user_id: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)
    type: Mapped[str] = mapped_column(String(16))
    day: Mapped[date] = mapped_column(Date, index=True)  # UTC day of `ts`
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # impression: the GSP price a click on it costs; click: what was charged (0: not billed)
    price: Mapped[float] = mapped_column(Float, default=0.0)
    billed: Mapped[int] = mapped_column(Integer, default=0)
    segment: Mapped[str | None] = mapped_column(String(32), nullable=True)
    category: Mapped[str | None] = mapped_column(String(64), nullable=True)


@dataclass(slots=True)
class StoredCampaign:
    id: str
    advertiser: str
    spec: dict
    status: str
    creative_vector: np.ndarray
    audience_vector: np.ndarray | None
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class AdEventRecord:
    event_id: str  # digest
    campaign_id: str
    user: str  # pseudonym
    type: str
    ts: datetime
    price: float = 0.0
    billed: bool = False
    segment: str | None = None
    category: str | None = None


@dataclass(slots=True)
class DailyTotals:
    day: date
    impressions: int
    clicks: int
    billed_clicks: int
    conversions: int
    spend: float


def _vector(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float32).copy()


def _columns(campaign: StoredCampaign) -> dict[str, object]:
    """What an insert or an update writes (besides the id and the creation time)."""
    audience = campaign.audience_vector
    return {
        "advertiser": campaign.advertiser,
        "spec": json.dumps(campaign.spec),
        "status": campaign.status,
        "creative_vector": campaign.creative_vector.astype(np.float32).tobytes(),
        "audience_vector": None if audience is None else audience.astype(np.float32).tobytes(),
        "updated_at": campaign.updated_at,
    }


def _campaign(row: CampaignRow) -> StoredCampaign:
    return StoredCampaign(
        id=row.id,
        advertiser=row.advertiser,
        spec=json.loads(row.spec),
        status=row.status,
        creative_vector=_vector(row.creative_vector),  # type: ignore[arg-type]
        audience_vector=_vector(row.audience_vector),
        created_at=as_utc(row.created_at) or utcnow(),
        updated_at=as_utc(row.updated_at) or utcnow(),
    )


class AdStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        Base.metadata.create_all(engine, tables=[CampaignRow.__table__, AdEventRow.__table__])

    # --- campaigns --------------------------------------------------------------------------
    def insert_campaign(self, campaign: StoredCampaign) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(CampaignRow).values(
                    id=campaign.id, created_at=campaign.created_at, **_columns(campaign)
                )
            )

    def update_campaign(self, campaign: StoredCampaign) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(CampaignRow)
                .where(CampaignRow.id == campaign.id, CampaignRow.deleted_at.is_(None))
                .values(**_columns(campaign))
            )
        return bool(result.rowcount)

    def delete_campaign(self, campaign_id: str) -> bool:
        """Soft: the row stays for the ad events that reference it (billing), unlisted."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(CampaignRow)
                .where(CampaignRow.id == campaign_id, CampaignRow.deleted_at.is_(None))
                .values(deleted_at=utcnow(), status="paused")
            )
        return bool(result.rowcount)

    def get_campaign(self, campaign_id: str) -> StoredCampaign | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(CampaignRow).where(
                    CampaignRow.id == campaign_id, CampaignRow.deleted_at.is_(None)
                )
            ).first()
        return None if row is None else _campaign(row)  # type: ignore[arg-type]

    def list_campaigns(self, status: str | None = None, limit: int = 1000) -> list[StoredCampaign]:
        query = select(CampaignRow).where(CampaignRow.deleted_at.is_(None))
        if status is not None:
            query = query.where(CampaignRow.status == status)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(CampaignRow.created_at).limit(limit))
            return [_campaign(r) for r in rows]  # type: ignore[arg-type]

    def campaign_versions(self, status: str = "active") -> dict[str, datetime]:
        """id -> updated_at of the live campaigns with `status` (what a feed checks per
        request: one small query, the full rows only when one changed)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(CampaignRow.id, CampaignRow.updated_at).where(
                    CampaignRow.deleted_at.is_(None), CampaignRow.status == status
                )
            )
            return {cid: as_utc(ts) or utcnow() for cid, ts in rows}

    def campaigns_by_id(self, ids: Sequence[str]) -> list[StoredCampaign]:
        if not ids:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(select(CampaignRow).where(CampaignRow.id.in_(list(ids))))
            return [_campaign(r) for r in rows]  # type: ignore[arg-type]

    # --- ad events --------------------------------------------------------------------------
    def insert_event(self, record: AdEventRecord) -> bool:
        """False if this reader's event id was recorded before (a retry)."""
        return insert_new(
            self.engine,
            insert(AdEventRow).values(
                event_id=record.event_id,
                campaign_id=record.campaign_id,
                user_id=record.user,
                type=record.type,
                day=record.ts.date(),
                ts=record.ts,
                price=record.price,
                billed=int(record.billed),
                segment=record.segment,
                category=record.category,
            ),
        )

    def known_event(self, user: str, event_id: str) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(
                select(AdEventRow.seq).where(
                    AdEventRow.user_id == user, AdEventRow.event_id == event_id
                )
            ).first()
        return found is not None

    def impression_price(self, campaign_id: str, user: str, day: date) -> float | None:
        """The price of the reader's latest impression of the campaign that day; None when
        no impression was recorded (a click on it is not charged)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(AdEventRow.price)
                .where(
                    AdEventRow.campaign_id == campaign_id,
                    AdEventRow.user_id == user,
                    AdEventRow.day == day,
                    AdEventRow.type == "impression",
                )
                .order_by(AdEventRow.seq.desc())
                .limit(1)
            ).first()
        return None if row is None else float(row[0])

    def clicked(self, campaign_id: str, user: str, day: date) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(AdEventRow.seq).where(
                    AdEventRow.campaign_id == campaign_id,
                    AdEventRow.user_id == user,
                    AdEventRow.day == day,
                    AdEventRow.type == "click",
                )
            ).first()
        return row is not None

    def daily_totals(self, campaign_id: str) -> list[DailyTotals]:
        kind = AdEventRow.type
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    AdEventRow.day,
                    func.sum(_when(kind == "impression")),
                    func.sum(_when(kind == "click")),
                    func.sum(_when(and_(kind == "click", AdEventRow.billed == 1))),
                    func.sum(_when(and_(kind == "conversion", AdEventRow.billed == 1))),
                    func.sum(_when(kind == "click", AdEventRow.price)),
                )
                .where(AdEventRow.campaign_id == campaign_id)
                .group_by(AdEventRow.day)
                .order_by(AdEventRow.day)
            )
            return [
                DailyTotals(d, int(i or 0), int(c or 0), int(b or 0), int(v or 0), float(s or 0))
                for d, i, c, b, v, s in rows
            ]

    def spend(self, day: date) -> tuple[dict[str, float], dict[str, float]]:
        """(campaign -> spend on `day`, campaign -> spend ever): a refill of the counters."""
        with self.engine.connect() as conn:
            billed = and_(AdEventRow.type == "click", AdEventRow.billed == 1)
            daily = conn.execute(
                select(AdEventRow.campaign_id, func.sum(AdEventRow.price))
                .where(billed, AdEventRow.day == day)
                .group_by(AdEventRow.campaign_id)
            )
            today = {c: float(s or 0) for c, s in daily}
            total = conn.execute(
                select(AdEventRow.campaign_id, func.sum(AdEventRow.price))
                .where(billed)
                .group_by(AdEventRow.campaign_id)
            )
            return today, {c: float(s or 0) for c, s in total}

    def impressions_per_reader(self, day: date) -> dict[tuple[str, str], int]:
        """(campaign, reader) -> impressions on `day`: a refill of the frequency caps."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(AdEventRow.campaign_id, AdEventRow.user_id, func.count())
                .where(
                    AdEventRow.type == "impression",
                    AdEventRow.day == day,
                    AdEventRow.user_id.is_not(None),
                )
                .group_by(AdEventRow.campaign_id, AdEventRow.user_id)
            )
            return {(c, u): int(n) for c, u, n in rows}

    def readers_by_cell(self, campaign_id: str, column: str) -> list[tuple[str, int, int]]:
        """(cell, readers with an impression, readers with a click) per cell of `column`
        (`segment` or `category`); each reader counted once, in the cell of their first
        impression, so cells partition readers (a reader moves no count in two cells)."""
        cell = getattr(AdEventRow, column)
        with self.engine.connect() as conn:
            first = (
                select(AdEventRow.user_id, func.min(AdEventRow.seq).label("seq"))
                .where(
                    AdEventRow.campaign_id == campaign_id,
                    AdEventRow.type == "impression",
                    AdEventRow.user_id.is_not(None),
                )
                .group_by(AdEventRow.user_id)
                .subquery()
            )
            cells = dict(
                conn.execute(
                    select(first.c.user_id, cell).join(AdEventRow, AdEventRow.seq == first.c.seq)
                ).all()
            )
            clickers = set(
                conn.execute(
                    select(AdEventRow.user_id)
                    .where(
                        AdEventRow.campaign_id == campaign_id,
                        AdEventRow.type == "click",
                        AdEventRow.user_id.is_not(None),
                    )
                    .distinct()
                ).scalars()
            )
        reach: dict[str, list[int]] = {}
        for user, name in cells.items():
            counts = reach.setdefault(name or "unknown", [0, 0])
            counts[0] += 1
            counts[1] += user in clickers
        return [(name, r, c) for name, (r, c) in sorted(reach.items())]

    def user_events(self, user: str) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(AdEventRow.campaign_id, AdEventRow.type, AdEventRow.ts)
                .where(AdEventRow.user_id == user)
                .order_by(AdEventRow.seq)
            ).all()
        return [{"campaign_id": c, "type": t, "ts": as_utc(ts)} for c, t, ts in rows]

    def forget_reader(self, user: str) -> int:
        """Unlink a deleted reader's ad events (campaign totals stay right)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(AdEventRow).where(AdEventRow.user_id == user).values(user_id=None)
            )
        return int(result.rowcount or 0)


def _when(condition: ColumnElement[bool], value: object = 1) -> Case:
    return case((condition, value), else_=0)
