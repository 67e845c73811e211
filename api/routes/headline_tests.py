"""Headline tests: an article's candidate headlines served by a bandit, a report per variant, a
winner locked. The CMS and admin run tests; the CMS and the app ask which headline a reader sees
(the feed carries it too)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from api.auth import AuthorizedRoute, allow
from api.deps import ServiceDep, run_cpu
from api.schemas import (
    ARTICLE_ID_PATTERN,
    HEADLINE_TEST_ID_PATTERN,
    USER_ID_PATTERN,
    ErrorOut,
    HeadlineLockIn,
    HeadlineOut,
    HeadlineReportOut,
    HeadlineReportsOut,
    HeadlineTestIn,
    HeadlineTestOut,
)

router = APIRouter(prefix="/v1", tags=["headline tests"], route_class=AuthorizedRoute)
ERRORS = {
    404: {"model": ErrorOut},
    409: {"model": ErrorOut, "description": "The article has a live test already."},
    422: {"model": ErrorOut},
    503: {"model": ErrorOut},
}
ArticleId = Annotated[str, Path(pattern=ARTICLE_ID_PATTERN, description="The article's id.")]
TestId = Annotated[
    str, Path(pattern=HEADLINE_TEST_ID_PATTERN, description="The headline test's id.")
]


@router.post(
    "/articles/{article_id}/headline-tests",
    status_code=201,
    response_model=HeadlineTestOut,
    responses=ERRORS,
    dependencies=[allow("cms")],
)
async def create_headline_test(
    article_id: ArticleId, payload: HeadlineTestIn, service: ServiceDep
) -> HeadlineTestOut:
    """Start a test of the editor's `variants` and `generated` model-written ones (2 to 10 in
    all); one running or locked test per article."""
    test = await service.headlines.create(article_id, payload.variants, payload.generated)
    return HeadlineTestOut.of(test)


@router.get(
    "/articles/{article_id}/headline-tests",
    response_model=HeadlineReportsOut,
    responses=ERRORS,
    dependencies=[allow("cms")],
)
async def list_headline_tests(
    request: Request, article_id: ArticleId, service: ServiceDep
) -> HeadlineReportsOut:
    """The article's tests with their reports, oldest first."""
    reports = await run_cpu(request, service.headlines.reports_of, article_id)
    return HeadlineReportsOut(
        article_id=article_id, tests=[HeadlineReportOut.of(r) for r in reports]
    )


@router.get(
    "/articles/{article_id}/headline",
    response_model=HeadlineOut,
    responses=ERRORS,
    dependencies=[allow("cms", "app")],
)
def article_headline(
    article_id: ArticleId,
    service: ServiceDep,
    user_id: Annotated[str, Query(pattern=USER_ID_PATTERN, description="The reader.")],
) -> HeadlineOut:
    """The headline this reader sees: the same variant for the test's life, the winner once
    locked, the article's own title when it has no live test."""
    shown = service.headlines.headline(article_id, user_id)
    return HeadlineOut(
        article_id=shown.article_id,
        test_id=shown.test_id,
        variant_id=shown.variant_id,
        text=shown.text,
    )


@router.get(
    "/headline-tests/{test_id}",
    response_model=HeadlineReportOut,
    responses=ERRORS,
    dependencies=[allow("cms")],
)
async def headline_test_report(
    request: Request, test_id: TestId, service: ServiceDep
) -> HeadlineReportOut:
    """Per variant: readers shown, readers who clicked, CTR, probability of being best."""
    return HeadlineReportOut.of(await run_cpu(request, service.headlines.report, test_id))


@router.post(
    "/headline-tests/{test_id}/lock",
    response_model=HeadlineReportOut,
    responses=ERRORS,
    dependencies=[allow("cms")],
)
async def lock_headline_test(
    request: Request, test_id: TestId, service: ServiceDep, payload: HeadlineLockIn | None = None
) -> HeadlineReportOut:
    """Show one variant to every reader from now on: `variant_id`, or the likeliest best."""
    variant_id = payload.variant_id if payload is not None else None
    report = await run_cpu(request, service.headlines.lock, test_id, variant_id)
    return HeadlineReportOut.of(report)


@router.post(
    "/headline-tests/{test_id}/stop",
    response_model=HeadlineReportOut,
    responses=ERRORS,
    dependencies=[allow("cms")],
)
async def stop_headline_test(
    request: Request, test_id: TestId, service: ServiceDep
) -> HeadlineReportOut:
    """End the test: readers see the article's own title again (the counts stay)."""
    return HeadlineReportOut.of(await run_cpu(request, service.headlines.stop, test_id))
