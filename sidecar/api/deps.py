"""Typed dependencies: routes ask for the Services object, never for globals."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sidecar.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
