"""Domain types shared by every stage. Plain dataclasses: no ORM, no pydantic, no tensors."""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """Naive datetimes are taken as UTC (SQLite drops the zone); aware ones are converted."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def clean_text(text: str) -> str:
    """NFC-normalise and drop control/format characters (zero-width spaces in MIND titles),
    keeping newlines and tabs; collapse runs of spaces."""
    text = unicodedata.normalize("NFC", text)
    kept = [
        ch
        for ch in text
        if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co")
    ]
    lines = [" ".join(line.split()) for line in "".join(kept).split("\n")]
    return "\n".join(lines).strip()


@dataclass(slots=True)
class ArticleDraft:
    """An article as a caller or a dataset reader hands it in (before storage)."""

    title: str
    body: str = ""
    id: str | None = None
    category: str | None = None
    url: str | None = None
    language: str | None = None
    published_at: datetime | None = None

    def content_hash(self) -> str:
        """What decides re-embedding: only the text the embedder reads."""
        digest = hashlib.sha256()
        digest.update(self.title.encode())
        digest.update(b"\x00")
        digest.update(self.body.encode())
        return digest.hexdigest()[:32]

    def generated_id(self) -> str:
        # Content-derived, so a client retrying a POST without an id does not create a twin.
        return "a-" + self.content_hash()[:20]


@dataclass(slots=True)
class Article:
    id: str
    key: int  # internal integer key: the label the vector index stores
    title: str
    body: str
    category: str | None
    url: str | None
    language: str | None
    published_at: datetime | None
    created_at: datetime
    updated_at: datetime
    content_hash: str


@dataclass(slots=True)
class SearchHit:
    article: Article
    score: float


@dataclass(slots=True)
class Event:
    """A reader's interaction with an article, resolved to the article's internal key."""

    event_id: str
    user_id: str
    article_id: str
    article_key: int
    type: str  # impression | click | dwell | like | share | dismiss
    ts: datetime
    dwell_ms: int | None = None


@dataclass(slots=True)
class EventDraft:
    """An event as a caller sends it."""

    user_id: str
    article_id: str
    type: str
    event_id: str | None = None
    dwell_ms: int | None = None
    ts: datetime | None = None
    headline_variant: str | None = None  # the tested headline shown (impression, click)


@dataclass(slots=True)
class AdEventDraft:
    """A reader's impression, click or conversion of a sponsored item, as a caller sends it."""

    user_id: str
    campaign_id: str
    type: str
    event_id: str | None = None
    ts: datetime | None = None


@dataclass(slots=True)
class IngestReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    embedded: int = 0

    @property
    def ids(self) -> list[str]:
        return self.created + self.updated + self.unchanged

    def merge(self, other: IngestReport) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.embedded += other.embedded
