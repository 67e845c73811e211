"""Readers' rights: export everything stored about a reader, and delete it (admin only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from api.auth import AuthorizedRoute, allow
from api.deps import ServiceDep, run_cpu
from api.schemas import USER_ID_PATTERN, ErrorOut, UserDeletedOut, UserExportOut

router = APIRouter(prefix="/v1/users", tags=["readers"], route_class=AuthorizedRoute)
ERRORS = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}}
UserId = Annotated[str, Path(pattern=USER_ID_PATTERN, description="The reader's id.")]


@router.get(
    "/{user_id}/export",
    response_model=UserExportOut,
    responses=ERRORS,
    dependencies=[allow("admin")],
)
async def export_user(request: Request, user_id: UserId, service: ServiceDep) -> dict[str, Any]:
    """Everything stored about the reader: events (each `event_id` is the stored digest of the
    client's id), profile, outputs written for them alone; 404 if nothing was stored."""
    generated = service.writing.outputs_for_user(user_id) if service.writing else []
    return await run_cpu(request, service.readers.export_user, user_id, generated)


@router.delete(
    "/{user_id}",
    response_model=UserDeletedOut,
    responses=ERRORS,
    dependencies=[allow("admin")],
)
async def delete_user(request: Request, user_id: UserId, service: ServiceDep) -> UserDeletedOut:
    """Remove the reader's events, profile and personal outputs; 404 if nothing was stored."""
    removed = await run_cpu(request, service.readers.delete_user, user_id)
    return UserDeletedOut(user_id=user_id, deleted=removed)
