"""A/B experiments and the model registry (admin): arms that differ by ranking-head version or
feed settings, per-arm clicks per feed and CTR with intervals, stop (and promote the winner)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from api.auth import AuthorizedRoute, allow
from api.deps import ServiceDep, run_cpu
from api.schemas import (
    EXPERIMENT_ID_PATTERN,
    ErrorOut,
    ExperimentIn,
    ExperimentOut,
    ExperimentReportOut,
    ExperimentsOut,
    ExperimentStopIn,
    ExperimentStoppedOut,
    ModelVersionOut,
    ModelVersionsOut,
)

router = APIRouter(prefix="/v1", tags=["experiments"], route_class=AuthorizedRoute)
ERRORS = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
    422: {"model": ErrorOut},
}
ExperimentId = Annotated[str, Path(pattern=EXPERIMENT_ID_PATTERN)]


@router.post(
    "/experiments",
    status_code=201,
    response_model=ExperimentOut,
    responses=ERRORS,
    dependencies=[allow("admin")],
)
def create_experiment(payload: ExperimentIn, service: ServiceDep) -> ExperimentOut:
    """Start an experiment: readers are assigned to arms by a hash of their id (the same arm on
    every process, for the experiment's life). One runs at a time."""
    arms = [a.model_dump(exclude_none=True) for a in payload.arms]
    return ExperimentOut.of(
        service.experiments.create(payload.name, arms, payload.sequential, payload.mode)
    )


@router.get(
    "/experiments", response_model=ExperimentsOut, responses=ERRORS, dependencies=[allow("admin")]
)
def list_experiments(service: ServiceDep) -> ExperimentsOut:
    return ExperimentsOut(experiments=[ExperimentOut.of(e) for e in service.experiments.list()])


@router.get(
    "/experiments/{experiment_id}",
    response_model=ExperimentReportOut,
    responses=ERRORS,
    dependencies=[allow("admin")],
)
async def experiment_report(
    request: Request, experiment_id: ExperimentId, service: ServiceDep
) -> ExperimentReportOut:
    """Per arm: readers, feeds, clicks per feed and CTR with 95% intervals; each treatment
    against the control (sequential by default: valid however often it is read)."""
    report = await run_cpu(request, service.experiments.report, experiment_id)
    return ExperimentReportOut.model_validate(report)


@router.post(
    "/experiments/{experiment_id}/stop",
    response_model=ExperimentStoppedOut,
    responses=ERRORS,
    dependencies=[allow("admin")],
)
async def stop_experiment(
    request: Request, experiment_id: ExperimentId, payload: ExperimentStopIn, service: ServiceDep
) -> ExperimentStoppedOut:
    experiment, outcome = await run_cpu(
        request, service.experiments.stop, experiment_id, payload.promote
    )
    return ExperimentStoppedOut(
        experiment=ExperimentOut.of(experiment),
        report=ExperimentReportOut.model_validate(outcome["report"]),
    )


@router.get("/models", response_model=ModelVersionsOut, dependencies=[allow("admin")])
def model_versions(service: ServiceDep) -> ModelVersionsOut:
    """The ranking-head versions in the registry (`newsroom retrain` adds them)."""
    serving = service.recommender.head_name if service.recommender else "none"
    return ModelVersionsOut(
        serving=serving,
        versions=[
            ModelVersionOut(
                version=v.version,
                status=v.status,  # type: ignore[arg-type]
                created_at=v.created_at,
                promoted_at=v.promoted_at,
                report=v.report,
            )
            for v in service.learning.store_versions()
        ],
        prompt_versions=service.experiments.prompt_versions(),
    )
