"""Advertisers' campaigns: create, read, change, delete; delivery reports; a preview of who
would see one. Role `ads` (and `admin`); the preview names example readers, so admin only."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from api.auth import AuthorizedRoute, allow
from api.deps import ServiceDep, run_cpu
from api.schemas import (
    CAMPAIGN_ID_PATTERN,
    CampaignIn,
    CampaignOut,
    CampaignPatch,
    CampaignPreviewOut,
    CampaignReportOut,
    CampaignsOut,
    ErrorOut,
)

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"], route_class=AuthorizedRoute)
ERRORS = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
    422: {"model": ErrorOut},
}
CampaignId = Annotated[str, Path(pattern=CAMPAIGN_ID_PATTERN, description="The campaign's id.")]


@router.post(
    "", status_code=201, response_model=CampaignOut, responses=ERRORS, dependencies=[allow("ads")]
)
async def create_campaign(
    request: Request, payload: CampaignIn, service: ServiceDep
) -> CampaignOut:
    """A new campaign (its creative and audience are embedded once, here)."""
    spec = payload.model_dump(mode="json")
    return CampaignOut.of(await run_cpu(request, service.campaigns.create, spec))


@router.get("", response_model=CampaignsOut, responses=ERRORS, dependencies=[allow("ads")])
def list_campaigns(
    service: ServiceDep,
    status: Annotated[Literal["active", "paused"] | None, Query()] = None,
) -> CampaignsOut:
    return CampaignsOut(campaigns=[CampaignOut.of(c) for c in service.campaigns.list(status)])


@router.get(
    "/{campaign_id}", response_model=CampaignOut, responses=ERRORS, dependencies=[allow("ads")]
)
def get_campaign(campaign_id: CampaignId, service: ServiceDep) -> CampaignOut:
    return CampaignOut.of(service.campaigns.get(campaign_id))


@router.patch(
    "/{campaign_id}", response_model=CampaignOut, responses=ERRORS, dependencies=[allow("ads")]
)
async def update_campaign(
    request: Request, campaign_id: CampaignId, payload: CampaignPatch, service: ServiceDep
) -> CampaignOut:
    """Change some fields; a pause, a new bid or budget holds from the next feed on."""
    updated = await run_cpu(request, service.campaigns.update, campaign_id, payload.changes())
    return CampaignOut.of(updated)


@router.delete("/{campaign_id}", status_code=204, responses=ERRORS, dependencies=[allow("ads")])
def delete_campaign(campaign_id: CampaignId, service: ServiceDep) -> Response:
    """Stop and remove the campaign (its delivery records are kept for billing)."""
    service.campaigns.delete(campaign_id)
    return Response(status_code=204)


@router.get(
    "/{campaign_id}/report",
    response_model=CampaignReportOut,
    responses=ERRORS,
    dependencies=[allow("ads")],
)
async def campaign_report(
    request: Request, campaign_id: CampaignId, service: ServiceDep
) -> CampaignReportOut:
    """Delivery by day, pacing today, and audience breakdowns (k readers a cell at least,
    with differential-privacy noise); never a reader id."""
    report = await run_cpu(request, service.sponsored.report, campaign_id)
    return CampaignReportOut.model_validate(report)


@router.get(
    "/{campaign_id}/preview",
    response_model=CampaignPreviewOut,
    responses=ERRORS,
    dependencies=[allow("admin")],
)
async def campaign_preview(
    request: Request, campaign_id: CampaignId, service: ServiceDep
) -> CampaignPreviewOut:
    """Whether each of the studio's example readers would see the campaign now, and why."""
    readers = service.status.example_readers()
    rows = await run_cpu(request, service.sponsored.preview, campaign_id, readers)
    return CampaignPreviewOut(campaign_id=campaign_id, readers=rows)
