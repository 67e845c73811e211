"""Semantic search."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import AuthorizedRoute, allow
from api.deps import ServiceDep
from api.schemas import BoundedDatetime, ErrorOut, SearchOut, SearchResultOut

router = APIRouter(prefix="/v1", tags=["search"], route_class=AuthorizedRoute)


@router.get(
    "/search",
    response_model=SearchOut,
    responses={422: {"model": ErrorOut}},
    dependencies=[allow("cms", "writer")],
)
def search(
    service: ServiceDep,
    q: Annotated[str, Query(min_length=1, max_length=1000, description="Query text.")],
    k: Annotated[int, Query(ge=1, le=1000, description="Number of results.")] = 10,
    category: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[
        BoundedDatetime | None, Query(description="Only articles published since.")
    ] = None,
) -> SearchOut:
    hits = service.articles.search(q, k=k, category=category, since=since)
    return SearchOut(results=[SearchResultOut.of(h) for h in hits])
