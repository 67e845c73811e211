"""Relational storage (SQLAlchemy 2): SQLite (WAL) by default, PostgreSQL through the URL.

The database is the source of truth. Embeddings are stored beside each article so that the vector
index can always be rebuilt without re-encoding. Only portable SQL is used (no dialect upserts).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Generic, Literal, TypeVar

import numpy as np
from sqlalchemy import (
    BigInteger,
    DateTime,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import Executable

from core.domain import Article, ArticleDraft, Event, as_utc, utcnow
from core.errors import ArticleNotFound, unavailable_store

log = logging.getLogger(__name__)

_IN_CHUNK = 500  # ids per IN (...) clause: stays far below SQLite's variable limit


class Base(DeclarativeBase):
    pass


class ArticleRow(Base):
    __tablename__ = "articles"

    key: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(128), unique=True, index=True)
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    language: Mapped[str | None] = mapped_column(String(16), nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), index=True, nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    content_hash: Mapped[str] = mapped_column(String(32))
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    embedding_model: Mapped[str] = mapped_column(String(256))


EVENT_ID_UNIQUE = "uq_events_user_event"


class EventRow(Base):
    """Events are also the change log of the live counts: `seq` orders them, and every process
    in shared mode tails this table by `seq` (AUTOINCREMENT in SQLite: a seq is never reused,
    so a profile's version, the highest seq folded into it, only grows)."""

    __tablename__ = "events"
    # A client's event id is unique per reader only: one reader's id must not drop another's.
    # AUTOINCREMENT in SQLite: a seq is never reused.
    __table_args__ = (
        UniqueConstraint("user_id", "event_id", name=EVENT_ID_UNIQUE),
        {"sqlite_autoincrement": True},
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Not the client's id but its keyed digest (`Storage.event_digest`): a client id can name
    # the reader (replayed ids once held the raw reader id beside its pseudonym).
    event_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    article_key: Mapped[int] = mapped_column(Integer, index=True)
    type: Mapped[str] = mapped_column(String(16))
    dwell_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ProfileRow(Base):
    __tablename__ = "profiles"

    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Orders the copies of this profile held elsewhere (Redis): see `profile_version`.
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class ChangeRow(Base):
    """The change log of everything a serving process keeps in memory besides the live counts:
    article upserts and deletions (its FAISS index and catalog), reader deletions and retention
    purges (its counts). Written in the same transaction as the change itself, so it can never
    miss one; every process in shared mode applies it in `seq` order (`core.changes`)."""

    __tablename__ = "changes"
    __table_args__ = ({"sqlite_autoincrement": True},)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    article_key: Mapped[int | None] = mapped_column(Integer, nullable=True)
    payload: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class GeneratedRow(Base):
    """Cached generation outputs (personalized summaries, headline sets), keyed by everything
    that changes them: article content, reader segment, template version, model version."""

    __tablename__ = "generated"

    cache_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    article_id: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(slots=True, frozen=True)
class StoredState:
    """What the index must agree with: per live article, its key and content hash."""

    key: int
    id: str
    content_hash: str
    embedding_model: str


@dataclass(slots=True, frozen=True)
class StoredProfile:
    """A profile row: keyed by the reader's pseudonym, with the version that orders copies."""

    pseudonym: str
    vector: bytes
    state: str
    version: int


@dataclass(slots=True, frozen=True)
class LoggedEvent:
    """An event as the change log carries it to the live counts."""

    seq: int
    user: str  # pseudonym
    article_key: int
    type: str


@dataclass(slots=True, frozen=True)
class LoggedChange:
    seq: int
    kind: ChangeKind
    article_key: int | None
    payload: str | None


@dataclass(slots=True, frozen=True)
class SyncedArticle:
    """What a process needs to bring its index and catalog in line with one stored article."""

    key: int
    id: str
    title: str
    category: str | None
    published_at: datetime | None
    content_hash: str
    embedding: np.ndarray


ChangeKind = Literal["article", "reader_deleted", "counts_reset", "champion"]


@dataclass(slots=True, frozen=True)
class LogSnapshot:
    """Where the logs ended in a snapshot, and the seqs below that it could not see yet."""

    event_head: int
    change_head: int
    missing_events: list[int]
    missing_changes: list[int]


def profile_version(event_seq: int) -> int:
    """The version of a profile whose newest event is `event_seq`. Event seqs never repeat, so
    versions grow across a reader's deletion and return too; rewrites without a new event
    (retention, deletion tombstones) take the odd number between two event versions."""
    return event_seq << 1


def rewrite_version(newest_event_seq: int) -> int:
    """A version above every profile folded up to `newest_event_seq`, and below the next event's."""
    return (newest_event_seq << 1) | 1


@dataclass(slots=True)
class ArticleWrite:
    draft: ArticleDraft
    article_id: str
    content_hash: str
    vector: np.ndarray | None  # None: content unchanged, keep the stored embedding
    key: int | None = None  # None: a new article


def _row_to_article(row: ArticleRow) -> Article:
    return Article(
        id=row.id,
        key=row.key,
        title=row.title,
        body=row.body,
        category=row.category,
        url=row.url,
        language=row.language,
        published_at=as_utc(row.published_at),
        created_at=as_utc(row.created_at) or utcnow(),
        updated_at=as_utc(row.updated_at) or utcnow(),
        content_hash=row.content_hash,
    )


def _chunks(items: Sequence, size: int = _IN_CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# (pseudonym, vector bytes, state json, events lost) -> new (vector, state), or None: delete
ProfileReviser = Callable[[str, bytes, str, int], tuple[bytes, str] | None]


def make_engine(url: str, timeout_s: float = 5.0) -> Engine:
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            # WAL: readers never block the writer; NORMAL sync survives a killed process.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=8,
        max_overflow=8,
        pool_timeout=timeout_s,
        connect_args={
            # An unreachable server fails fast (503) instead of hanging a request; keepalives
            # notice a peer that vanished without closing the connection.
            "connect_timeout": max(1, round(timeout_s)),
            "options": f"-c statement_timeout={round(timeout_s * 1000)}",
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 2,
        },
    )


# Built once: a reader's first feed loads the profile, and building the statement each time
# cost twice as much as running it (0.12 -> 0.04 ms a load on SQLite).
PROFILE_BY_USER = select(ProfileRow.vector, ProfileRow.state, ProfileRow.version).where(
    ProfileRow.user_id == bindparam("user")
)


class IncompatibleDatabase(RuntimeError):
    """The database was created by an older Newsroom with a layout this one cannot use."""


def check_layout(engine: Engine) -> None:
    """Fail at start, saying what to do, on a database whose tables `create_all` would leave
    as they are but this code cannot work with."""
    inspector = inspect(engine)
    if not inspector.has_table(EventRow.__tablename__):
        return  # a new database: create_all makes the current layout
    unique = [c["column_names"] for c in inspector.get_unique_constraints("events")]
    unique += [i["column_names"] for i in inspector.get_indexes("events") if i.get("unique")]
    if ["user_id", "event_id"] not in unique:
        raise IncompatibleDatabase(
            f"the database {engine.url.render_as_string(hide_password=True)} was created by an "
            "older Newsroom: its events keep client event ids in clear, unique across all "
            "readers. Re-create the data dir (remove the database, e.g. var/newsroom.db*, or "
            "point NEWSROOM_DATABASE_URL at an empty database), then ingest and replay again "
            "(`make demo` does both)."
        )


class Storage:
    """Articles (and, with later stages, events) behind a small typed interface."""

    def __init__(self, url: str, user_id_key: bytes | None = None, timeout_s: float = 5.0) -> None:
        # Reader ids are pseudonymised at rest with a keyed HMAC: the database alone does not
        # say who read what. Without a key (unit tests of storage itself) ids are stored as is.
        self._user_id_key = user_id_key
        self.url = url
        self.engine = make_engine(url, timeout_s)
        check_layout(self.engine)
        Base.metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def pseudonym(self, user_id: str) -> str:
        if self._user_id_key is None:
            return user_id
        digest = hmac.new(self._user_id_key, user_id.encode(), hashlib.sha256).hexdigest()
        return "p_" + digest[:40]

    def event_digest(self, pseudonym: str, event_id: str) -> str:
        """What is stored for a client's event id: HMAC(key, pseudonym NUL id), 128 bits in hex.
        Keyed by the reader too, so equal ids of two readers differ, and the id itself (which
        may name the reader) is never stored."""
        message = f"{pseudonym}\x00{event_id}".encode()
        digest = hmac.new(self._user_id_key or b"", message, hashlib.sha256).hexdigest()
        return "e_" + digest[:32]

    # --- articles -------------------------------------------------------------------------
    def existing(self, article_ids: Sequence[str]) -> dict[str, StoredState]:
        found: dict[str, StoredState] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(article_ids)):
                rows = conn.execute(
                    select(
                        ArticleRow.key,
                        ArticleRow.id,
                        ArticleRow.content_hash,
                        ArticleRow.embedding_model,
                    ).where(ArticleRow.id.in_(chunk))
                )
                for key, aid, chash, model in rows:
                    found[aid] = StoredState(key, aid, chash, model)
        return found

    def write_articles(self, writes: Sequence[ArticleWrite], model_name: str) -> list[int]:
        """Insert or update in one transaction; returns the keys in the order of `writes`."""
        now = utcnow()
        keys: list[int] = []
        with self.engine.begin() as conn:
            for write in writes:
                draft = write.draft
                values = {
                    "title": draft.title,
                    "body": draft.body,
                    "category": draft.category,
                    "url": draft.url,
                    "language": draft.language,
                    "published_at": as_utc(draft.published_at),
                    "updated_at": now,
                    "content_hash": write.content_hash,
                }
                if write.vector is not None:
                    values["embedding"] = np.ascontiguousarray(write.vector, np.float32).tobytes()
                    values["embedding_model"] = model_name
                if write.key is None:
                    if write.vector is None:
                        raise ValueError(f"new article {write.article_id!r} needs an embedding")
                    result = conn.execute(
                        ArticleRow.__table__.insert().values(
                            id=write.article_id, created_at=now, **values
                        )
                    )
                    keys.append(int(result.inserted_primary_key[0]))
                else:
                    conn.execute(
                        update(ArticleRow).where(ArticleRow.key == write.key).values(**values)
                    )
                    keys.append(write.key)
            log_changes(conn, "article", keys)
        return keys

    def get_article(self, article_id: str) -> Article:
        with self.engine.connect() as conn:
            row = conn.execute(select(ArticleRow).where(ArticleRow.id == article_id)).first()
        if row is None:
            raise ArticleNotFound(article_id)
        return _row_to_article(row)  # type: ignore[arg-type]

    def articles_by_keys(self, keys: Iterable[int]) -> dict[int, Article]:
        found: dict[int, Article] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(keys)):
                for row in conn.execute(select(ArticleRow).where(ArticleRow.key.in_(chunk))):
                    found[row.key] = _row_to_article(row)  # type: ignore[arg-type]
        return found

    def embedding_of(self, article_id: str) -> tuple[int, np.ndarray]:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(ArticleRow.key, ArticleRow.embedding).where(ArticleRow.id == article_id)
            ).first()
        if row is None:
            raise ArticleNotFound(article_id)
        return int(row[0]), np.frombuffer(row[1], dtype=np.float32)

    def delete_article(self, article_id: str) -> int:
        with self.engine.begin() as conn:
            key = conn.execute(
                select(ArticleRow.key).where(ArticleRow.id == article_id)
            ).scalar_one_or_none()
            if key is None:
                raise ArticleNotFound(article_id)
            conn.execute(delete(ArticleRow).where(ArticleRow.key == key))
            conn.execute(delete(GeneratedRow).where(GeneratedRow.article_id == article_id))
            log_changes(conn, "article", [int(key)])
        return int(key)

    def count_articles(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(ArticleRow)).scalar_one())

    def stored_states(self) -> list[StoredState]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    ArticleRow.key,
                    ArticleRow.id,
                    ArticleRow.content_hash,
                    ArticleRow.embedding_model,
                ).order_by(ArticleRow.key)
            )
            return [StoredState(int(k), i, h, m) for k, i, h, m in rows]

    def embeddings(
        self, keys: Sequence[int] | None = None, batch: int = 5000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (keys (n,), vectors (n, d) float32) in key order, all articles or `keys`."""
        with self.engine.connect() as conn:
            if keys is None:
                result = conn.execution_options(yield_per=batch).execute(
                    select(ArticleRow.key, ArticleRow.embedding).order_by(ArticleRow.key)
                )
                for part in result.partitions(batch):
                    yield _stack(part)
                return
            for chunk in _chunks(sorted(keys)):
                part = conn.execute(
                    select(ArticleRow.key, ArticleRow.embedding).where(ArticleRow.key.in_(chunk))
                ).all()
                if part:
                    yield _stack(part)

    def catalog_rows(self) -> Iterator[tuple[int, str, str, str | None, datetime | None]]:
        """(key, id, title, category, published_at) of every article, bodies left out."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    ArticleRow.key,
                    ArticleRow.id,
                    ArticleRow.title,
                    ArticleRow.category,
                    ArticleRow.published_at,
                ).order_by(ArticleRow.key)
            )
            for key, aid, title, category, published in rows:
                yield int(key), aid, title, category, as_utc(published)

    # --- events and profiles --------------------------------------------------------------
    def known_events(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """The (user id, client event id) pairs among `keys` that are already stored."""
        stored_as: dict[tuple[str, str], tuple[str, str]] = {}
        for user_id, event_id in keys:
            pseudonym = self.pseudonym(user_id)
            stored_as[(pseudonym, self.event_digest(pseudonym, event_id))] = (user_id, event_id)
        found: set[tuple[str, str]] = set()
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted({digest for _, digest in stored_as})):
                rows = conn.execute(
                    select(EventRow.user_id, EventRow.event_id).where(EventRow.event_id.in_(chunk))
                )
                found.update(stored_as[row] for row in map(tuple, rows) if row in stored_as)
        return found

    def record_events(
        self,
        events: Sequence[Event],
        update_profiles: Callable[[dict[str, StoredProfile | None]], list[StoredProfile]],
    ) -> list[StoredProfile]:
        """Insert events and upsert the profiles they change, in one transaction: a profile
        never reflects an event that is not stored, nor misses one that is.

        The touched readers' stored profiles are read under a row lock (PostgreSQL `FOR UPDATE`;
        SQLite has one writer at a time anyway) after the events are inserted and handed to
        `update_profiles` (pseudonym -> stored profile or None), which returns the new ones; any
        number of processes can record events for one reader without losing an update. Each new
        profile's version is `profile_version` of the reader's newest event seq."""
        now = utcnow()
        pseudonyms = {e.user_id: self.pseudonym(e.user_id) for e in events}
        with self.engine.begin() as conn:
            newest: dict[str, int] = {}
            if events:
                rows = conn.execute(
                    insert(EventRow).returning(EventRow.seq, EventRow.user_id),
                    [
                        {
                            "event_id": self.event_digest(pseudonyms[e.user_id], e.event_id),
                            "user_id": pseudonyms[e.user_id],
                            "article_key": e.article_key,
                            "type": e.type,
                            "dwell_ms": e.dwell_ms,
                            "ts": as_utc(e.ts),
                        }
                        for e in events
                    ],
                ).all()
                for seq, user in rows:
                    newest[user] = max(newest.get(user, 0), int(seq))
            users = sorted({self.pseudonym(e.user_id) for e in events})  # sorted: lock order
            stored: dict[str, StoredProfile | None] = dict.fromkeys(users)
            for chunk in _chunks(users):
                for row in conn.execute(
                    select(
                        ProfileRow.user_id, ProfileRow.vector, ProfileRow.state, ProfileRow.version
                    )
                    .where(ProfileRow.user_id.in_(chunk))
                    .order_by(ProfileRow.user_id)
                    .with_for_update()
                ):
                    stored[row[0]] = StoredProfile(row[0], bytes(row[1]), row[2], int(row[3] or 0))
            updated = update_profiles(stored)
            for profile in updated:
                version = max(profile_version(newest.get(profile.pseudonym, 0)), profile.version)
                values = {
                    "vector": profile.vector,
                    "state": profile.state,
                    "updated_at": now,
                    "version": version,
                }
                if stored.get(profile.pseudonym) is not None:
                    conn.execute(
                        update(ProfileRow)
                        .where(ProfileRow.user_id == profile.pseudonym)
                        .values(**values)
                    )
                else:
                    conn.execute(insert(ProfileRow).values(user_id=profile.pseudonym, **values))
            written = [
                StoredProfile(
                    p.pseudonym,
                    p.vector,
                    p.state,
                    max(profile_version(newest.get(p.pseudonym, 0)), p.version),
                )
                for p in updated
            ]
        return written

    def load_profile(self, pseudonym: str) -> StoredProfile | None:
        """The stored profile of a reader, by pseudonym."""
        with self.engine.connect() as conn:
            row = conn.execute(PROFILE_BY_USER, {"user": pseudonym}).first()
        return StoredProfile(pseudonym, bytes(row[0]), row[1], int(row[2] or 0)) if row else None

    def load_profiles(self, pseudonyms: Sequence[str]) -> dict[str, StoredProfile]:
        found: dict[str, StoredProfile] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(pseudonyms)):
                for user, vector, state, version in conn.execute(
                    select(
                        ProfileRow.user_id, ProfileRow.vector, ProfileRow.state, ProfileRow.version
                    ).where(ProfileRow.user_id.in_(chunk))
                ):
                    found[user] = StoredProfile(user, bytes(vector), state, int(version or 0))
        return found

    def iter_profiles(self, batch: int = 5_000) -> Iterator[StoredProfile]:
        """Every stored profile."""
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=batch).execute(
                select(ProfileRow.user_id, ProfileRow.vector, ProfileRow.state, ProfileRow.version)
            )
            for user, vector, state, version in result:
                yield StoredProfile(str(user), bytes(vector), str(state), int(version or 0))

    def iter_events(self, batch: int = 10_000) -> Iterator[tuple[str, int, str]]:
        """(user pseudonym, article_key, type) of every event in arrival order."""
        for logged in self.iter_logged_events(batch=batch):
            yield logged.user, logged.article_key, logged.type

    def iter_logged_events(
        self, up_to_seq: int | None = None, batch: int = 10_000
    ) -> Iterator[LoggedEvent]:
        """Every event up to a seq, in seq order (what the live counts are folded from)."""
        query = select(EventRow.seq, EventRow.user_id, EventRow.article_key, EventRow.type)
        if up_to_seq is not None:
            query = query.where(EventRow.seq <= up_to_seq)
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=batch).execute(query.order_by(EventRow.seq))
            for seq, user, key, kind in result:
                yield LoggedEvent(int(seq), user, int(key), kind)

    def fold_log_snapshot(
        self, fold: Callable[[LoggedEvent], None] | None, window: int = 1000
    ) -> LogSnapshot:
        """Feed every stored event to `fold` (in seq order) and read where both logs end, all
        in one consistent snapshot (REPEATABLE READ on PostgreSQL; a read transaction in
        SQLite's WAL). Seqs near the heads that the snapshot could not see belong to
        transactions still in flight: the follower waits for them (they are `missing`)."""
        with self.engine.connect() as conn:
            if self.engine.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                event_head = int(conn.execute(select(func.max(EventRow.seq))).scalar_one() or 0)
                change_head = int(conn.execute(select(func.max(ChangeRow.seq))).scalar_one() or 0)
                seen_events: set[int] = set()
                if fold is not None:
                    result = conn.execution_options(yield_per=10_000).execute(
                        select(EventRow.seq, EventRow.user_id, EventRow.article_key, EventRow.type)
                        .where(EventRow.seq <= event_head)
                        .order_by(EventRow.seq)
                    )
                    for seq, user, key, kind in result:
                        if seq > event_head - window:
                            seen_events.add(int(seq))
                        fold(LoggedEvent(int(seq), user, int(key), kind))
                else:
                    seen_events.update(
                        int(q)
                        for q in conn.execute(
                            select(EventRow.seq).where(EventRow.seq > event_head - window)
                        ).scalars()
                    )
                seen_changes = {
                    int(q)
                    for q in conn.execute(
                        select(ChangeRow.seq).where(ChangeRow.seq > change_head - window)
                    ).scalars()
                }
        return LogSnapshot(
            event_head,
            change_head,
            sorted(set(range(max(1, event_head - window + 1), event_head + 1)) - seen_events),
            sorted(set(range(max(1, change_head - window + 1), change_head + 1)) - seen_changes),
        )

    # --- the change log (shared mode: every process follows it) ---------------------------
    def log_heads(self) -> tuple[int, int]:
        """(newest event seq, newest change seq): where a process starting now begins to
        follow the logs (what is older is in the state it loads)."""
        with self.engine.connect() as conn:
            event = conn.execute(select(func.max(EventRow.seq))).scalar_one()
            change = conn.execute(select(func.max(ChangeRow.seq))).scalar_one()
        return int(event or 0), int(change or 0)

    def events_after(self, seq: int, limit: int = 10_000) -> list[LoggedEvent]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(EventRow.seq, EventRow.user_id, EventRow.article_key, EventRow.type)
                .where(EventRow.seq > seq)
                .order_by(EventRow.seq)
                .limit(limit)
            ).all()
        return [LoggedEvent(int(q), u, int(k), t) for q, u, k, t in rows]

    def events_at(self, seqs: Sequence[int]) -> list[LoggedEvent]:
        found: list[LoggedEvent] = []
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(seqs)):
                rows = conn.execute(
                    select(EventRow.seq, EventRow.user_id, EventRow.article_key, EventRow.type)
                    .where(EventRow.seq.in_(chunk))
                    .order_by(EventRow.seq)
                ).all()
                found += [LoggedEvent(int(q), u, int(k), t) for q, u, k, t in rows]
        return found

    def changes_after(self, seq: int, limit: int = 1_000) -> list[LoggedChange]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ChangeRow.seq, ChangeRow.kind, ChangeRow.article_key, ChangeRow.payload)
                .where(ChangeRow.seq > seq)
                .order_by(ChangeRow.seq)
                .limit(limit)
            ).all()
        return [LoggedChange(int(q), k, a, p) for q, k, a, p in rows]  # type: ignore[arg-type]

    def changes_at(self, seqs: Sequence[int]) -> list[LoggedChange]:
        found: list[LoggedChange] = []
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(seqs)):
                rows = conn.execute(
                    select(ChangeRow.seq, ChangeRow.kind, ChangeRow.article_key, ChangeRow.payload)
                    .where(ChangeRow.seq.in_(chunk))
                    .order_by(ChangeRow.seq)
                ).all()
                found += [LoggedChange(int(q), k, a, p) for q, k, a, p in rows]  # type: ignore[arg-type]
        return found

    def articles_for_sync(self, keys: Sequence[int]) -> dict[int, SyncedArticle]:
        """The stored state of these articles (absent keys were deleted)."""
        found: dict[int, SyncedArticle] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(keys))):
                for row in conn.execute(
                    select(
                        ArticleRow.key,
                        ArticleRow.id,
                        ArticleRow.title,
                        ArticleRow.category,
                        ArticleRow.published_at,
                        ArticleRow.content_hash,
                        ArticleRow.embedding,
                    ).where(ArticleRow.key.in_(chunk))
                ):
                    key = int(row[0])
                    found[key] = SyncedArticle(
                        key,
                        row[1],
                        row[2],
                        row[3],
                        as_utc(row[4]),
                        row[5],
                        np.frombuffer(row[6], dtype=np.float32),
                    )
        return found

    def article_key_of(self, article_id: str) -> int | None:
        """The key of a stored article (for ids this process has not seen in its log yet)."""
        with self.engine.connect() as conn:
            key = conn.execute(
                select(ArticleRow.key).where(ArticleRow.id == article_id)
            ).scalar_one_or_none()
        return None if key is None else int(key)

    def count_events(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(EventRow)).scalar_one())

    # --- readers: export, deletion, retention ---------------------------------------------
    def user_events(self, user_id: str) -> list[dict]:
        """Every stored event of the reader, oldest first, with the article's id. `event_id`
        is the stored digest of the client's id (`event_digest`), not the id itself."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    EventRow.event_id, ArticleRow.id, EventRow.type, EventRow.dwell_ms, EventRow.ts
                )
                .join(ArticleRow, ArticleRow.key == EventRow.article_key, isouter=True)
                .where(EventRow.user_id == self.pseudonym(user_id))
                .order_by(EventRow.seq)
            ).all()
        return [
            {"event_id": e, "article_id": a, "type": t, "dwell_ms": d, "ts": as_utc(ts)}
            for e, a, t, d, ts in rows
        ]

    def delete_user(self, user_id: str, generated_marker: str) -> dict[str, int]:
        """Remove the reader's events, profile and the generated outputs whose cache key holds
        `generated_marker` (outputs written for this reader alone), in one transaction."""
        pseudonym = self.pseudonym(user_id)
        with self.engine.begin() as conn:
            # What the reader added to the live counts, in order: every process subtracts it.
            interactions = [
                [int(seq), int(key), kind]
                for seq, key, kind in conn.execute(
                    select(EventRow.seq, EventRow.article_key, EventRow.type)
                    .where(EventRow.user_id == pseudonym)
                    .order_by(EventRow.seq)
                )
            ]
            version = conn.execute(
                select(ProfileRow.version).where(ProfileRow.user_id == pseudonym)
            ).scalar_one_or_none()
            events = conn.execute(delete(EventRow).where(EventRow.user_id == pseudonym))
            profiles = conn.execute(delete(ProfileRow).where(ProfileRow.user_id == pseudonym))
            generated = conn.execute(
                delete(GeneratedRow).where(GeneratedRow.cache_key.contains(generated_marker))
            )
            newest = conn.execute(select(func.max(EventRow.seq))).scalar_one()
            # Above every copy of the profile (its own version) and below any later event's:
            # seqs are never reused, so a returning reader's new events outrank the tombstone.
            tombstone = rewrite_version(max(int(newest or 0), int(version or 0) >> 1))
            removed = {
                "events": int(events.rowcount or 0),
                "profiles": int(profiles.rowcount or 0),
                "generated": int(generated.rowcount or 0),
                "tombstone_version": tombstone,
            }
            if removed["events"] or removed["profiles"]:
                log_changes(
                    conn,
                    "reader_deleted",
                    [None],
                    json.dumps(
                        {
                            "user": pseudonym,
                            "interactions": interactions,
                            "version": tombstone,
                        }
                    ),
                )
        return removed

    def delete_events_before(
        self, cutoff: datetime, revise: ProfileReviser
    ) -> tuple[int, list[StoredProfile]]:
        """Delete events older than `cutoff` and, in the same transaction, rewrite the profile
        of every reader who lost some: `revise(pseudonym, vector, state, events_lost)` returns
        the profile's new (vector, state), or None to delete it. Returns the events deleted."""
        now = utcnow()
        with self.engine.begin() as conn:
            lost = dict(
                conn.execute(
                    select(EventRow.user_id, func.count())
                    .where(EventRow.ts < cutoff)
                    .group_by(EventRow.user_id)
                ).all()
            )
            result = conn.execute(delete(EventRow).where(EventRow.ts < cutoff))
            removed = int(result.rowcount or 0)
            newest = int(conn.execute(select(func.max(EventRow.seq))).scalar_one() or 0)
            revised_profiles: list[StoredProfile] = []
            for chunk in _chunks(sorted(lost)):
                rows = conn.execute(
                    select(
                        ProfileRow.user_id, ProfileRow.vector, ProfileRow.state, ProfileRow.version
                    )
                    .where(ProfileRow.user_id.in_(chunk))
                    .order_by(ProfileRow.user_id)
                    .with_for_update()
                ).all()
                for user, vector, state, version in rows:
                    revised = revise(user, bytes(vector), str(state), int(lost[user]))
                    where = ProfileRow.user_id == user
                    # Above every copy of the old profile, below the reader's next event.
                    bumped = rewrite_version(max(newest, int(version or 0) >> 1))
                    if revised is None:
                        conn.execute(delete(ProfileRow).where(where))
                        revised_profiles.append(StoredProfile(user, b"", "", bumped))
                    else:
                        values = {
                            "vector": revised[0],
                            "state": revised[1],
                            "updated_at": now,
                            "version": bumped,
                        }
                        conn.execute(update(ProfileRow).where(where).values(**values))
                        revised_profiles.append(StoredProfile(user, revised[0], revised[1], bumped))
            if removed:
                log_changes(conn, "counts_reset", [None])
        return removed, revised_profiles

    def get_generated(self, cache_key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(GeneratedRow.payload).where(GeneratedRow.cache_key == cache_key)
            ).scalar_one_or_none()

    def put_generated(self, cache_key: str, article_id: str | None, payload: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(GeneratedRow).where(GeneratedRow.cache_key == cache_key))
            conn.execute(
                GeneratedRow.__table__.insert().values(
                    cache_key=cache_key,
                    article_id=article_id,
                    payload=payload,
                    created_at=utcnow(),
                )
            )

    def generated_matching(self, marker: str) -> list[str]:
        """Payloads whose cache key contains `marker` (a reader's own outputs, for export)."""
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(GeneratedRow.payload).where(GeneratedRow.cache_key.contains(marker))
                ).scalars()
            )

    def count_generated(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(GeneratedRow)).scalar_one())


