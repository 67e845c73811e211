"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from core.service import NewsroomService


def get_service(request: Request) -> NewsroomService:
    return request.app.state.service


ServiceDep = Annotated[NewsroomService, Depends(get_service)]
