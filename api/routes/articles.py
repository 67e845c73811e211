"""Article ingest and lookup."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from api.auth import AuthorizedRoute, allow
from api.deps import ServiceDep
from api.schemas import (
    ARTICLE_ID_PATTERN,
    ArticleBulkIn,
    ArticleIn,
    ArticleOut,
    ErrorOut,
    IngestOut,
    SearchOut,
    SearchResultOut,
)
from core.errors import InvalidInput

router = APIRouter(prefix="/v1/articles", tags=["articles"], route_class=AuthorizedRoute)

ArticleId = Annotated[str, Path(pattern=ARTICLE_ID_PATTERN, description="The article's id.")]
ERRORS = {404: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": ErrorOut}}


@router.post(
    "",
    response_model=ArticleOut,
    status_code=201,
    responses={
        **ERRORS,
        201: {"model": ArticleOut, "description": "Created."},
        200: {"model": ArticleOut, "description": "Updated: the id existed."},
    },
    dependencies=[allow("cms")],
)
def create_article(article: ArticleIn, service: ServiceDep, response: Response) -> ArticleOut:
    """Upsert one article (by `id`); 201 when created, 200 when it existed."""
    report = service.articles.ingest([article.to_draft()])
    if not report.created:
        response.status_code = status.HTTP_200_OK
    return ArticleOut.of(service.articles.get_article(report.ids[0]))


@router.post("/bulk", response_model=IngestOut, responses=ERRORS, dependencies=[allow("cms")])
def ingest_bulk(batch: ArticleBulkIn, service: ServiceDep) -> IngestOut:
    """Upsert many articles in one transaction; unchanged text is not re-embedded."""
    report = service.articles.ingest([a.to_draft() for a in batch.articles])
    return IngestOut(
        created=report.created,
        updated=report.updated,
        unchanged=report.unchanged,
        embedded=report.embedded,
    )


@router.get(
    "/{article_id}",
    response_model=ArticleOut,
    responses=ERRORS,
    dependencies=[allow("cms", "writer", "app")],
)
def get_article(article_id: ArticleId, service: ServiceDep) -> ArticleOut:
    return ArticleOut.of(service.articles.get_article(article_id))


@router.put(
    "/{article_id}",
    response_model=ArticleOut,
    responses={**ERRORS, 201: {"model": ArticleOut, "description": "Created: a new id."}},
    dependencies=[allow("cms")],
)
def put_article(
    article_id: ArticleId, article: ArticleIn, service: ServiceDep, response: Response
) -> ArticleOut:
    """Create or replace the article at this id; 201 when created."""
    if article.id is not None and article.id != article_id:
        raise InvalidInput(
            f"body id {article.id!r} differs from the path id {article_id!r}", field="id"
        )
    stored, created = service.articles.put_article(article_id, article.to_draft())
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return ArticleOut.of(stored)


@router.delete("/{article_id}", status_code=204, responses=ERRORS, dependencies=[allow("cms")])
def delete_article(article_id: ArticleId, service: ServiceDep) -> Response:
    service.articles.delete_article(article_id)
    return Response(status_code=204)


@router.get(
    "/{article_id}/related",
    response_model=SearchOut,
    responses=ERRORS,
    dependencies=[allow("cms", "writer")],
)
def related_articles(
    article_id: ArticleId,
    service: ServiceDep,
    k: Annotated[int, Query(ge=1, le=1000, description="Number of results.")] = 10,
) -> SearchOut:
    """Articles nearest in meaning to this one (itself excluded)."""
    hits = service.articles.related(article_id, k)
    return SearchOut(results=[SearchResultOut.of(h) for h in hits])
