"""What control needs from the broker: request/response, and ending a device's live sessions.

``CommandTransport`` is ``wattwatch.broker.rpc.Requester``, the request half of the
brokers' ``Transport`` (a protocol: control depends on the shape, not on a broker).
``SessionRevoker`` ends the MQTT connections of a device whose token was rotated or revoked,
so the change takes effect at once and not at its next reconnect (the broker checks the token
on every CONNECT).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from wattwatch.broker.rpc import Requester

log = logging.getLogger(__name__)

# Publish to the device and return its first matching reply (``DeviceTimeout``).
CommandTransport = Requester


def end_device_sessions(mqtt: Any, device_id: int) -> int:
    """Close every live connection of ``device_id`` on the embedded broker; how many.

    Call it on the broker's event loop. An external broker (Mosquitto) authenticates devices
    itself and offers no such call: there the old token works until the device reconnects
    (docs/api.md).
    """
    embedded = getattr(mqtt, "embedded", None)
    disconnect = getattr(embedded, "disconnect_device", None)
    return int(disconnect(device_id)) if callable(disconnect) else 0


class SessionRevoker:
    """``RegistryService`` credential listener: ends the device's sessions from any thread."""

    def __init__(self, mqtt: Callable[[], Any]) -> None:
        self._mqtt = mqtt
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """The loop the broker runs on (``None`` when it stops)."""
        self._loop = loop

    def __call__(self, device_id: int) -> None:
        loop, mqtt = self._loop, self._mqtt()
        if loop is None or mqtt is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._end(mqtt, device_id)
        else:
            loop.call_soon_threadsafe(self._end, mqtt, device_id)

    @staticmethod
    def _end(mqtt: Any, device_id: int) -> None:
        ended = end_device_sessions(mqtt, device_id)
        if ended:
            log.info(
                "device %s: %d MQTT connection(s) ended (credentials changed)", device_id, ended
            )
