"""Admin routes: rules (state, reload, preview) and the score cache (stats, flush).

Every route needs `Authorization: Bearer <admin_token>` (401 otherwise). Without an
`admin_token` in the configuration the routes are off and answer 404, as if absent.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse
from pydantic import Field, model_validator

from sidecar.api.deps import ServicesDep, get_services
from sidecar.api.models import Body
from sidecar.cache.base import CacheUnavailable
from sidecar.cache.keys import model_slug
from sidecar.errors import InvalidRequest, NotFound, Unauthorized
from sidecar.operations.preview import preview
from sidecar.rules.loader import RulesError, parse_rules
from sidecar.services import Services


def require_admin(
    services: Annotated[Services, Depends(get_services)],
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    token = services.settings.admin_token
    if token is None:
        raise NotFound("not found: admin routes are off (no admin_token configured)")
    scheme, _, given = (authorization or "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise Unauthorized("admin routes need Authorization: Bearer <admin_token>")


router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


class PreviewRequest(Body):
    rules: str = Field(..., min_length=1, max_length=1_000_000, description="candidate YAML")
    queries: list[Annotated[str, Field(max_length=2048)]] = Field(..., min_length=1, max_length=50)
    size: int = Field(10, ge=1, le=100)
    window: int | None = Field(None, ge=1)
    variant: str | None = Field(None, description="preview this variant of the candidate")


class FlushRequest(Body):
    model: str | None = Field(None, min_length=1, description="flush this model's scores")
    prefix: str | None = Field(None, min_length=1, description="flush keys under this prefix")

    @model_validator(mode="after")
    def _one(self) -> FlushRequest:
        if (self.model is None) == (self.prefix is None):
            raise ValueError("give exactly one of model, prefix")
        return self


@router.get("/rules")
async def rules_state(services: ServicesDep) -> dict[str, Any]:
    return services.rules.describe()


@router.post("/rules/reload", response_model=None)
async def rules_reload(services: ServicesDep) -> dict[str, Any] | JSONResponse:
    before = services.rules.current.version
    try:
        loaded = services.rules.reload()
    except RulesError as exc:
        return _rules_invalid(exc, services.rules.current.version)
    return {"status": "reloaded", "version": loaded.version, "previous": before}


@router.post("/rules/preview", response_model=None)
async def rules_preview(
    body: PreviewRequest, services: ServicesDep
) -> dict[str, Any] | JSONResponse:
    try:
        candidate = parse_rules(body.rules, "<candidate>")
    except RulesError as exc:
        return _rules_invalid(exc, services.rules.current.version)
    candidate = candidate.select(body.variant) if body.variant else candidate
    queries = [q for q in (q.strip() for q in body.queries) if q]
    if not queries:
        raise InvalidRequest("queries are all empty", field="queries")
    results = await preview(services, candidate, queries, body.size, body.window)
    return {"live_version": services.rules.current.version, "results": results}


@router.get("/cache/stats")
async def cache_stats(services: ServicesDep) -> dict[str, Any]:
    stats = services.cache.stats()
    stats["single_flight_shared"] = services.scoring.flights.shared
    stats["prefix"] = services.settings.cache.prefix
    return stats


@router.post("/cache/flush", response_model=None)
async def cache_flush(body: FlushRequest, services: ServicesDep) -> dict[str, Any] | JSONResponse:
    own = services.settings.cache.prefix
    if body.model is not None:
        prefix = f"{own}{model_slug(body.model)}:"
    else:
        prefix = body.prefix or ""
        if not prefix.startswith(own):  # never reach keys that are not the sidecar's
            raise InvalidRequest(f"prefix must start with the cache prefix {own!r}", field="prefix")
    services.scoring.flushed()  # in-flight scores must not recreate what is deleted now
    try:
        deleted = await services.cache.delete_prefix(prefix)
    except CacheUnavailable as exc:
        return JSONResponse(
            {"error": "cache_unavailable", "message": str(exc), "prefix": prefix}, status_code=503
        )
    return {"deleted": deleted, "prefix": prefix}


def _rules_invalid(exc: RulesError, live_version: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": "rules_invalid",
            "message": "rules do not validate; the live rules are unchanged",
            "problems": [str(p) for p in exc.problems],
            "live_version": live_version,
        },
        status_code=422,
    )
