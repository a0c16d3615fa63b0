"""The FastAPI application: routers, error boundary, lifespan tied to the services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

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
