"""Devices: register (or pre-register for claiming), list, edit, import/export, rotate tokens;
their readings at any resolution."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from wattwatch.domain import DeviceKind, DeviceProtocol, Interval, Role, now_ms
from wattwatch.errors import InvalidInput
from wattwatch.export import MEDIA_TYPES, export_bytes
from wattwatch.queries.service import DEFAULT_LIMIT
from wattwatch.registry import inventory
from wattwatch.web.api.telemetry import read_body
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
    claimable: bool = Field(
        False,
        description="pre-register for claiming: no organisation, no token yet, a claim code; "
        "whoever claims it (POST /api/v1/claims) owns it and the device fetches its token "
        "(POST /api/v1/provision)",
    )
    claim_code: str | None = Field(
        None, max_length=100, description="with claimable: the code printed on its label"
    )


class DeviceCreated(BaseModel):
    id: int
    uid: str
    token: str | None = Field(
        None, description="the device token; shown only in this answer (none when claimable)"
    )
    claim_code: str | None = Field(None, description="claimable devices: their claim code")
    device: dict[str, Any]


class ChannelUpdate(BaseModel):
    name: str = Field(min_length=1, max_length=64, examples=["ac01"])
    appliance: str | None = Field(None, max_length=120, examples=["Oven"])
    submeter: bool | None = Field(
        None, description="behind another channel of the site: left out of site totals"
    )


class ChannelFlags(BaseModel):
    appliance: str | None = Field(None, max_length=120)
    submeter: bool | None = None


class DeviceUpdate(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    site_id: int | None = None
    area_id: int | None = None
    kind: DeviceKind | None = None
    protocol: DeviceProtocol | None = None
    uid: str | None = Field(None, max_length=64)
    topic: str | None = Field(None, max_length=128)
    identifiers: dict[str, str] | None = None
    location: dict[str, Any] | None = None
    key_map: dict[str, str] | None = None
    model: str | None = Field(None, max_length=120)
    firmware: str | None = Field(None, max_length=60)
    channels: list[ChannelUpdate] | None = Field(
        None, max_length=64, description="added when new, else their appliance/submeter set"
    )


@router.get("")
def list_devices(
    ww: Services,
    caller: Caller,
    site_id: int | None = None,
    area_id: int | None = Query(None, description="this area and the areas inside it"),
    kind: DeviceKind | None = None,
) -> list[dict[str, Any]]:
    areas = ww.registry.area_subtree(caller, area_id) if area_id is not None else None
    found = ww.registry.db.select_devices(
        caller.org_id, site_id=site_id, area_ids=areas, kind=str(kind) if kind else None
    )
    return [public(d) for d in found]


@router.post("", status_code=201, response_model=DeviceCreated)
def create_device(body: DeviceCreate, ww: Services, caller: Caller) -> DeviceCreated:
    values = body.model_dump(exclude={"claimable", "claim_code"})
    if body.claimable:
        caller.require(Role.ADMIN)
        if body.site_id is not None or body.area_id is not None or body.location:
            raise InvalidInput("a claimable device gets its site when it is claimed")
        for unused in ("site_id", "area_id", "location"):
            values.pop(unused)
        device, code = ww.registry.preregister_device(**values, claim_code=body.claim_code)
        return DeviceCreated(
            id=device["id"], uid=device["uid"], claim_code=code, device=public(device)
        )
    if body.claim_code:
        raise InvalidInput("claim_code goes with claimable: true")
    device, token = ww.registry.create_device(caller, **values)
    return DeviceCreated(id=device["id"], uid=device["uid"], token=token, device=public(device))


# Before /{device_id}: "export" and "import" are not device ids.
@router.get("/export", response_class=Response)
def export_inventory(
    ww: Services,
    caller: Caller,
    format: Literal["csv", "yaml"] = "csv",
    site_id: int | None = None,
) -> Response:
    """The device inventory (no secrets) as CSV or YAML, in the form import reads back."""
    body = inventory.export_inventory(ww.registry, caller, format, site_id=site_id)
    return Response(
        body,
        media_type=inventory.MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="devices.{format}"'},
    )


@router.post(
    "/import",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "uid,name,kind,protocol,topic,site,area,channels\n"
                    "plug-201,Printer 201,plug,tasmota,printer201,Head office,"
                    "Floor 2/Print room,mains:Printer\n",
                },
                "application/yaml": {"schema": {"type": "string"}},
            },
        }
    },
)
async def import_inventory(
    request: Request,
    ww: Services,
    caller: Caller,
    format: Literal["csv", "yaml"] | None = Query(None, description="default: by Content-Type"),
    dry_run: bool = Query(False, description="check and report, change nothing"),
) -> Any:
    """Create or update devices from CSV/YAML, idempotent by uid. Every row is checked first;
    when one is wrong nothing is applied and the 422 lists every bad row. The tokens of new
    devices are in the answer, once."""
    from starlette.concurrency import run_in_threadpool

    body = await read_body(request, inventory.MAX_BYTES)
    kind = format or ("yaml" if "yaml" in request.headers.get("content-type", "") else "csv")
    try:
        result = await run_in_threadpool(
            inventory.import_inventory, ww.registry, caller, body, kind, dry_run=dry_run
        )
    except inventory.InventoryErrors as exc:
        return JSONResponse(
            {"error": {"code": exc.code, "message": str(exc), "rows": exc.problems}},
            status_code=422,
        )
    return result.to_json()


@router.get("/{device_id}")
def get_device(device_id: int, ww: Services, caller: Caller) -> dict[str, Any]:
    return public(ww.registry.get_device(caller, device_id))


@router.patch("/{device_id}")
def update_device(
    device_id: int, body: DeviceUpdate, ww: Services, caller: Caller
) -> dict[str, Any]:
    """Change name, place (site, area), kind, protocol address, identifiers, location or
    channels. A new uid, protocol or topic ends the device's live MQTT sessions."""
    values = body.model_dump(exclude_unset=True)
    for key in ("name", "kind", "protocol", "uid", "topic"):
        if key in values and values[key] is None:
            raise InvalidInput(f"{key} cannot be null")
    if values.get("channels") is not None:
        values["channels"] = [
            c.model_dump(exclude_unset=True, exclude_none=True) for c in body.channels or []
        ]
    return public(ww.registry.update_device(caller, device_id, values))


@router.patch("/{device_id}/channels/{name}")
def update_channel(
    device_id: int, name: str, body: ChannelFlags, ww: Services, caller: Caller
) -> dict[str, Any]:
    """Set what a channel feeds (``appliance``) and whether it is a sub-meter; a new name
    adds the channel."""
    return ww.registry.set_channel(
        caller, device_id, name, body.model_dump(exclude_unset=True, exclude_none=True)
    )


@router.delete("/{device_id}", status_code=204)
def delete_device(device_id: int, ww: Services, caller: Caller) -> None:
    ww.registry.delete_device(caller, device_id)


@router.post("/{device_id}/provisioning")
def reopen_provisioning(device_id: int, ww: Services, caller: Caller) -> dict[str, Any]:
    """Revoke the token of a device with a claim code so it fetches a new one with
    ``POST /api/v1/provision`` (it was reset, or lost the first answer)."""
    return public(ww.registry.reopen_provisioning(caller, device_id))


@router.post("/{device_id}/token")
def rotate_token(device_id: int, ww: Services, caller: Caller) -> dict[str, str]:
    """Issue a new device token; the old one stops working at once (HTTP at the next request,
    MQTT: its live sessions on the embedded broker are closed now)."""
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