def insert_new(engine: Engine, *statements: Executable) -> bool:
    """Run `statements` in one transaction; False, and nothing written, when a unique
    constraint says the row exists already (a retry, or another process came first)."""
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(statement)
    except IntegrityError:
        return False
    return True


def log_changes(
    conn: Connection, kind: ChangeKind, keys: Sequence[int | None], payload: str | None = None
) -> None:
    """Append to the change log inside the caller's transaction."""
    now = utcnow()
    conn.execute(
        insert(ChangeRow),
        [{"kind": kind, "article_key": key, "payload": payload, "created_at": now} for key in keys],
    )


def _stack(rows: Sequence) -> tuple[np.ndarray, np.ndarray]:
    keys = np.fromiter((int(r[0]) for r in rows), dtype=np.int64, count=len(rows))
    vectors = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
    return keys, vectors


T = TypeVar("T")


class PeriodicRead(Generic[T]):
    """A small table read at most every `ttl_s` seconds, so a change reaches every process
    within that. While the database is unreachable the last value read keeps being served
    (retried once per `ttl_s`): a feed must not fail because the running experiment or the live
    headline tests cannot be re-read. Other errors propagate."""

    def __init__(self, load: Callable[[], T], ttl_s: float, initial: T) -> None:
        self._load = load
        self.ttl_s = ttl_s
        self._value = initial
        self._loaded_at = -float("inf")
        self._lock = threading.Lock()

    def get(self) -> T:
        now = time.monotonic()
        with self._lock:
            if now - self._loaded_at < self.ttl_s:
                return self._value
        try:
            value = self._load()
        except Exception as exc:
            if unavailable_store(exc) is None:
                raise
            log.warning("%s; serving the last value read", unavailable_store(exc))
            with self._lock:
                self._loaded_at = now
                return self._value
        with self._lock:
            self._value, self._loaded_at = value, now
        return value

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = -float("inf")
