"""Live stream (SSE): committed readings and service events of the caller's organisation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from wattwatch.live import LiveHub, Subscription
from wattwatch.web.deps import Caller, Services

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["stream"])

# A comment line this often keeps proxies from closing an idle stream and lets the server
# notice a client that went away.
HEARTBEAT_S = 15.0
# How long a browser waits before reconnecting after the stream ends.
RETRY_MS = 3000
MAX_DEVICE_FILTER = 100


async def _events(
    request: Request, hub: LiveHub, sub: Subscription, heartbeat_s: float
) -> AsyncIterator[bytes]:
    # Sent once subscribed: from here on the client misses nothing.
    yield f"retry: {RETRY_MS}\nevent: hello\ndata: {{}}\n\n".encode()
    reported_drops = 0
    while True:
        try:
            event = await asyncio.wait_for(sub.queue.get(), timeout=heartbeat_s)
        except TimeoutError:
            if await request.is_disconnected():
                return
            yield b": ping\n\n"
            continue
        if event is None:  # the server is shutting down
            return
        if sub.dropped != reported_drops:
            yield b'event: dropped\ndata: {"events": %d}\n\n' % (sub.dropped - reported_drops)
            reported_drops = sub.dropped
        try:
            chunk = event.sse()
        except TypeError:  # not JSON at all: drop it, keep the stream
            log.exception("live event %s could not be sent", event.type)
            continue
        yield chunk


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    request: Request,
    ww: Services,
    caller: Caller,
    device_id: list[int] | None = Query(
        None, description="only these devices (repeatable); default: every device of the org"
    ),
) -> StreamingResponse:
    """Server-sent events: ``readings`` ({device_id, points: [{ts, channel, power_w, …}]})
    after each commit, plus events other services publish (``alert.*``, ``command.result``…).
    """
    devices = None
    if device_id:
        from wattwatch.errors import InvalidInput

        if len(device_id) > MAX_DEVICE_FILTER:
            raise InvalidInput(f"at most {MAX_DEVICE_FILTER} device_id filters")
        for one in device_id:
            ww.registry.db.get_device(caller.org_id, one)  # 404 for another org's device
        devices = device_id
    hub = ww.live

    async def body() -> AsyncIterator[bytes]:
        async with hub.subscribe(caller.org_id, devices) as sub:
            async for chunk in _events(request, hub, sub, HEARTBEAT_S):
                yield chunk

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
