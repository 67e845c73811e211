"""The one place where domain errors become HTTP responses. Every error is JSON:
`{"error": {"code", "message", "field"}}`."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import UNION_TAGS
from core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    LimitExceeded,
    ModelUnavailable,
    NewsroomError,
    NotFound,
    Overloaded,
    Unauthorized,
    unavailable_store,
)

log = logging.getLogger(__name__)

STATUS_OF: dict[type[NewsroomError], tuple[int, str]] = {
    NotFound: (404, "not_found"),
    InvalidInput: (422, "invalid_input"),
    Conflict: (409, "conflict"),
    LimitExceeded: (413, "too_large"),
    ModelUnavailable: (503, "model_unavailable"),
    Overloaded: (503, "overloaded"),
    Unauthorized: (401, "unauthorized"),
    Forbidden: (403, "forbidden"),
}


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "field": field}},
        status_code=status,
        headers=headers,
    )


def _field_of(location: tuple) -> str:
    # ("body", "articles", 3, "title") -> "articles[3].title"; ("query", "k") -> "k"
    # Only the first element says where (a field may itself be called `body`).
    if location and location[0] in ("body", "query", "path", "header"):
        location = location[1:]
    parts = [p for p in location if p not in UNION_TAGS]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    field = _field_of(tuple(first.get("loc", ())))
    message = f"{field}: {first.get('msg', 'invalid value')}"
    if len(exc.errors()) > 1:
        message += f" (and {len(exc.errors()) - 1} more problems)"
    return error_response(422, "invalid_input", message, field)


def status_of(exc: BaseException) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    if isinstance(exc, NewsroomError):
        return 400, "bad_request"
    if unavailable_store(exc) is not None:
        return 503, "unavailable"
    return 500, "internal"


def error_body(exc: BaseException) -> dict:
    """The error envelope for a stream that can no longer change its status code."""
    status, code = status_of(exc)
    if status == 500:
        log.error("unhandled error in a stream: %s", type(exc).__name__, exc_info=exc)
        return {"error": {"code": code, "message": "internal error", "field": None}}
    fallback = unavailable_store(exc) or str(exc)
    message = exc.message if isinstance(exc, NewsroomError) else fallback
    return {"error": {"code": code, "message": message, "field": getattr(exc, "field", None)}}


async def _domain(_request: Request, exc: NewsroomError) -> JSONResponse:
    status, code = status_of(exc)
    headers = None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    if status == 503:
        headers = {"Retry-After": str(getattr(exc, "retry_after_s", 5))}
    return error_response(status, code, exc.message, exc.field, headers)


async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        exc.status_code, "http_error"
    )
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    unavailable = unavailable_store(exc)
    if unavailable is not None:
        log.warning("%s: %s", unavailable, exc)
        return error_response(503, "unavailable", unavailable, headers={"Retry-After": "5"})
    log.exception("unhandled error: %s", type(exc).__name__)
    return error_response(500, "internal", "internal error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(NewsroomError, _domain)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
