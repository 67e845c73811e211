"""What editors check before trusting the models: evaluation reports and live counters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.auth import AuthorizedRoute, allow
from api.deps import ServiceDep
from api.schemas import ErrorOut, ExampleReadersOut, QualityOut

router = APIRouter(prefix="/v1", tags=["quality"], route_class=AuthorizedRoute)


@router.get(
    "/quality",
    response_model=QualityOut,
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}},
    dependencies=[allow("cms", "writer")],
)
def quality(service: ServiceDep) -> dict[str, Any]:
    """The latest ranking, generation and personalization reports (newest first), the served
    model and prompt-template versions, index size and the generation cache hit rate."""
    return service.status.quality()


@router.get(
    "/example-readers",
    response_model=ExampleReadersOut,
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}},
    dependencies=[allow("cms", "writer", "app")],
)
def example_readers(service: ServiceDep) -> ExampleReadersOut:
    """Reader ids to try in the studio's feed preview; `newsroom demo` writes them."""
    return ExampleReadersOut(readers=service.status.example_readers())
