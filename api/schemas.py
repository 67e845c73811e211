"""Request and response models. `XIn` is what a client sends, `XOut` what it gets back."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from core.domain import Article, ArticleDraft, SearchHit

ARTICLE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"


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
    published_at: datetime | None = None

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


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    error: ErrorBody
