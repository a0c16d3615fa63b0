"""The FastAPI application: routers, error boundary, lifespan tied to the services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from wattwatch import __version__
from wattwatch.web import dashboard, errors
from wattwatch.web.api import ai as ai_api
from wattwatch.web.api import alerts as alert_api
from wattwatch.web.api import (  # registry and control
    apikeys,
    areas,
    auth,
    claims,
    commands,
    devices,
    health,
    sites,
    telemetry,
    users,
)
from wattwatch.web.api import reports as reports_api
from wattwatch.web.api import webhooks as webhook_api
from wattwatch.web.guard import BodyLimit, ConnectionGuard, HttpLimits, guarded_protocol

if TYPE_CHECKING:
    from wattwatch.app import Wattwatch


def create_api(ww: Wattwatch, *, manage_lifecycle: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await ww.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                await ww.stop()

    app = FastAPI(
        title="wattwatch",
        version=__version__,
        description="Real-time electricity monitoring: ingest, registry, queries.",
        lifespan=lifespan,
    )
    app.state.ww = ww
    errors.install(app)
    app.add_middleware(
        BodyLimit,
        api_bytes=ww.settings.http_max_api_body_bytes,
        upload_bytes=ww.settings.max_body_bytes,
    )
    for module in (auth, sites, devices, telemetry, health):
        app.include_router(module.router)
    app.include_router(reports_api.router)
    for module in (alert_api, webhook_api):
        app.include_router(module.router)
    for module in (areas, claims, users, apikeys, commands):
        app.include_router(module.router)
    app.include_router(ai_api.router)
    # Last: the dashboard's pages and its view of which API routes exist.
    dashboard.install(app)
    return app


def uvicorn_options(ww: Wattwatch) -> dict[str, Any]:
    """``uvicorn.Config`` keywords that serve ``ww`` with the HTTP abuse guards (web/guard.py):
    the connection cap, header and body deadlines, keep-alive timeout from the settings."""
    settings = ww.settings
    guard = ConnectionGuard(
        HttpLimits(
            max_connections=settings.http_max_connections,
            max_connections_per_ip=settings.http_max_connections_per_ip,
            header_timeout_s=settings.http_header_timeout_s,
            body_timeout_s=settings.http_body_timeout_s,
        ),
        ww.stats.registry,
    )
    # Not uvicorn's limit_concurrency: it answers 503 to every request, on established
    # connections too, while the count is at the limit (guard.py says more).
    return {"http": guarded_protocol(guard), "timeout_keep_alive": settings.http_keep_alive_s}
