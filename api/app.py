"""`create_app(settings)`: the FastAPI application. Models load once, in the lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

from api.auth import KeyRing
from api.errors import install_error_handlers
from api.limits import BodySizeLimit
from api.observability import AccessLog, Metrics, ServiceCollector
from api.routes import (
    articles,
    campaigns,
    experiments,
    feed,
    generation,
    headline_tests,
    health,
    quality,
    search,
    studio,
    users,
)
from core.service import NewsroomService
from core.settings import Settings
from core.threads import limit_threads

log = logging.getLogger(__name__)


async def _purge_events_hourly(app: FastAPI, retention_days: float) -> None:
    """Event retention: delete events older than the setting at start, then every hour (in one
    process of the newsroom at a time)."""
    service: NewsroomService = app.state.service

    def purge() -> int:
        with service.live.once("retention", ttl_s=3000) as mine:
            return service.readers.purge_expired_events(retention_days) if mine else 0

    while True:
        try:
            removed = await asyncio.get_running_loop().run_in_executor(app.state.cpu_pool, purge)
            if removed:
                log.info("retention: deleted %d events older than %s days", removed, retention_days)
        except Exception:
            log.exception("retention purge failed; retrying in an hour")
        await asyncio.sleep(3600)


def create_app(settings: Settings, service: NewsroomService | None = None) -> FastAPI:
    """Build the app. Pass `service` to share an already-loaded one (tests); otherwise it is
    built from `settings` at startup and closed (index snapshot saved) at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limit_threads(settings.ranking.torch_threads)
        owned = service is None
        if owned:
            app.state.service = await asyncio.to_thread(NewsroomService.from_settings, settings)
        else:
            app.state.service = service
        # Millions of long-lived objects (catalog, profiles, co-click counts) were just built:
        # move them out of the collector's sight, or every full collection walks them all and
        # stalls requests for hundreds of milliseconds.
        gc.collect()
        gc.freeze()
        app.state.service.start()  # follow other processes' writes (shared mode)
        app.state.cpu_pool = ThreadPoolExecutor(
            max_workers=settings.limits.cpu_workers, thread_name_prefix="newsroom-cpu"
        )
        retention = (
            asyncio.create_task(_purge_events_hourly(app, settings.event_retention_days))
            if settings.event_retention_days
            else None
        )
        try:
            yield
        finally:
            if retention is not None:
                retention.cancel()
            app.state.cpu_pool.shutdown(wait=False, cancel_futures=True)
            if owned:
                app.state.service.close()

    app = FastAPI(
        title="Newsroom",
        version="0.1.0",
        description="Personalized news: semantic retrieval, ranking and grounded generation.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.keyring = KeyRing.from_settings(settings)
    if not app.state.keyring.enabled:
        log.warning("no API keys configured: the API is OPEN (set NEWSROOM_API_KEYS)")
    if service is not None:
        app.state.service = service
    metrics = Metrics()
    metrics.registry.register(ServiceCollector(app))
    app.state.metrics = metrics

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.limits.max_request_bytes)
    app.add_middleware(AccessLog, metrics=metrics)
    app.include_router(health.router)
    app.include_router(articles.router)
    app.include_router(search.router)
    app.include_router(feed.router)
    app.include_router(generation.router)
    app.include_router(users.router)
    app.include_router(campaigns.router)
    app.include_router(experiments.router)
    app.include_router(headline_tests.router)
    app.include_router(quality.router)
    app.include_router(studio.router)
    app.mount("/studio/assets", StaticFiles(directory=studio.ASSETS_DIR), name="studio-assets")
    return app


def app_from_environment() -> FastAPI:
    """The app for `uvicorn --factory` (`newsroom serve --workers N` starts each worker process
    with it): settings read from the environment, in the process that serves them."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return create_app(Settings())
