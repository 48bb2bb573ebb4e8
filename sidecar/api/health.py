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
        "rules": {
            # a watcher that should run and does not: the file's edits would go unseen
            "ready": services.rules.watching or not services.settings.rules.watch,
            "watching": services.rules.watching,
            "version": services.rules.current.version,
            "last_errors": len(services.rules.last_errors),
        },
    }
    # The cache and the rules watcher are optional for serving (requests degrade without the
    # cache; the last good rules stay live), so they do not gate readiness; they are reported
    # so an operator sees them.
    ready = state.ready and engine_ok
    not_ready = [name for name in ("model", "engine", "cache", "rules") if not parts[name]["ready"]]
    body = {"ready": ready, "not_ready": not_ready, **parts}
    return JSONResponse(body, status_code=200 if ready else 503)


async def _ping(call: Any) -> bool:
    try:
        return bool(await asyncio.wait_for(call, timeout=2.0))
    except Exception:  # any failure to answer is "not reachable", which is what we report
        return False
