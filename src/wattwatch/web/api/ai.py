"""AI: appliance labels, timelines and "what is on now", candidates to name, forecasts, models.

Thin routes over ``AiService``; training and inference run in a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from wattwatch.ai.service import AiService
from wattwatch.domain import now_ms, parse_ts
from wattwatch.errors import InvalidInput, Unavailable
from wattwatch.web.deps import Caller, Services, parse_time

router = APIRouter(prefix="/api/v1", tags=["ai"])

DAY_MS = 86_400_000
Horizon = Literal["24h", "7d", "month"]


def _ai(ww: Any) -> AiService:
    if ww.ai is None:
        raise Unavailable("the AI service is not running on this server")
    return ww.ai  # type: ignore[no-any-return]


class LabelIn(BaseModel):
    appliance: str = Field(min_length=1, max_length=120, examples=["Kettle"])
    start: int | str = Field(description="ISO 8601 or epoch ms", examples=[1732345678901])
    end: int | str = Field(description="ISO 8601 or epoch ms", examples=[1732345858901])


class LabelsIn(BaseModel):
    labels: list[LabelIn] = Field(min_length=1, max_length=1000)


class CandidateName(BaseModel):
    name: str = Field(min_length=1, max_length=120, examples=["Kettle"])


class TrainIn(BaseModel):
    days: int | None = Field(None, ge=1, le=120, description="default: the server's setting")


def _ms(value: int | str) -> int:
    try:
        return parse_ts(value)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


@router.post("/devices/{device_id}/labels", status_code=201)
def add_labels(
    device_id: int, body: LabelIn | LabelsIn, ww: Services, caller: Caller
) -> dict[str, Any]:
    """Mark runs of an appliance ("this was the kettle"): one label or ``{"labels": [...]}``."""
    items = body.labels if isinstance(body, LabelsIn) else [body]
    spans = [(i.appliance, _ms(i.start), _ms(i.end)) for i in items]
    return {"labels": _ai(ww).add_labels(caller, device_id, spans)}


@router.get("/devices/{device_id}/labels")
def list_labels(
    device_id: int,
    ww: Services,
    caller: Caller,
    appliance: str | None = None,
    from_: str | None = Query(None, alias="from"),
    to: str | None = None,
) -> dict[str, Any]:
    """Labels of the device (user, seed) and the plugs/sub-meters that give on/off truth."""
    lo = parse_time(from_, 0) if from_ else None
    hi = parse_time(to, 0) if to else None
    return _ai(ww).list_labels(caller, device_id, appliance=appliance, from_ms=lo, to_ms=hi)


@router.delete("/devices/{device_id}/labels/{label_id}", status_code=204)
def delete_label(device_id: int, label_id: int, ww: Services, caller: Caller) -> None:
    _ai(ww).delete_label(caller, device_id, label_id)


@router.get("/devices/{device_id}/appliances")
async def appliances(
    device_id: int,
    ww: Services,
    caller: Caller,
    from_: str | None = Query(None, alias="from", description="default: 24 h ago"),
    to: str | None = Query(None, description="default: now"),
) -> dict[str, Any]:
    """Per-appliance on/off timeline and energy in [from, to), and what is on now."""
    hi = parse_time(to, now_ms())
    lo = parse_time(from_, hi - DAY_MS)
    return await asyncio.to_thread(_ai(ww).appliances, caller, device_id, lo, hi)


@router.get("/devices/{device_id}/appliances/candidates")
async def candidates(device_id: int, ww: Services, caller: Caller) -> dict[str, Any]:
    """Appliances found without labels (clusters of on/off events) for the user to name."""
    return await asyncio.to_thread(_ai(ww).candidates, caller, device_id)


@router.post("/devices/{device_id}/appliances/candidates/{cluster_id}")
async def name_candidate(
    device_id: int, cluster_id: int, body: CandidateName, ww: Services, caller: Caller
) -> dict[str, Any]:
    """Name a candidate: its recent events become labels of that appliance."""
    return await asyncio.to_thread(_ai(ww).name_candidate, caller, device_id, cluster_id, body.name)


@router.get("/devices/{device_id}/forecast")
async def device_forecast(
    device_id: int, ww: Services, caller: Caller, horizon: Horizon = "24h"
) -> dict[str, Any]:
    """Next 24 h hourly, next 7 days daily, or month-end energy and bill, with 80 % intervals."""
    return await asyncio.to_thread(_ai(ww).forecast_device, caller, device_id, horizon)


@router.get("/sites/{site_id}/forecast")
async def site_forecast(
    site_id: int, ww: Services, caller: Caller, horizon: Horizon = "24h"
) -> dict[str, Any]:
    """The same for a whole site (its channels that are not sub-meters), with its tariff."""
    return await asyncio.to_thread(_ai(ww).forecast_site, caller, site_id, horizon)


@router.get("/devices/{device_id}/models")
def list_models(device_id: int, ww: Services, caller: Caller) -> dict[str, Any]:
    """Stored model versions of the device with their metrics, newest first."""
    return {"models": _ai(ww).list_models(caller, device_id)}


@router.post("/devices/{device_id}/models", status_code=201)
async def train(device_id: int, body: TrainIn, ww: Services, caller: Caller) -> dict[str, Any]:
    """Train now (minutes on a busy machine for 14 days of data) and store new versions."""
    return await asyncio.to_thread(_ai(ww).train, caller, device_id, days=body.days)
