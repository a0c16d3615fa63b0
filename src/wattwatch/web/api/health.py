"""Liveness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from wattwatch import __version__
from wattwatch.web.deps import Services

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(ww: Services) -> dict[str, Any]:
    return {"status": "ok", "version": __version__, "queued_readings": ww.pipeline.queued_readings}


@router.get("/metrics", response_class=Response)
def metrics(ww: Services) -> Response:
    return Response(generate_latest(ww.stats.registry), media_type=CONTENT_TYPE_LATEST)
