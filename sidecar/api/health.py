"""GET /healthz (the process answers) and GET /readyz (model, engine and cache, each named)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from sidecar.api.deps import ServicesDep

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> JSONResponse:
    state = services.scorer.state
    engine_ok, cache_ok = await asyncio.gather(
        _ping(services.backend.ping()), _ping(services.cache.ping())
    )
    parts: dict[str, Any] = {
        "model": {
            "ready": state.ready,
            "status": state.status,
            "reason": state.reason,
            "progress": state.progress,
            "model": services.scorer.model_id,
            "device": state.device,
            "reads_images": services.scorer.reads_images,
            "warmup": services.warmup,
        },
        "engine": {"ready": engine_ok, "kind": services.backend.name},
        "cache": {"ready": cache_ok, "kind": services.cache.name},
    }
    # The cache is optional for serving (requests degrade without it), so it does not gate
    # readiness; it is still reported so an operator sees it.
    ready = state.ready and engine_ok
    not_ready = [name for name in ("model", "engine", "cache") if not parts[name]["ready"]]
    body = {"ready": ready, "not_ready": not_ready, **parts}
    return JSONResponse(body, status_code=200 if ready else 503)


async def _ping(call: Any) -> bool:
    try:
        return bool(await asyncio.wait_for(call, timeout=2.0))
    except Exception:  # any failure to answer is "not reachable", which is what we report
        return False
