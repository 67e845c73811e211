"""What the learning loop keeps in the database: the exposure log, A/B experiments and the
model registry.

Tables live on the same SQLAlchemy metadata and engine as the rest of `core.storage`, so they
are in PostgreSQL in shared mode and every process and host sees the same experiments and the
same champion.

- `feed_exposures` / `exposures`: every feed and rank answer (one row) and what it showed (one
  row per item, with its position, score and propensity). Readers are pseudonyms; a reader's
  deletion deletes their exposures; retention purges them with the events.
- `experiments`: the A/B experiments with their arms (JSON) and state.
- `model_versions`: trained ranking heads with their reports. The weights are stored in the
  database (a head is ~200 kB) so a version registered on one host loads on every other; the
  champion is the version marked so, and promoting one writes a `champion` entry to the change
  log, which every process follows and reloads from.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    DateTime,
    Float,
    Integer,
    LargeBinary,
    String,
    Text,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from core.domain import as_utc, utcnow
from core.storage import Base, EventRow, log_changes


class FeedExposureRow(Base):
    __tablename__ = "feed_exposures"

    feed_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), index=True)  # the reader's pseudonym
    surface: Mapped[str] = mapped_column(String(16))  # feed | rank
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    model_version: Mapped[str] = mapped_column(String(64))
    experiment_id: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)
    arm: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The top slot's exploration: the keys the logging policy chose among (in its greedy
    # order) and whether this feed explored. The first item's propensity is relative to these.
    candidates: Mapped[str] = mapped_column(Text, default="[]")
    explored: Mapped[int] = mapped_column(Integer, default=0)


class ExposureRow(Base):
    __tablename__ = "exposures"
    __table_args__ = ({"sqlite_autoincrement": True},)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    feed_id: Mapped[str] = mapped_column(String(32), index=True)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    article_key: Mapped[int] = mapped_column(Integer, index=True)
    position: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    propensity: Mapped[float] = mapped_column(Float)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    clicked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # In an interleaving experiment: the arm ("a", the first, or "b") that contributed the item
    team: Mapped[str | None] = mapped_column(String(1), nullable=True)


class ExperimentRow(Base):
    __tablename__ = "experiments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[str] = mapped_column(Text)  # arms and settings as the admin set them (JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)  # running | stopped
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    outcome: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON, when stopped


class ModelVersionRow(Base):
    __tablename__ = "model_versions"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # ranker
    status: Mapped[str] = mapped_column(String(16), index=True)  # challenger|champion|retired
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    report: Mapped[str] = mapped_column(Text)  # JSON
    config: Mapped[str] = mapped_column(Text)  # the head's config.json
    weights: Mapped[bytes] = mapped_column(LargeBinary)  # its model.safetensors


@dataclass(slots=True)
class ShownItem:
    article_key: int
    position: int
    score: float
    propensity: float
    clicked: bool = False
    team: str | None = None


@dataclass(slots=True)
class LoggedFeed:
    feed_id: str
    user: str  # pseudonym
    surface: str
    ts: datetime
    model_version: str
    experiment_id: str | None
    arm: str | None
    items: list[ShownItem]
    candidates: list[int] = field(default_factory=list)
    explored: bool = False


@dataclass(slots=True)
class ReaderTally:
    """One reader's activity in an experiment arm."""

    user: str
    arm: str
    feeds: int
    exposures: int
    clicks: int


@dataclass(slots=True)
class StoredExperiment:
    id: str
    name: str
    spec: dict
    status: str
    created_at: datetime
    started_at: datetime
    stopped_at: datetime | None
    outcome: dict | None


@dataclass(slots=True)
class ModelVersion:
    version: str
    kind: str
    status: str
    created_at: datetime
    promoted_at: datetime | None
    report: dict


def _experiment(row: Any) -> StoredExperiment:
    return StoredExperiment(
        id=row.id,
        name=row.name,
        spec=json.loads(row.spec),
        status=row.status,
        created_at=as_utc(row.created_at) or utcnow(),
        started_at=as_utc(row.started_at) or utcnow(),
        stopped_at=as_utc(row.stopped_at),
        outcome=json.loads(row.outcome) if row.outcome else None,
    )


