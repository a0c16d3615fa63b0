"""Device-facing HTTP: batch upload of readings with a device token."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from wattwatch.errors import InvalidInput, PayloadTooLarge
from wattwatch.ingest.http import BodyError, is_json, parse_batch, parse_json_array
from wattwatch.web.deps import DeviceToken, Services

router = APIRouter(prefix="/api/v1", tags=["telemetry"])

_EXAMPLE = [
    {"ts": 1732345678901, "channel": "mains", "power_w": 812.5, "voltage_v": 229.8},
    {"ts": 1732345683901, "power_w": 790.0, "energy_wh": 123456.0},
]


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is larger than {limit} bytes; split the upload")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes; split the upload")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/telemetry",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"example": _EXAMPLE},
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "ts,channel,power_w,energy_wh\n1732345678901,mains,812.5,123456\n",
                },
            },
        }
    },
)
async def upload(request: Request, ww: Services, token: DeviceToken) -> dict[str, Any]:
    """Upload a batch of readings (JSON array, NDJSON or CSV) with the device's token.

    Answers ``{accepted, duplicates, rejected: [{index, reason}]}`` once the accepted
    readings are committed. Re-sending a batch is harmless: what is stored is counted as
    duplicates.
    """
    # The token lookup is a database read: keep it off the event loop that serves everyone.
    device = await asyncio.to_thread(ww.registry.device_for_token, token)
    body = await read_body(request, ww.settings.max_body_bytes)
    content_type = request.headers.get("content-type")
    try:
        batch = await ww.pipeline.decode_json(body) if is_json(content_type) else None
        if batch is not None:  # decoded elsewhere: a large batch of valid readings
            ww.limits.check(device["id"], len(batch))
            found = await ww.pipeline.ingest_uniform(device, batch)
            if found is None:  # a channel it names cannot be had: the general path says which
                found = await ww.pipeline.ingest_objects(device, parse_json_array(body))
            result = found
        elif is_json(content_type):
            items = parse_json_array(body)
            ww.limits.check(device["id"], len(items))  # 429 + Retry-After; nothing stored
            result = await ww.pipeline.ingest_objects(device, items)
        else:
            readings, indices, rejected = parse_batch(body, content_type)
            ww.limits.check(device["id"], len(readings) + len(rejected))
            result = await ww.pipeline.ingest(device, readings, indices=indices, rejected=rejected)
    except BodyError as exc:
        raise InvalidInput(str(exc)) from None
    ww.stats.message("http", "ok")
    return result.to_json()
