"""Request and response models. `XIn` is what a client sends, `XOut` what it gets back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.domain import AdEventDraft, Article, ArticleDraft, EventDraft, SearchHit, utcnow

ARTICLE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"
USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@\-]{0,127}$"
SEGMENT_PATTERN = r"^(generic|segment-[0-9]{1,3})$"
EventType = Literal["impression", "click", "dwell", "like", "share", "dismiss", "conversion"]
CAMPAIGN_ID_PATTERN = r"^c-[0-9a-f]{12}$"
HEADLINE_TEST_ID_PATTERN = r"^ht-[0-9a-f]{12}$"
HEADLINE_VARIANT_PATTERN = r"^v[0-9]{1,2}$"

# Every datetime a client sends lies in this range once in UTC: `0001-01-01T00:00:00+14:00` is
# before year 1 in UTC, and converting it overflowed into a 500.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
# How far ahead of now an article may say it was published: a date years ahead would make it
# "fresh" (top of every feed) for as long.
PUBLISHED_AHEAD = timedelta(days=1)


def _bounded(value: datetime) -> datetime:
    """The moment in UTC (naive means UTC), within [EARLIEST, LATEST)."""
    try:
        moment = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except (OverflowError, ValueError):
        moment = None
    if moment is None or not EARLIEST <= moment < LATEST:
        raise ValueError(f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} in UTC")
    return moment


def _published(value: datetime) -> datetime:
    moment = _bounded(value)
    if moment > utcnow() + PUBLISHED_AHEAD:
        raise ValueError("must not be more than a day in the future")
    return moment


BoundedDatetime = Annotated[datetime, AfterValidator(_bounded)]
PublishedAt = Annotated[datetime, AfterValidator(_published)]


class ArticleIn(BaseModel):
    id: str | None = Field(
        None,
        pattern=ARTICLE_ID_PATTERN,
        description="Your id for the article (letters, digits, `._:-`, at most 128). Omitted: "
        "derived from the content, so a retried POST does not create a twin.",
    )
    title: str = Field(min_length=1, max_length=1000)
    body: str = Field("", max_length=200_000)
    category: str | None = Field(None, max_length=64)
    url: str | None = Field(None, max_length=2048)
    language: str | None = Field(None, max_length=16)
    published_at: PublishedAt | None = Field(
        None, description="When it was published: from 1900 to a day ahead of now."
    )

    def to_draft(self) -> ArticleDraft:
        return ArticleDraft(
            id=self.id,
            title=self.title,
            body=self.body,
            category=self.category,
            url=self.url,
            language=self.language,
            published_at=self.published_at,
        )


class ArticleBulkIn(BaseModel):
    articles: list[ArticleIn] = Field(min_length=1)


class ArticleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    body: str
    category: str | None
    url: str | None
    language: str | None
    published_at: datetime | None
    created_at: datetime
    updated_at: datetime
    content_hash: str

    @classmethod
    def of(cls, article: Article) -> ArticleOut:
        return cls.model_validate(article)


class IngestOut(BaseModel):
    created: list[str]
    updated: list[str] = Field(description="Text changed: re-embedded.")
    unchanged: list[str] = Field(description="Same text: not re-embedded (metadata refreshed).")
    embedded: int


class SearchResultOut(BaseModel):
    id: str
    title: str
    category: str | None
    url: str | None
    published_at: datetime | None
    score: float = Field(description="Cosine similarity to the query, in [-1, 1].")

    @classmethod
    def of(cls, hit: SearchHit) -> SearchResultOut:
        a = hit.article
        return cls(
            id=a.id,
            title=a.title,
            category=a.category,
            url=a.url,
            published_at=a.published_at,
            score=round(hit.score, 6),
        )


class SearchOut(BaseModel):
    results: list[SearchResultOut]


class HealthOut(BaseModel):
    status: str
    articles: int
    index_size: int
    index_kind: str
    model: str
    database: str
    ranker: str | None = Field(description="Loaded ranking head, or null (feed unavailable).")
    events: int
    keys_required: bool = Field(description="API keys are enabled: send one as a Bearer token.")
    mode: Literal["embedded", "shared"] = Field(
        description="embedded: one process on SQLite; shared: PostgreSQL + Redis, many processes."
    )
    live: dict[str, Any] = Field(
        default_factory=dict, description="Shared mode: Redis reachable, times it was refilled."
    )
    log: dict[str, Any] = Field(
        default_factory=dict,
        description="Where this process is in the change log (events and changes applied).",
    )


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


# --- events, feed, rank -------------------------------------------------------------------------
class EventIn(BaseModel):
    event_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._:\-]{1,64}$",
        description="Your id for the event; a repeated id is ignored (safe retries).",
    )
    user_id: str = Field(pattern=USER_ID_PATTERN)
    article_id: str | None = Field(
        None, pattern=ARTICLE_ID_PATTERN, description="The article; or `campaign_id`."
    )
    campaign_id: str | None = Field(
        None,
        pattern=CAMPAIGN_ID_PATTERN,
        description="A sponsored item instead of an article: `impression`, `click` or "
        "`conversion`.",
    )
    type: EventType
    dwell_ms: int | None = Field(None, ge=0, le=86_400_000)
    ts: BoundedDatetime | None = Field(None, description="When it happened; default: now.")
    headline_variant: str | None = Field(
        None,
        pattern=HEADLINE_VARIANT_PATTERN,
        description="The tested headline the reader saw (`variant_id` from the feed or "
        "`GET /v1/articles/{id}/headline`): with an article's `impression` or `click`.",
    )

    @field_validator("headline_variant")
    @classmethod
    def _variant_of_an_article(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Declared after `campaign_id` and `type`, so both are in `info.data` when valid.
        if value is not None and (
            info.data.get("campaign_id") is not None
            or info.data.get("type") not in ("impression", "click")
        ):
            raise ValueError("goes with an article's impression or click event only")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> EventIn:
        if (self.article_id is None) == (self.campaign_id is None):
            raise ValueError("an event names exactly one of article_id and campaign_id")
        return self

    def to_draft(self) -> EventDraft | AdEventDraft:
        if self.campaign_id is not None:
            return AdEventDraft(
                user_id=self.user_id,
                campaign_id=self.campaign_id,
                type=self.type,
                event_id=self.event_id,
                ts=self.ts,
            )
        assert self.article_id is not None
        return EventDraft(
            user_id=self.user_id,
            article_id=self.article_id,
            type=self.type,
            event_id=self.event_id,
            dwell_ms=self.dwell_ms,
            ts=self.ts,
            headline_variant=self.headline_variant,
        )


class EventBatchIn(BaseModel):
    events: list[EventIn] = Field(min_length=1)


def _event_shape(value: Any) -> str:
    return "batch" if isinstance(value, dict) and "events" in value else "single"


# One event or {"events": [...]}: a callable discriminator picks the shape first, so a bad
# field is reported against that shape alone instead of against both union members.
EventPayload = Annotated[
    Annotated[EventIn, Tag("single")] | Annotated[EventBatchIn, Tag("batch")],
    Discriminator(_event_shape),
]
UNION_TAGS = frozenset({"single", "batch"})


class EventsOut(BaseModel):
    accepted: int
    duplicates: int = Field(description="Events whose event_id was already recorded.")


class HistoryRefOut(BaseModel):
    id: str
    title: str
    similarity: float


class ExplanationOut(BaseModel):
    text: str
    because_you_read: HistoryRefOut | None
    signals: list[str] = Field(
        description="What raised the item: similar_to_history, popular, high_click_through, "
        "read_by_similar_readers, favourite_category, fresh."
    )
    sources: list[str] = Field(description="Candidate sources: similar, fresh, popular, rank.")


class RankedItemOut(BaseModel):
    sponsored: Literal[False] = False
    id: str
    title: str
    category: str | None
    published_at: datetime | None
    score: float
    click_probability: float
    explanation: ExplanationOut
    headline_variant: str | None = Field(
        None,
        description="Set when the article's headline is being tested: `title` is this "
        "variant's text; send it as `headline_variant` with the impression and click.",
    )

    @classmethod
    def of(cls, item) -> RankedItemOut:  # item: ranking.recommend.RankedItem
        return cls.model_validate(cls.data_of(item))

    @staticmethod
    def data_of(item) -> dict[str, Any]:  # item: ranking.recommend.RankedItem
        """The item as plain data: a feed validates all its items in one call from this
        (one pass in pydantic-core, several times cheaper than building ~60 models one by one).
        """
        e, x = item.entry, item.explanation
        because = None
        if x.because_you_read:
            rid, title, sim = x.because_you_read
            because = {"id": rid, "title": title, "similarity": sim}
        return {
            "sponsored": False,
            "id": e.id,
            "title": e.title,
            "category": e.category,
            "published_at": e.published_at,
            "score": round(item.score, 6),
            "click_probability": round(item.click_probability, 6),
            "explanation": {
                "text": x.text,
                "because_you_read": because,
                "signals": x.signals,
                "sources": x.sources,
            },
        }


class SponsoredExplanationOut(BaseModel):
    text: str = Field(
        description="Why this reader sees this ad: the targeting that matched, in words (never "
        "the reader's history)."
    )
    targeting: list[str] = Field(
        description="What matched: `category:<name>`, `segment:<id>`, `audience`, or `untargeted`."
    )


class SponsoredItemOut(BaseModel):
    sponsored: Literal[True] = True
    campaign_id: str
    advertiser: str
    title: str
    body: str
    url: str
    category: str | None
    explanation: SponsoredExplanationOut

    @staticmethod
    def data_of(item) -> dict[str, Any]:  # item: core.sponsored.SponsoredItem
        campaign = item.campaign
        return {
            "sponsored": True,
            "campaign_id": campaign.id,
            "advertiser": campaign.advertiser,
            "title": campaign.creative.title,
            "body": campaign.creative.body,
            "url": campaign.creative.url,
            "category": campaign.creative.category,
            "explanation": {"text": item.explanation, "targeting": item.matched},
        }


FeedItemOut = Annotated[RankedItemOut | SponsoredItemOut, Field(discriminator="sponsored")]


class FeedOut(BaseModel):
    user_id: str
    items: list[FeedItemOut] = Field(
        description="The organic items in order, with sponsored ones (`sponsored: true`) "
        "placed among them when `ads` > 0."
    )
    cold_start: bool = Field(description="True when the user has no usable history yet.")
    candidates: int = Field(description="Candidates scored before diversification.")
    feed_id: str | None = Field(
        None, description="This answer's entry in the exposure log (null when logging is off)."
    )
    experiment: dict[str, str] | None = Field(
        None, description="`{experiment_id, arm}` when the reader is in a running experiment."
    )


class RankIn(BaseModel):
    user_id: str = Field(pattern=USER_ID_PATTERN)
    # Unknown ids are echoed back (`unknown_ids`): each must be an id that could exist.
    article_ids: list[Annotated[str, Field(pattern=ARTICLE_ID_PATTERN)]] = Field(
        min_length=1, max_length=1000
    )


class RankOut(BaseModel):
    user_id: str
    items: list[RankedItemOut]
    unknown_ids: list[str] = Field(description="Ids that are not in the catalog (skipped).")


# --- generation ------------------------------------------------------------------------------
class GeneratedOut(BaseModel):
    text: str
    grounded: bool = Field(description="Every number and name in `text` occurs in the sources.")
    fallback_reason: str | None = Field(
        None, description="Set when `text` is an extract from the source, and why."
    )
    unsupported: list[str] = Field(
        default_factory=list,
        description="Numbers and names in the model's own text that the sources lack (why it "
        "was replaced by the extract); empty when the model's text was kept.",
    )
    template: str = Field(description="Prompt template and version, e.g. `summary@v1`.")
    model: str = Field(description="Version of the model (base + adapter) that wrote it.")


class SummaryOut(BaseModel):
    article_id: str
    user_id: str | None = Field(description="The reader asked for; null for a segment's summary.")
    segment: str = Field(description="Interest segment the summary was written for.")
    interests: list[str]
    summary: str
    grounded: bool
    fallback_reason: str | None
    unsupported: list[str] = Field(default_factory=list)
    template: str
    model: str
    cached: bool


class HeadlinesIn(BaseModel):
    user_id: str | None = Field(
        None,
        pattern=USER_ID_PATTERN,
        max_length=128,
        description="Personalize for this reader's segment (needs the app or admin role).",
    )
    n: int = Field(3, ge=1, le=10, description="Distinct variants wanted.")


class HeadlinesOut(BaseModel):
    article_id: str
    segment: str
    headlines: list[GeneratedOut]
    template: str
    model: str
    cached: bool


class DraftIn(BaseModel):
    brief: str = Field(min_length=1, max_length=4000, description="What the story is about.")
    audience: str | None = Field(None, max_length=200, description="Who it is written for.")
    segment: str | None = Field(
        None,
        pattern=SEGMENT_PATTERN,
        description="Write for an interest segment (`GET /v1/segments`): its interests join the "
        "audience line.",
    )
    user_id: str | None = Field(
        None,
        pattern=USER_ID_PATTERN,
        max_length=128,
        description="Write for this reader's interests (their segment's); not with `segment`. "
        "Needs the app or admin role.",
    )
    related_k: int = Field(
        3, ge=0, le=8, description="Related articles (nearest the brief) to ground it on."
    )
    sources: list[Annotated[str, Field(pattern=ARTICLE_ID_PATTERN)]] = Field(
        default_factory=list,
        max_length=8,
        description="Article ids the writer chose (wire copy, notes, earlier coverage already "
        "ingested), besides or instead of `related_k`; an unknown id is a 422 naming it.",
    )


class CitationOut(BaseModel):
    article_id: str
    sentence: str = Field(description="The source sentence that supports the draft sentence.")
    start: int = Field(description="Its character offsets in `title + '. ' + body`.")
    end: int
    similarity: float = Field(description="Cosine similarity of the two sentences (MiniLM).")


class DraftSentenceOut(BaseModel):
    text: str
    origin: Literal["model", "extract"] = Field(
        description="`model`: the model's own words, checked; `extract`: a source sentence "
        "standing in for a model sentence the checks rejected."
    )
    citations: list[CitationOut]
    verbatim: bool = Field(description="A model sentence that copies its source nearly verbatim.")
    rejected: str | None = Field(None, description="The model sentence an extract replaced.")
    unsupported: list[str] = Field(
        default_factory=list, description="Why it was rejected: facts or pairs no source holds."
    )


class DraftSentenceIn(BaseModel):
    brief: str = Field(min_length=1, max_length=4000)
    audience: str | None = Field(None, max_length=200)
    sources: list[Annotated[str, Field(pattern=ARTICLE_ID_PATTERN)]] = Field(
        min_length=1, max_length=8, description="The draft's `source_ids`."
    )
    sentences: list[Annotated[str, Field(max_length=2000)]] = Field(
        min_length=1, max_length=40, description="The draft's sentences, in order."
    )
    index: int = Field(ge=0, description="Which sentence to write again.")


class DraftOut(BaseModel):
    audience: str = Field(description="The audience line the draft was written for.")
    draft: GeneratedOut = Field(description="The whole draft: its sentences joined.")
    sentences: list[DraftSentenceOut] = Field(
        description="The draft sentence by sentence, each with its citations."
    )
    headlines: list[GeneratedOut]
    source_ids: list[str] = Field(description="Articles the draft was grounded on.")
    template: str
    model: str


class SegmentOut(BaseModel):
    id: str = Field(description="`generic` or `segment-N`.")
    interests: list[str] = Field(description="Top categories its readers read.")


class SegmentsOut(BaseModel):
    segments: list[SegmentOut]


# --- quality (the studio's dashboard) ------------------------------------------------------------
class ReportOut(BaseModel):
    name: str = Field(description="Report file name.")
    kind: Literal["ranking", "generation", "personalization"]
    modified: datetime
    report: dict[str, Any] = Field(description="The report as the evaluation command wrote it.")


class QualityOut(BaseModel):
    reports: list[ReportOut] = Field(description="Newest first.")
    models: dict[str, str | None] = Field(description="Served model and version per role.")
    templates: list[str] = Field(description="Prompt templates in use, with their versions.")
    articles: int
    index_size: int
    index_kind: str
    events: int
    generation: dict[str, Any] | None = Field(
        description="Cache hit rate, cached outputs, queue depth, segments; null when off."
    )


class ExampleReadersOut(BaseModel):
    readers: list[str] = Field(
        description="Reader ids to try in the studio (written by `newsroom demo`; else empty)."
    )


# --- readers (privacy) ---------------------------------------------------------------------------
class UserDeletedOut(BaseModel):
    user_id: str
    deleted: dict[str, int] = Field(
        description="Rows removed: events, profiles, generated; ad_events unlinked from the "
        "reader. The reader's exposure log goes too."
    )


class UserExportOut(BaseModel):
    user_id: str
    events: list[dict[str, Any]]
    ad_events: list[dict[str, Any]] = Field(
        description="Sponsored items the reader was shown, clicked or converted on."
    )
    exposures: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Feeds and rankings the reader was shown (the exposure log): when, which "
        "articles at which positions, by which model version and experiment arm.",
    )
    headline_events: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Tested headlines the reader was counted as shown or clicking.",
    )
    profile: dict[str, Any] | None
    generated: list[dict[str, Any]] = Field(description="Outputs written for this reader alone.")


# --- campaigns (sponsored items) --------------------------------------------------------------
class CreativeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=120, description="Headline of the ad.")
    body: str = Field("", max_length=500, description="A line or two under the headline.")
    url: str = Field(pattern=r"^https?://\S+$", max_length=2048, description="Landing page.")
    category: str | None = Field(None, max_length=64, description="What the ad is about.")


class CreativePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(None, min_length=1, max_length=120)
    body: str = Field(None, max_length=500)
    url: str = Field(None, pattern=r"^https?://\S+$", max_length=2048)
    category: str | None = Field(None, max_length=64)


class TargetingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    categories: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        max_length=20,
        description="Shown to readers with any of these among their top 3 interests.",
    )
    segments: list[Annotated[str, Field(pattern=r"^segment-[0-9]{1,3}$")]] = Field(
        default_factory=list,
        max_length=64,
        description="Interest segments (GET /v1/segments) the reader must be in (any).",
    )
    audience: str | None = Field(
        None,
        min_length=3,
        max_length=300,
        description="Who the ad is for, in words; matched to the reader's reading by embedding "
        "similarity.",
    )
    audience_threshold: float | None = Field(
        None, ge=-1, le=1, description="Cosine similarity the match needs; default: the server's."
    )


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    advertiser: str = Field(min_length=1, max_length=200)
    creative: CreativeIn
    bid_cpc: float = Field(gt=0, le=1000, description="Most the advertiser pays per click.")
    daily_budget: float = Field(gt=0, le=10_000_000, description="Most spent per UTC day.")
    total_budget: float | None = Field(None, gt=0, le=1_000_000_000)
    start: BoundedDatetime | None = Field(None, description="Not shown before (default: now).")
    end: BoundedDatetime | None = Field(None, description="Not shown from then on.")
    status: Literal["active", "paused"] = "active"
    targeting: TargetingIn = Field(default_factory=TargetingIn)
    frequency_cap: int | None = Field(
        None, ge=1, le=1000, description="Impressions per reader per UTC day; none: no cap."
    )


class CampaignPatch(BaseModel):
    """Only the fields sent change; `creative` and `targeting` merge field by field."""

    model_config = ConfigDict(extra="forbid")

    advertiser: str = Field(None, min_length=1, max_length=200)
    creative: CreativePatch = None  # type: ignore[assignment]
    bid_cpc: float = Field(None, gt=0, le=1000)
    daily_budget: float = Field(None, gt=0, le=10_000_000)
    total_budget: float | None = Field(None, gt=0, le=1_000_000_000)
    start: BoundedDatetime | None = None
    end: BoundedDatetime | None = None
    status: Literal["active", "paused"] = None  # type: ignore[assignment]
    targeting: TargetingIn = None  # type: ignore[assignment]
    frequency_cap: int | None = Field(None, ge=1, le=1000)

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, mode="json")


class CampaignOut(BaseModel):
    id: str
    advertiser: str
    creative: dict[str, Any]
    bid_cpc: float
    daily_budget: float
    total_budget: float | None
    start: datetime | None
    end: datetime | None
    status: str
    targeting: dict[str, Any]
    frequency_cap: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, campaign) -> CampaignOut:  # campaign: core.campaigns.Campaign
        return cls.model_validate(
            {
                "id": campaign.id,
                **campaign.spec(),
                "created_at": campaign.created_at,
                "updated_at": campaign.updated_at,
            }
        )


class CampaignsOut(BaseModel):
    campaigns: list[CampaignOut]


class DeliveryOut(BaseModel):
    impressions: int
    clicks: int = Field(description="Valid clicks: after an impression, one per reader a day.")
    billed_clicks: int = Field(description="Clicks charged (the budget lasted).")
    ctr: float
    conversions: int = Field(description="Conversions after a click the same day.")
    spend: float
    avg_cpc: float = Field(description="Spend per billed click.")
    ecpm: float = Field(description="Spend per 1,000 impressions.")


class DayDeliveryOut(DeliveryOut):
    day: str


class CampaignReportOut(DeliveryOut):
    campaign_id: str
    advertiser: str
    days: list[DayDeliveryOut]
    pacing: dict[str, Any] = Field(
        description="Today: `state` (on_pace, ahead: throttled, behind, budget_spent, not_live), "
        "spend against the even pace."
    )
    audience: dict[str, Any] = Field(
        description="Readers reached and clicking per interest segment and per top category: "
        "cells of at least `min_readers` only, with Laplace noise of total budget `epsilon`."
    )


class CampaignPreviewOut(BaseModel):
    campaign_id: str
    readers: list[dict[str, Any]] = Field(
        description="Example readers: whether they would see it now, why (not), pCTR, eCPM."
    )


# --- headline tests -----------------------------------------------------------------------------
class HeadlineTestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variants: list[Annotated[str, Field(max_length=2000)]] = Field(
        default_factory=list,
        max_length=10,
        description="The editor's headlines (distinct, non-empty, at most the title length). "
        "Include the article's current title to test against it.",
    )
    generated: int = Field(
        0,
        ge=0,
        le=10,
        description="Variants to add from the headline model (waits for it; 503 when "
        "generation is off or its queue is full). 2 to 10 headlines in all.",
    )


class HeadlineVariantOut(BaseModel):
    variant_id: str
    text: str
    source: Literal["editor", "generated"]


class HeadlineTestOut(BaseModel):
    test_id: str
    article_id: str
    status: Literal["running", "locked", "stopped"]
    variants: list[HeadlineVariantOut]
    created_at: datetime

    @classmethod
    def of(cls, test) -> HeadlineTestOut:  # test: core.headline_tests.HeadlineTest
        return cls.model_validate(
            {
                "test_id": test.id,
                "article_id": test.article_id,
                "status": test.status,
                "variants": [
                    {"variant_id": v.variant_id, "text": v.text, "source": v.source}
                    for v in test.variants
                ],
                "created_at": test.created_at,
            }
        )


class HeadlineOut(BaseModel):
    article_id: str
    test_id: str | None = Field(description="The live test, or null: the article's own title.")
    variant_id: str | None = Field(
        description="Send it as `headline_variant` with the impression and click events."
    )
    text: str = Field(description="The headline to show this reader.")


class HeadlineVariantReportOut(HeadlineVariantOut):
    impressions: int = Field(description="Readers who were shown it (once each).")
    clicks: int = Field(description="Readers who clicked it after their impression (once each).")
    ctr: float
    p_best: float = Field(description="Posterior probability that its click rate is the highest.")


class HeadlineReportOut(BaseModel):
    test_id: str
    article_id: str
    status: Literal["running", "locked", "stopped"]
    winner: str | None = Field(description="The locked variant_id, shown to every reader.")
    variants: list[HeadlineVariantReportOut]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, report) -> HeadlineReportOut:  # report: core.headline_tests.HeadlineReport
        test = report.test
        return cls.model_validate(
            {
                "test_id": test.id,
                "article_id": test.article_id,
                "status": test.status,
                "winner": test.winner,
                "variants": [
                    {
                        "variant_id": r.variant.variant_id,
                        "text": r.variant.text,
                        "source": r.variant.source,
                        "impressions": r.impressions,
                        "clicks": r.clicks,
                        "ctr": r.ctr,
                        "p_best": round(r.p_best, 4),
                    }
                    for r in report.variants
                ],
                "created_at": test.created_at,
                "updated_at": test.updated_at,
            }
        )


class HeadlineReportsOut(BaseModel):
    article_id: str
    tests: list[HeadlineReportOut] = Field(description="Oldest first.")


class HeadlineLockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variant_id: str | None = Field(
        None,
        pattern=HEADLINE_VARIANT_PATTERN,
        description="The variant to show every reader; omitted: the one likeliest best.",
    )


# --- experiments (A/B) and the model registry ------------------------------------------------
EXPERIMENT_ID_PATTERN = r"^exp_[0-9a-f]{12}$"


class ExperimentArmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    weight: float = Field(1.0, gt=0, le=100, description="Share of readers, relative to others.")
    ranker_version: str | None = Field(
        None,
        max_length=64,
        description="A registered head version (`newsroom models`), or `committed` for the "
        "head in NEWSROOM_RANKING__MODEL_DIR; default: whatever is the champion.",
    )
    mmr_lambda: float | None = Field(None, ge=0, le=1, description="Diversity (1 = none).")
    prompt_version: str | None = Field(
        None,
        max_length=16,
        description="The prompt-template version the arm's readers get their summaries and "
        "headlines written with (`prompts/`: v1 is served by default, v2 asks for specifics).",
    )
    freshness_half_life_hours: float | None = Field(None, gt=0, le=24 * 365)
    category_cap: float | None = Field(None, gt=0, le=1)


class ExperimentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    arms: list[ExperimentArmIn] = Field(
        min_length=2, max_length=6, description="The first arm is the control."
    )
    sequential: bool = Field(
        True,
        description="Always-valid confidence sequences (look at the report every day); False: "
        "a fixed-horizon test, valid only when read once at the planned sample size.",
    )
    mode: Literal["ab", "interleaving"] = Field(
        "ab",
        description="`ab`: each reader sees one arm (split by `weight`). `interleaving`: exactly "
        "2 arms, merged into every reader's feed by team draft; the report credits each reader's "
        "clicks to the arm that contributed the clicked items (a sign test over readers).",
    )


class ExperimentStopIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    promote: bool = Field(
        False,
        description="Make the winning arm's ranker version the champion (every process "
        "switches to it); nothing is promoted without a significant winner.",
    )


class ExperimentOut(BaseModel):
    experiment_id: str
    name: str
    status: Literal["running", "stopped"]
    arms: list[dict[str, Any]]
    control: str
    sequential: bool
    mode: Literal["ab", "interleaving"]
    created_at: datetime
    started_at: datetime
    stopped_at: datetime | None
    winner: str | None = None
    promoted_version: str | None = None

    @classmethod
    def of(cls, experiment: Any) -> ExperimentOut:
        outcome = experiment.outcome or {}
        return cls(
            experiment_id=experiment.id,
            name=experiment.name,
            status=experiment.status,
            arms=experiment.spec["arms"],
            control=experiment.spec["control"],
            sequential=experiment.spec.get("sequential", True),
            mode=experiment.spec.get("mode", "ab"),
            created_at=experiment.created_at,
            started_at=experiment.started_at,
            stopped_at=experiment.stopped_at,
            winner=outcome.get("winner"),
            promoted_version=outcome.get("promoted_version"),
        )


class ExperimentsOut(BaseModel):
    experiments: list[ExperimentOut]


class ExperimentArmReportOut(BaseModel):
    name: str
    settings: dict[str, Any]
    readers: int
    feeds: int
    exposures: int
    clicks: int
    clicks_per_feed: float | None
    clicks_per_feed_ci: list[float] | None = Field(description="95% interval.")
    ctr: float | None
    ctr_ci: list[float] | None
    comparison: dict[str, Any] | None = Field(
        description="Against the control on clicks per feed: difference, ci, p_value, "
        "significant, method, cuped, cuped_variance_reduction (null for the control). In an "
        "interleaving experiment: wins, losses, ties (readers), difference (the treatment's "
        "share of readers with a preference, minus 1/2), p_value, significant."
    )
    ctr_comparison: dict[str, Any] | None = None


class ExperimentReportOut(BaseModel):
    experiment_id: str
    name: str
    status: str
    started_at: str
    control: str
    method: Literal["sequential", "fixed", "interleaving"]
    metric: Literal["clicks_per_feed", "reader_preference"]
    arms: list[ExperimentArmReportOut]
    winner: str | None


class ExperimentStoppedOut(BaseModel):
    experiment: ExperimentOut
    report: ExperimentReportOut


class ModelVersionOut(BaseModel):
    version: str
    status: Literal["challenger", "champion", "retired"]
    created_at: datetime
    promoted_at: datetime | None
    report: dict[str, Any] = Field(description="What `newsroom retrain` measured.")


class ModelVersionsOut(BaseModel):
    serving: str = Field(description="The head this process serves.")
    versions: list[ModelVersionOut]
    prompt_versions: list[str] = Field(
        description="Prompt-template versions an experiment arm can serve (`prompt_version`)."
    )
