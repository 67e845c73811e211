"""Generation: personalized summaries (apps), headline variants (CMS), drafts (writers)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.auth import AuthorizedRoute, allow, require_reader_data
from api.deps import ServiceDep, cached_or_generated, run_generation
from api.errors import error_body
from api.schemas import (
    SEGMENT_PATTERN,
    USER_ID_PATTERN,
    DraftIn,
    DraftOut,
    ErrorOut,
    HeadlinesIn,
    HeadlinesOut,
    SegmentsOut,
    SummaryOut,
)

router = APIRouter(prefix="/v1", tags=["generation"], route_class=AuthorizedRoute)
ERRORS = {
    404: {"model": ErrorOut},
    413: {"model": ErrorOut},
    422: {"model": ErrorOut},
    503: {"model": ErrorOut, "description": "Model not ready, or queue full (see Retry-After)."},
}
# How often a silent stream checks that its client is still there (seconds).
DISCONNECT_POLL_S = 0.5
UserId = Annotated[str, Path(pattern=USER_ID_PATTERN, description="The reader's id.")]
ArticleId = Annotated[str, Path(max_length=128, description="The article's id.")]
Segment = Annotated[
    str, Path(pattern=SEGMENT_PATTERN, description="`generic` or `segment-N` (GET /v1/segments).")
]


@router.get(
    "/users/{user_id}/articles/{article_id}/summary",
    response_model=SummaryOut,
    responses=ERRORS,
    dependencies=[allow("app")],
)
async def personalized_summary(
    request: Request, user_id: UserId, article_id: ArticleId, service: ServiceDep
) -> dict[str, Any]:
    """A one-sentence summary written for the reader's interest segment; cached per
    (article, segment, template, model)."""
    writing = service.require_writing()
    cached = writing.cached_summary(user_id, article_id)
    return await cached_or_generated(request, cached, writing.summary, user_id, article_id)


@router.get(
    "/segments",
    response_model=SegmentsOut,
    responses=ERRORS,
    dependencies=[allow("cms", "writer", "app")],
)
def segments(service: ServiceDep) -> SegmentsOut:
    """The interest segments outputs are written for (`generic` first), with their topics."""
    return SegmentsOut.model_validate({"segments": service.require_writing().segment_list()})


@router.get(
    "/articles/{article_id}/summaries/{segment}",
    response_model=SummaryOut,
    responses=ERRORS,
    dependencies=[allow("cms", "writer")],
)
async def segment_summary(
    request: Request, article_id: ArticleId, segment: Segment, service: ServiceDep
) -> dict[str, Any]:
    """The summary every reader of one segment gets; editors compare segments side by side."""
    writing = service.require_writing()
    cached = writing.cached_segment_summary(article_id, segment)
    return await cached_or_generated(request, cached, writing.segment_summary, article_id, segment)


@router.post(
    "/articles/{article_id}/headlines",
    response_model=HeadlinesOut,
    responses=ERRORS,
    dependencies=[allow("cms", "writer")],
)
async def headlines(
    request: Request, article_id: ArticleId, payload: HeadlinesIn, service: ServiceDep
) -> dict[str, Any]:
    """`n` distinct grounded headline variants, personalized when `user_id` is given; cached
    per (article, segment, n, template, model). `user_id` needs the app or admin role."""
    if payload.user_id is not None:
        require_reader_data(request)
    writing = service.require_writing()
    cached = writing.cached_headlines(article_id, payload.user_id, payload.n)
    return await cached_or_generated(
        request, cached, writing.headlines, article_id, payload.user_id, payload.n
    )


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post(
    "/drafts",
    dependencies=[allow("writer")],
    response_model=DraftOut,
    responses={
        **ERRORS,
        200: {
            "content": {"text/event-stream": {}},
            "description": "JSON, or with `Accept: text/event-stream` a stream of `token` "
            "events and a final `done` event carrying the checked result.",
        },
    },
)
async def draft(request: Request, payload: DraftIn, service: ServiceDep) -> Any:
    """A draft grounded on related articles, with headline options and the ids it used.
    Streams tokens as server-sent events when asked to; the `done` event carries the guarded
    result, which replaces the streamed text if the guard rejected it. `user_id` needs the app
    or admin role (a `segment` is open to writers)."""
    if payload.user_id is not None:
        require_reader_data(request)
    writing = service.require_writing()
    brief = writing.check_draft_request(payload.brief, payload.related_k)
    audience = writing.audience_for(payload.audience, payload.segment, payload.user_id)
    if "text/event-stream" not in request.headers.get("accept", ""):
        return await run_generation(request, writing.draft, brief, audience, payload.related_k)

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    cancel = threading.Event()  # set when the client goes: the job stops at its next token

    def on_token(piece: str) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, ("token", piece))

    future = writing.submit(writing.draft, brief, audience, payload.related_k, on_token, cancel)

    def finished(done: Future[Any]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, ("end", done))

    future.add_done_callback(finished)

    def stop() -> None:
        # The stream ended, or the client went away: a queued job never starts (its pool slot
        # is freed at once), a running one stops at its next token and frees its slot.
        cancel.set()
        future.cancel()

    async def events() -> AsyncIterator[str]:
        while True:
            try:
                kind, value = await asyncio.wait_for(queue.get(), DISCONNECT_POLL_S)
            except TimeoutError:
                # Nothing to send (queued, or between tokens): a server that reports a
                # disconnect only on a failed send would never tell us, so ask.
                if await request.is_disconnected():
                    return
                continue
            if kind == "token":
                yield _sse("token", {"text": value})
                continue
            error = value.exception()
            if error is not None:
                yield _sse("error", error_body(error))
            else:
                yield _sse("done", DraftOut.model_validate(value.result()).model_dump())
            return

    return _Stream(events(), stop)


class _Stream(StreamingResponse):
    """A server-sent event stream that calls `on_close` however it ends: finished, failed, or
    cancelled because the client disconnected (possibly before the first event was read)."""

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(
            content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()
