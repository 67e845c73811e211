"""Events in; personalized feed and CMS ranking out."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from api.auth import AuthorizedRoute, allow
from api.deps import ServiceDep, observe, run_cpu
from api.schemas import (
    USER_ID_PATTERN,
    ErrorOut,
    EventBatchIn,
    EventPayload,
    EventsOut,
    FeedOut,
    RankedItemOut,
    RankIn,
    RankOut,
    SponsoredItemOut,
)
from core.feeds import FeedWithAds

router = APIRouter(prefix="/v1", tags=["feed"], route_class=AuthorizedRoute)
ERRORS = {413: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}}
UserId = Annotated[str, Path(pattern=USER_ID_PATTERN, description="The reader's id.")]


@router.post("/events", response_model=EventsOut, responses=ERRORS, dependencies=[allow("app")])
def record_events(payload: EventPayload, service: ServiceDep) -> EventsOut:
    """One event, or `{"events": [...]}`. Idempotent by `event_id`."""
    events = payload.events if isinstance(payload, EventBatchIn) else [payload]
    report = service.readers.record_events([e.to_draft() for e in events])
    return EventsOut(accepted=report.accepted, duplicates=report.duplicates)


@router.get(
    "/users/{user_id}/feed",
    response_model=FeedOut,
    responses=ERRORS,
    dependencies=[allow("cms", "app")],
)
async def user_feed(
    request: Request,
    user_id: UserId,
    service: ServiceDep,
    k: Annotated[int, Query(ge=1, le=1000, description="Items in the feed.")] = 20,
    category: Annotated[str | None, Query(max_length=64)] = None,
    exclude_read: Annotated[bool, Query(description="Leave out articles already read.")] = True,
    ads: Annotated[
        int,
        Query(
            ge=0,
            le=10,
            description="Sponsored items to add at most (never first, spaced apart), on top "
            "of the k organic ones.",
        ),
    ] = 0,
) -> Response:
    """The reader's personalized feed; each item says why it is there."""
    # Scored on the event loop, not the CPU pool: a feed is ~3 ms of mostly GIL-holding
    # Python, and the hop plus GIL hand-offs cost more than the wait (bench.feed_load). Its one
    # I/O is the reader's profile (a Redis round trip in shared mode). More cores: more
    # processes (`newsroom serve --workers N`).
    started = time.perf_counter()
    feed = service.feeds.feed(user_id, k, category, exclude_read, ads)
    body = render_feed(feed)
    observe(request, "feed", "feed", started)
    # The documented schema is still `response_model`'s (`render_feed` validates against it).
    return Response(body, media_type="application/json")


def render_feed(result: FeedWithAds) -> bytes:
    """The feed as its JSON answer, in one validation pass (returned as a model, FastAPI would
    validate it all over again first). Sponsored items go in at their positions."""
    feed = result.feed
    items = [RankedItemOut.data_of(i) for i in feed.items]
    for data in items if result.headlines else ():
        shown = result.headlines.get(data["id"])
        if shown is not None:  # a headline test: this reader's variant in place of the title
            data["title"], data["headline_variant"] = shown.text, shown.variant_id
    for item in sorted(result.sponsored, key=lambda s: s.position):
        items.insert(item.position, SponsoredItemOut.data_of(item))
    body = FeedOut.model_validate(
        {
            "user_id": feed.user_id,
            "items": items,
            "cold_start": feed.cold_start,
            "candidates": feed.candidates,
            "feed_id": result.feed_id,
            "experiment": None
            if result.assignment is None
            else {"experiment_id": result.assignment.experiment_id, "arm": result.assignment.arm},
        }
    )
    return body.model_dump_json().encode()


@router.post("/rank", response_model=RankOut, responses=ERRORS, dependencies=[allow("cms")])
async def rank(request: Request, payload: RankIn, service: ServiceDep) -> RankOut:
    """Rank the CMS's own candidates for a reader with the same head as the feed."""
    result = await run_cpu(request, service.feeds.rank, payload.user_id, payload.article_ids)
    return RankOut(
        user_id=payload.user_id,
        items=[RankedItemOut.of(i) for i in result.items],
        unknown_ids=result.unknown,
    )
