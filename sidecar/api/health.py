"""GET /healthz (the process answers) and GET /readyz (model, engine and cache, each named).

The engine part names the check that decided it (`check`): an engine backend reads cluster
health, and where its key may not (an index-read-only key: 401/403) counts the default index
instead (`check: index_count`, with `index` and the refusal in `reason`); a backend without such
checks (the embedded engine) is pinged (`check: ping`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from sidecar.api.deps import ServicesDep
from sidecar.backends.base import ChecksReadiness, Readiness, SearchBackend
from sidecar.scoring.base import languages_of
from sidecar.services import Services
from sidecar.wiring import calibration_status

router = APIRouter()

# The engine's checks (at most two requests of PROBE_TIMEOUT_S each) and the cache's ping must
# answer within a readiness probe's timeout (3 s in deploy/k8s).
ENGINE_CHECK_S = 2.5
PING_S = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> JSONResponse:
    state = services.scorer.state
    # The embedded catalog is encoded once at start-up; until it is, a search would wait on the
    # warm-up for the model and fall back, so the replica takes no traffic yet.
    warming = services.warmup.get("state") == "running"
    calibration = calibration_status(services)
    engine, cache_ok, hybrid = await asyncio.gather(
        _engine_readiness(services.backend), _ping(services.cache.ping()), _hybrid(services)
    )
    parts: dict[str, Any] = {
        "model": {
            "ready": state.ready and not warming,
            "status": state.status,
            "reason": state.reason,
            "progress": state.progress,
            "model": services.scorer.model_id,
            "device": state.device,
            "reads_images": services.scorer.reads_images,
            "languages": list(languages_of(services.scorer)),
            "warmup": services.warmup,
            # informational, like the cache: raw scores serve, but thresholds mean less
            "calibrated": calibration.pop("calibrated"),
            "calibration": calibration,  # version, source, fitted_on; or why scores are raw
        },
        "engine": {"ready": engine.ready, "kind": services.backend.name, "check": engine.check},
        "cache": {"ready": cache_ok, "kind": services.cache.name},
        "rules": {
            # a watcher that should run and does not: the file's edits would go unseen
            "ready": services.rules.watching or not services.settings.rules.watch,
            "watching": services.rules.watching,
            "version": services.rules.current.version,
            "last_errors": len(services.rules.last_errors),
        },
    }
    # The vector leg is optional too: without it searches stay lexical, and this says why.
    parts["hybrid"] = hybrid
    if engine.index is not None:
        parts["engine"]["index"] = engine.index
    if engine.reason:
        parts["engine"]["reason"] = engine.reason
    # The cache and the rules watcher are optional for serving (requests degrade without the
    # cache; the last good rules stay live), so they do not gate readiness; they are reported
    # so an operator sees them.
    ready = parts["model"]["ready"] and engine.ready
    not_ready = [name for name in ("model", "engine", "cache", "rules") if not parts[name]["ready"]]
    body = {"ready": ready, "not_ready": not_ready, **parts}
    return JSONResponse(body, status_code=200 if ready else 503)


async def _engine_readiness(backend: SearchBackend) -> Readiness:
    if not isinstance(backend, ChecksReadiness):
        return Readiness(await _ping(backend.ping()), "ping")
    try:
        return await asyncio.wait_for(backend.readiness(), timeout=ENGINE_CHECK_S)
    except TimeoutError:
        return Readiness(False, "timeout", reason=f"no answer within {ENGINE_CHECK_S} s")
    except Exception as exc:  # a check that breaks is a part that is not ready, reported as such
        return Readiness(False, "error", reason=f"{exc.__class__.__name__}: {exc}")


async def _hybrid(services: Services) -> dict[str, Any]:
    """Whether the default index's searches can have a vector leg: `status` is `available` or
    `unavailable: <reason>`."""
    hybrid = services.settings.hybrid
    index = services.settings.engine.default_index
    try:
        reason = await asyncio.wait_for(
            services.pipeline.retriever.unavailable(index), timeout=ENGINE_CHECK_S
        )
    except TimeoutError:
        reason = f"the vector field check did not answer within {ENGINE_CHECK_S} s"
    status = "available" if reason is None else f"unavailable: {reason}"
    return {"enabled": hybrid.enabled, "status": status, "index": index, "field": hybrid.field}


async def _ping(call: Any) -> bool:
    try:
        return bool(await asyncio.wait_for(call, timeout=PING_S))
    except Exception:  # any failure to answer is "not reachable", which is what we report
        return False
