"""Typed dependencies: routes ask for the Services object, never for globals."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sidecar.services import Services


async def get_services(request: Request) -> Services:
    # async: FastAPI runs a plain function dependency in its thread pool, a thread hand-off on
    # every request for one attribute read
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
