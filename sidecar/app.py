"""The FastAPI app: routes, middleware and error handlers for `create_app(settings)`.

Nothing is built at import time. The lifespan asks `sidecar.wiring` for the parts, starts the
model load in the background (so /healthz answers at once and /readyz turns ready when the model
is warm) and the embedded catalog's warm-up, and closes everything on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sidecar import wiring
from sidecar.api import (
    admin,
    drop_in,
    health,
    rerank,
    search,
    tei_rerank,
    v1_rerank,
    v2_rerank,
)
from sidecar.api import explain as explain_api
from sidecar.api import metrics as metrics_api
from sidecar.api import ui as ui_api
from sidecar.api.body_limit import BodyLimit
from sidecar.api.validation import invalid_request
from sidecar.config import Settings
from sidecar.errors import INTERNAL_ERROR, SidecarError, status_for
from sidecar.observability.metrics import Metrics
from sidecar.observability.middleware import RequestMiddleware
from sidecar.scoring.base import Scorer

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, wait_for_model: bool = False, scorer: Scorer | None = None
) -> FastAPI:
    """The app for `settings`. `scorer` lets a caller share an already loaded model (tests,
    benchmarks); its `load` is then a no-op when it is ready."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = wiring.build_services(settings, scorer)
        app.state.services = services
        metrics.attach(services)  # scrape-time reads and observer hand-over
        load = asyncio.create_task(wiring.load_model(services))
        services.tasks.append(load)
        warm = asyncio.create_task(wiring.warm_catalog(services, load))
        services.tasks.append(warm)
        if wait_for_model:  # ready to serve: the model loaded and the embedded catalog encoded
            await asyncio.gather(load, warm)
        if settings.rules.watch:
            services.tasks.append(
                asyncio.create_task(services.rules.watch(settings.rules.watch_interval_s))
            )
        try:
            yield
        finally:
            metrics.detach()
            # a shared scorer belongs to whoever passed it in
            await wiring.close_services(services, close_scorer=scorer is None)

    metrics = Metrics()  # per app: several apps in one process keep separate numbers
    app = FastAPI(title="rerank sidecar", version=_version(), lifespan=lifespan)
    app.state.metrics = metrics
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.limits.max_body_bytes,
        read_timeout_s=settings.limits.body_read_timeout_s,
    )
    # added last, so outermost: a refused body still gets a request id, a log line, metrics
    app.add_middleware(RequestMiddleware, metrics=metrics, log_queries=settings.log_queries)
    app.router.routes.append(drop_in.prefixed)  # first: under /_engine every path is the engine's
    app.include_router(metrics_api.router)
    app.include_router(health.router)
    app.include_router(search.router)
    app.include_router(rerank.router)
    app.include_router(v1_rerank.router)
    app.include_router(v2_rerank.router)  # Cohere v2
    app.include_router(tei_rerank.router)  # text-embeddings-inference: /rerank
    app.include_router(admin.router)
    app.include_router(explain_api.router)
    app.include_router(ui_api.router)
    app.include_router(drop_in.router)  # last: /{index}/_search must not shadow others
    app.router.default = drop_in.passthrough  # what no route matched: the engine's API
    _install_error_handlers(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SidecarError)
    async def sidecar_error(request: Request, exc: SidecarError) -> JSONResponse:
        return JSONResponse(exc.to_json(), status_code=status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(invalid_request(exc.errors()).to_json(), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own answers (unknown route, wrong method, a body that cannot be read) in
        # the project's error shape instead of {"detail": ...}.
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return JSONResponse(
            {"error": code, "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return JSONResponse(INTERNAL_ERROR, status_code=500)


def _version() -> str:
    from sidecar import __version__

    return __version__