def _version(row: Any) -> ModelVersion:
    return ModelVersion(
        version=row.version,
        kind=row.kind,
        status=row.status,
        created_at=as_utc(row.created_at) or utcnow(),
        promoted_at=as_utc(row.promoted_at),
        report=json.loads(row.report),
    )


class LearningStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        tables = [FeedExposureRow, ExposureRow, ExperimentRow, ModelVersionRow]
        Base.metadata.create_all(engine, tables=[t.__table__ for t in tables])  # type: ignore[attr-defined]

    # --- exposures ----------------------------------------------------------------------------
    def write_feeds(self, feeds: Sequence[LoggedFeed], retry: bool = False) -> None:
        """One transaction for the batch. `retry`: the batch may have been written by an
        attempt whose commit was lost in an outage; feeds already stored are skipped."""
        with self.engine.begin() as conn:
            if retry and feeds:
                stored = set(
                    conn.execute(
                        select(FeedExposureRow.feed_id).where(
                            FeedExposureRow.feed_id.in_([f.feed_id for f in feeds])
                        )
                    ).scalars()
                )
                feeds = [f for f in feeds if f.feed_id not in stored]
            if not feeds:
                return
            conn.execute(
                insert(FeedExposureRow),
                [
                    {
                        "feed_id": f.feed_id,
                        "user_id": f.user,
                        "surface": f.surface,
                        "ts": f.ts,
                        "model_version": f.model_version,
                        "experiment_id": f.experiment_id,
                        "arm": f.arm,
                        "candidates": json.dumps(f.candidates),
                        "explored": int(f.explored),
                    }
                    for f in feeds
                ],
            )
            rows = [
                {
                    "feed_id": f.feed_id,
                    "user_id": f.user,
                    "article_key": i.article_key,
                    "position": i.position,
                    "score": i.score,
                    "propensity": i.propensity,
                    "ts": f.ts,
                    "team": i.team,
                }
                for f in feeds
                for i in f.items
            ]
            if rows:
                conn.execute(insert(ExposureRow), rows)

    def join_clicks(self, clicks: Sequence[tuple[str, int, datetime]], window: timedelta) -> int:
        """Mark, for each (pseudonym, article key, click time), the latest exposure of that
        article to that reader within `window` before the click that has no click yet. Returns
        the clicks joined (a click on an article never shown is organic and joins nothing)."""
        joined = 0
        with self.engine.begin() as conn:
            for user, key, ts in clicks:
                latest = conn.execute(
                    select(func.max(ExposureRow.seq)).where(
                        ExposureRow.user_id == user,
                        ExposureRow.article_key == key,
                        ExposureRow.ts <= ts + timedelta(seconds=5),  # clock skew between hosts
                        ExposureRow.ts >= ts - window,
                        ExposureRow.clicked_at.is_(None),
                    )
                ).scalar_one_or_none()
                if latest is not None:
                    conn.execute(
                        update(ExposureRow).where(ExposureRow.seq == latest).values(clicked_at=ts)
                    )
                    joined += 1
        return joined

    def forget_user(self, user: str) -> int:
        with self.engine.begin() as conn:
            removed = conn.execute(delete(ExposureRow).where(ExposureRow.user_id == user))
            conn.execute(delete(FeedExposureRow).where(FeedExposureRow.user_id == user))
        return int(removed.rowcount or 0)

    def purge_before(self, cutoff: datetime) -> int:
        with self.engine.begin() as conn:
            removed = conn.execute(delete(ExposureRow).where(ExposureRow.ts < cutoff))
            conn.execute(delete(FeedExposureRow).where(FeedExposureRow.ts < cutoff))
        return int(removed.rowcount or 0)

    def count_exposures(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(ExposureRow)).scalar_one())

    def user_feeds(self, user: str) -> list[LoggedFeed]:
        return list(self.iter_feeds(user=user))

    def iter_feeds(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        user: str | None = None,
        batch: int = 2_000,
        experiment_id: str | None = None,
    ) -> Iterator[LoggedFeed]:
        """Logged feeds in time order with what they showed and whether it was clicked."""
        conditions = []
        if since is not None:
            conditions.append(FeedExposureRow.ts >= since)
        if until is not None:
            conditions.append(FeedExposureRow.ts < until)
        if user is not None:
            conditions.append(FeedExposureRow.user_id == user)
        if experiment_id is not None:
            conditions.append(FeedExposureRow.experiment_id == experiment_id)
        after: tuple[datetime, str] | None = None
        while True:
            query = select(FeedExposureRow).where(*conditions)
            if after is not None:
                query = query.where(
                    (FeedExposureRow.ts > after[0])
                    | and_(FeedExposureRow.ts == after[0], FeedExposureRow.feed_id > after[1])
                )
            query = query.order_by(FeedExposureRow.ts, FeedExposureRow.feed_id).limit(batch)
            with self.engine.connect() as conn:
                heads = conn.execute(query).all()
                if not heads:
                    return
                items: dict[str, list[ShownItem]] = {h.feed_id: [] for h in heads}
                for row in conn.execute(
                    select(ExposureRow)
                    .where(ExposureRow.feed_id.in_(list(items)))
                    .order_by(ExposureRow.feed_id, ExposureRow.position)
                ):
                    items[row.feed_id].append(
                        ShownItem(
                            row.article_key,
                            row.position,
                            row.score,
                            row.propensity,
                            row.clicked_at is not None,
                            row.team,
                        )
                    )
            for head in heads:
                yield LoggedFeed(
                    feed_id=head.feed_id,
                    user=head.user_id,
                    surface=head.surface,
                    ts=as_utc(head.ts) or utcnow(),
                    model_version=head.model_version,
                    experiment_id=head.experiment_id,
                    arm=head.arm,
                    items=items[head.feed_id],
                    candidates=json.loads(head.candidates or "[]"),
                    explored=bool(head.explored),
                )
            last = heads[-1]
            after = (last.ts, last.feed_id)

    def reader_clicks_before(self, user: str, before: datetime, limit: int = 50) -> list[int]:
        """The article keys the reader clicked before `before`, oldest first (their history as
        a feed at that moment saw it)."""
        with self.engine.connect() as conn:
            keys = (
                conn.execute(
                    select(EventRow.article_key)
                    .where(
                        EventRow.user_id == user,
                        EventRow.type.in_(["click", "like", "share"]),
                        EventRow.ts < before,
                    )
                    .order_by(EventRow.ts.desc())
                    .limit(limit)
                )
                .scalars()
                .all()
            )
        return list(reversed(keys))

    # --- experiments ---------------------------------------------------------------------------
    def insert_experiment(self, experiment: StoredExperiment) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(ExperimentRow).values(
                    id=experiment.id,
                    name=experiment.name,
                    spec=json.dumps(experiment.spec),
                    status=experiment.status,
                    created_at=experiment.created_at,
                    started_at=experiment.started_at,
                )
            )

    def stop_experiment(self, experiment_id: str, outcome: dict) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(ExperimentRow)
                .where(ExperimentRow.id == experiment_id, ExperimentRow.status == "running")
                .values(status="stopped", stopped_at=utcnow(), outcome=json.dumps(outcome))
            )
        return bool(result.rowcount)

    def get_experiment(self, experiment_id: str) -> StoredExperiment | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(ExperimentRow).where(ExperimentRow.id == experiment_id)
            ).one_or_none()
        return None if row is None else _experiment(row)

    def experiments(self, status: str | None = None) -> list[StoredExperiment]:
        query = select(ExperimentRow).order_by(ExperimentRow.created_at.desc())
        if status is not None:
            query = query.where(ExperimentRow.status == status)
        with self.engine.connect() as conn:
            return [_experiment(r) for r in conn.execute(query)]

    def reader_tallies(self, experiment_id: str) -> list[ReaderTally]:
        """Per reader and arm: feeds served, items shown, shown items clicked."""
        with self.engine.connect() as conn:
            feeds = conn.execute(
                select(FeedExposureRow.user_id, FeedExposureRow.arm, func.count())
                .where(FeedExposureRow.experiment_id == experiment_id)
                .group_by(FeedExposureRow.user_id, FeedExposureRow.arm)
            ).all()
            shown = conn.execute(
                select(
                    ExposureRow.user_id,
                    func.count(),
                    func.count(ExposureRow.clicked_at),
                )
                .join(FeedExposureRow, FeedExposureRow.feed_id == ExposureRow.feed_id)
                .where(FeedExposureRow.experiment_id == experiment_id)
                .group_by(ExposureRow.user_id)
            ).all()
        per_user = {user: (int(n), int(c)) for user, n, c in shown}
        return [
            ReaderTally(user, arm or "", int(n), *per_user.get(user, (0, 0)))
            for user, arm, n in feeds
        ]

    def team_tallies(self, experiment_id: str) -> list[tuple[str, str, int, int, int]]:
        """Per reader and interleaving team: (reader, team, feeds, items shown, clicked)."""
        with self.engine.connect() as conn:
            feeds = dict(
                conn.execute(
                    select(FeedExposureRow.user_id, func.count())
                    .where(FeedExposureRow.experiment_id == experiment_id)
                    .group_by(FeedExposureRow.user_id)
                ).all()
            )
            shown = conn.execute(
                select(
                    ExposureRow.user_id,
                    ExposureRow.team,
                    func.count(),
                    func.count(ExposureRow.clicked_at),
                )
                .join(FeedExposureRow, FeedExposureRow.feed_id == ExposureRow.feed_id)
                .where(
                    FeedExposureRow.experiment_id == experiment_id, ExposureRow.team.is_not(None)
                )
                .group_by(ExposureRow.user_id, ExposureRow.team)
            ).all()
        return [(user, team, int(feeds.get(user, 0)), int(n), int(c)) for user, team, n, c in shown]

    def clicks_between(
        self, users: Sequence[str], start: datetime, end: datetime
    ) -> dict[str, int]:
        """Clicks per reader in [start, end): the pre-period covariate for CUPED."""
        counts: dict[str, int] = {}
        users = list(users)
        with self.engine.connect() as conn:
            for i in range(0, len(users), 500):
                counts.update(
                    (user, int(n))
                    for user, n in conn.execute(
                        select(EventRow.user_id, func.count())
                        .where(
                            EventRow.user_id.in_(users[i : i + 500]),
                            EventRow.type == "click",
                            EventRow.ts >= start,
                            EventRow.ts < end,
                        )
                        .group_by(EventRow.user_id)
                    ).all()
                )
        return counts

    # --- model registry ------------------------------------------------------------------------
    def register_version(
        self, version: str, kind: str, report: dict, config: str, weights: bytes
    ) -> ModelVersion:
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                insert(ModelVersionRow).values(
                    version=version,
                    kind=kind,
                    status="challenger",
                    created_at=now,
                    report=json.dumps(report),
                    config=config,
                    weights=weights,
                )
            )
        return ModelVersion(version, kind, "challenger", now, None, report)

    def versions(self, kind: str = "ranker") -> list[ModelVersion]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ModelVersionRow)
                .where(ModelVersionRow.kind == kind)
                .order_by(ModelVersionRow.created_at.desc())
            )
            return [_version(r) for r in rows]

    def get_version(self, version: str) -> ModelVersion | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(ModelVersionRow).where(ModelVersionRow.version == version)
            ).one_or_none()
        return None if row is None else _version(row)

    def version_files(self, version: str) -> tuple[str, bytes] | None:
        """(config.json text, model.safetensors bytes) of a registered version."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(ModelVersionRow.config, ModelVersionRow.weights).where(
                    ModelVersionRow.version == version
                )
            ).one_or_none()
        return None if row is None else (str(row[0]), bytes(row[1]))

    def champion(self, kind: str = "ranker") -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(ModelVersionRow.version).where(
                    ModelVersionRow.kind == kind, ModelVersionRow.status == "champion"
                )
            ).scalar_one_or_none()

    def promote(self, version: str, kind: str = "ranker") -> bool:
        """Make `version` the champion (the previous one is retired) and tell every process
        through the change log, in one transaction."""
        with self.engine.begin() as conn:
            exists = conn.execute(
                select(ModelVersionRow.version).where(
                    ModelVersionRow.version == version, ModelVersionRow.kind == kind
                )
            ).scalar_one_or_none()
            if exists is None:
                return False
            conn.execute(
                update(ModelVersionRow)
                .where(ModelVersionRow.kind == kind, ModelVersionRow.status == "champion")
                .values(status="retired")
            )
            conn.execute(
                update(ModelVersionRow)
                .where(ModelVersionRow.version == version)
                .values(status="champion", promoted_at=utcnow())
            )
            log_changes(conn, "champion", [None], json.dumps({"version": version}))
        return True
