"""Devices: register, list, inspect, rotate tokens; their readings at any resolution."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from wattwatch.domain import DeviceKind, DeviceProtocol, Interval, Role, now_ms
from wattwatch.export import MEDIA_TYPES, export_bytes
from wattwatch.queries.service import DEFAULT_LIMIT
from wattwatch.web.deps import Caller, Services, parse_time, public

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


class DeviceCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["Kitchen CT monitor"])
    site_id: int | None = None
    area_id: int | None = None
    kind: DeviceKind = DeviceKind.MONITOR
    protocol: DeviceProtocol = DeviceProtocol.NATIVE
    uid: str | None = Field(None, max_length=64, description="default: generated")
    topic: str | None = Field(
        None, max_length=128, description="Tasmota topic / Shelly prefix (default: uid)"
    )
    channels: list[str] = Field(default_factory=lambda: ["mains"], max_length=64)
    identifiers: dict[str, str] = Field(default_factory=dict, examples=[{"serial": "A1B2"}])
    location: dict[str, Any] | None = None
    key_map: dict[str, str] = Field(default_factory=dict)
    model: str | None = Field(None, max_length=120)
    firmware: str | None = Field(None, max_length=60)


class DeviceCreated(BaseModel):
    id: int
    uid: str
    token: str = Field(description="the device token; shown only in this answer")
    device: dict[str, Any]


@router.get("")
def list_devices(ww: Services, caller: Caller, site_id: int | None = None) -> list[dict[str, Any]]:
    return [public(d) for d in ww.registry.db.list_devices(caller.org_id, site_id)]


@router.post("", status_code=201, response_model=DeviceCreated)
def create_device(body: DeviceCreate, ww: Services, caller: Caller) -> DeviceCreated:
    device, token = ww.registry.create_device(caller, **body.model_dump())
    return DeviceCreated(id=device["id"], uid=device["uid"], token=token, device=public(device))


@router.get("/{device_id}")
def get_device(device_id: int, ww: Services, caller: Caller) -> dict[str, Any]:
    return public(ww.registry.get_device(caller, device_id))


@router.delete("/{device_id}", status_code=204)
def delete_device(device_id: int, ww: Services, caller: Caller) -> None:
    caller.require(Role.ADMIN)
    ww.registry.db.get_device(caller.org_id, device_id)
    ww.registry.db.delete_device(device_id)


@router.post("/{device_id}/token")
def rotate_token(device_id: int, ww: Services, caller: Caller) -> dict[str, str]:
    """Issue a new device token; the old one stops working at once."""
    return {"token": ww.registry.rotate_device_token(caller, device_id)}


@router.get("/{device_id}/readings")
def readings(
    device_id: int,
    ww: Services,
    caller: Caller,
    from_: str | None = Query(None, alias="from", description="ISO 8601 or epoch ms"),
    to: str | None = Query(None, description="ISO 8601 or epoch ms; default now"),
    interval: Interval = Interval.RAW,
    channel: str | None = None,
    metrics: str | None = Query(None, description="comma-separated, e.g. power_w,voltage_v"),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=1_000_000),
    cursor: str | None = Query(None, description="the 'next' of the previous page"),
    format: Literal["json", "csv", "parquet"] = Query(
        "json", description="csv or parquet: the whole range as a file (no paging)"
    ),
) -> Any:
    """Raw readings or rollups (1m, 1h, 1d; 1w and 1mo in the site's timezone)."""
    end = parse_time(to, now_ms() + 1)
    start = parse_time(from_, end - 86_400_000)
    wanted = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    if format != "json":
        body = export_bytes(
            ww.queries,
            caller.org_id,
            device_id,
            fmt=format,
            from_ms=start,
            to_ms=end,
            interval=interval,
            channel=channel,
            metrics=wanted,
        )
        name = f"device-{device_id}-{interval.value}.{format}"
        return Response(
            body,
            media_type=MEDIA_TYPES[format],
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return ww.queries.readings(
        caller.org_id,
        device_id,
        from_ms=start,
        to_ms=end,
        interval=interval,
        channel=channel,
        metrics=wanted,
        limit=limit,
        cursor=cursor,
    )
