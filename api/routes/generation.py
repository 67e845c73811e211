"""Generation: personalized summaries (apps), headline variants (CMS), drafts (writers)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.auth import AuthorizedRoute, allow, require_reader_data
from api.deps import ServiceDep, observe_async
from api.errors import error_body
from api.schemas import (
    SEGMENT_PATTERN,
    USER_ID_PATTERN,
    DraftIn,
    DraftOut,
    DraftSentenceIn,
    DraftSentenceOut,
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
    (article, segment, template, model). A cached summary never waits for the model queue."""
    writing = service.require_writing()
    return await observe_async(request, "generation", writing.summary, user_id, article_id)


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
    return await observe_async(request, "generation", writing.segment_summary, article_id, segment)


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
    per (article, segment, n, template, model), and a cached set is answered without touching
    the model queue. `user_id` needs the app or admin role."""
    if payload.user_id is not None:
        require_reader_data(request)
    writing = service.require_writing()
    return await observe_async(
        request, "generation", writing.headlines, article_id, payload.user_id, payload.n
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
            "events, a `sentence` event as each sentence completes (checked and cited), and a "
            "final `done` event carrying the settled result (a `restart` event means a lost "
            "worker's draft started over: drop the text so far).",
        },
    },
)
async def draft(request: Request, payload: DraftIn, service: ServiceDep) -> Any:
    """A draft grounded on related articles, with headline options and the ids it used.
    Streams tokens as server-sent events when asked to; the `done` event carries the guarded
    result, which replaces the streamed text if the guard rejected it. A client that
    disconnects cancels its draft. `user_id` needs the app or admin role (a `segment` is open
    to writers)."""
    if payload.user_id is not None:
        require_reader_data(request)
    writing = service.require_writing()
    audience = writing.audience_for(payload.audience, payload.segment, payload.user_id)
    # Everything that can fail with a status code fails here, before a stream starts.
    job = writing.draft_request(payload.brief, audience, payload.related_k, payload.sources)
    if "text/event-stream" not in request.headers.get("accept", ""):
        return await observe_async(request, "generation", writing.draft, job)

    stream = writing.draft_events(job)

    async def events() -> AsyncIterator[str]:
        async for event in stream:
            if event.kind == "token":
                yield _sse("token", {"text": event.data})
            elif event.kind == "sentence":
                yield _sse("sentence", event.data)
            elif event.kind == "restart":
                yield _sse("restart", event.data)
            elif event.kind == "error":
                yield _sse("error", error_body(failure_of(event.data)))
                return
            else:
                result = writing.draft_value(job, event.data)
                yield _sse("done", DraftOut.model_validate(result).model_dump())
                return

    return _Stream(events(), on_close=stream.aclose)


@router.post(
    "/drafts/sentence",
    dependencies=[allow("writer")],
    response_model=DraftSentenceOut,
    responses=ERRORS,
)
async def redo_draft_sentence(
    request: Request, payload: DraftSentenceIn, service: ServiceDep
) -> dict[str, Any]:
    """Write one sentence of a draft again (the writer did not keep it): the model's own,
    after the sentences before it, checked and cited; else the closest source sentence."""
    writing = service.require_writing()
    return await observe_async(
        request,
        "generation",
        writing.redo_sentence,
        payload.brief,
        payload.audience,
        payload.sources,
        payload.sentences,
        payload.index,
    )


class _Stream(StreamingResponse):
    """A server-sent event stream that runs `on_close` however it ends: finished, failed, or
    cancelled because the client disconnected (possibly before the first event was read);
    closing the job's event stream cancels the job."""

    def __init__(
        self, content: AsyncIterator[str], on_close: Callable[[], Awaitable[None]]
    ) -> None:
        super().__init__(
            content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.on_close()


def failure_of(error: dict[str, Any]) -> Exception:
    from generation.jobs import raise_error

    try:
        raise_error(error)
    except Exception as exc:
        return exc
    return RuntimeError("unknown generation error")
