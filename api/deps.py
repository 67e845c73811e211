"""Dependencies shared by the routes."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from core.service import NewsroomService


async def get_service(request: Request) -> NewsroomService:
    # async on purpose: FastAPI runs a plain `def` dependency on its thread pool, a thread hop
    # per request just to read an attribute.
    return request.app.state.service


ServiceDep = Annotated[NewsroomService, Depends(get_service)]


T = TypeVar("T")


async def run_cpu(request: Request, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run CPU-bound work on the app's small pool (one thread per core) rather than anyio's 40
    threads: fewer threads fighting over the GIL gives a shorter tail under load."""
    pool = request.app.state.cpu_pool
    started = time.perf_counter()
    try:
        return await asyncio.get_running_loop().run_in_executor(
            pool, functools.partial(fn, *args, **kwargs)
        )
    finally:
        observe(request, "cpu", getattr(fn, "__name__", "job"), started)


async def observe_async(
    request: Request, pool: str, fn: Callable[..., Awaitable[T]], *args: object
) -> T:
    """Await `fn(*args)`, timed under `pool` (model work: `generation`)."""
    started = time.perf_counter()
    try:
        return await fn(*args)
    finally:
        observe(request, pool, getattr(fn, "__name__", "job"), started)


def observe(request: Request, pool: str, job: str, started: float) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.work.labels(pool, job).observe(time.perf_counter() - started)
