"""Liveness and what the service holds."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import ServiceDep
from api.schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
def healthz(request: Request, service: ServiceDep) -> HealthOut:
    h = service.status.health()
    return HealthOut(
        status="ok",
        articles=h.articles,
        index_size=h.index_size,
        index_kind=h.index_kind,
        model=h.model,
        database=h.database,
        ranker=h.ranker,
        events=h.events,
        mode=h.mode,
        live=h.live,
        log=h.log,
        keys_required=request.app.state.keyring.enabled,
    )
