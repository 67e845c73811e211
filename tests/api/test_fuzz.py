"""Schemathesis against the live OpenAPI schema: every operation, ~80 generated cases each
(1,200+ in all), no 5xx and every response matching the schema."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.app import create_app
from core.service import NewsroomService
from core.settings import GenerationConfig, Settings
from retrieval.embedder import Embedder

CASES_PER_OPERATION = 80


@pytest.fixture(scope="module")
def fuzz_app(
    tmp_path_factory: pytest.TempPathFactory, tiny_generation: GenerationConfig, embedder: Embedder
):  # type: ignore[no-untyped-def]
    from core.domain import ArticleDraft, EventDraft
    from tests.conftest import HEADLINES

    generation = tiny_generation
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path_factory.mktemp("fuzz") / "var", generation=generation, _env_file=None
    )
    service = NewsroomService.from_settings(settings, embedder=embedder)
    service.articles.ingest(
        [ArticleDraft(id=i, title=t, body=f"{t}. Details.", category=c) for i, t, c in HEADLINES]
    )
    service.readers.record_events([EventDraft(user_id="u1", article_id="h1", type="click")])
    app = create_app(settings, service)
    with TestClient(app):  # runs the lifespan (pools) for the whole module
        yield app
    service.close()


@pytest.mark.slow
def test_no_server_errors_and_responses_match_the_schema(fuzz_app) -> None:  # type: ignore[no-untyped-def]
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    ran: dict[str, int] = {}
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=CASES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            ran[case.operation.label] = ran.get(case.operation.label, 0) + 1
            # Every check but "schema-valid data must be accepted": the schema cannot say that a
            # title made only of zero-width characters is empty after normalisation (a 422).
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Exception as error:  # keep going: report every failing operation at once
            failures.append(f"{operation.label}: {error}"[:1500])
    assert not failures, "\n\n".join(failures)
    assert len(ran) >= 15, sorted(ran)
    assert sum(ran.values()) >= 1000, ran
