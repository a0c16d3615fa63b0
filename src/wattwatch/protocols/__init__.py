"""Protocol adapters (bytes ⇄ domain, pure and fuzzable) and the registry that picks one.

Every adapter module has the same shape, checked by mypy against ``ProtocolAdapter``:
``NAME``, ``device_key(topic)``, ``decode(topic, payload, *, received_ms, key_map)``,
``encode_command(device, action, command_id)`` and ``topic_allowed(device, topic, *, publish)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

from wattwatch.domain import CommandResult, Decoded, DeviceProtocol, DeviceRef, OutboundMessage
from wattwatch.protocols import native, shelly, tasmota, thingsboard
from wattwatch.protocols._payload import MAX_ITEMS, MAX_PAYLOAD_BYTES, address_levels, short

__all__ = [
    "ADAPTERS",
    "MAX_ITEMS",
    "MAX_PAYLOAD_BYTES",
    "ProtocolAdapter",
    "adapter_for",
    "check_device_topic",
    "command_answer",
    "identify",
]


class ProtocolAdapter(Protocol):
    """What the broker, ingest and control code may rely on from a protocol module."""

    @property
    def NAME(self) -> DeviceProtocol: ...

    def device_key(self, topic: str) -> str | None:
        """The device address in ``topic``, or None when the topic is not this protocol's
        (or, for ThingsBoard, always: the connection identifies the device)."""
        ...

    def decode(
        self,
        topic: str,
        payload: bytes,
        *,
        received_ms: int,
        key_map: Mapping[str, str] | None = None,
    ) -> Decoded:
        """Everything the message says; never raises, problems become ``Rejection``s."""
        ...

    def encode_command(self, device: DeviceRef, action: str, command_id: str) -> OutboundMessage:
        """The message asking ``device`` to switch; ``ValueError`` for an unknown action."""
        ...

    def topic_allowed(self, device: DeviceRef, topic: str, *, publish: bool) -> bool:
        """Whether authenticated ``device`` may publish to / subscribe to ``topic``."""
        ...


ADAPTERS: Final[Mapping[DeviceProtocol, ProtocolAdapter]] = {
    native.NAME: native,
    thingsboard.NAME: thingsboard,
    tasmota.NAME: tasmota,
    shelly.NAME: shelly,
}

# Topic roots owned by one protocol; a Shelly prefix (free-form) must not start with one.
_RESERVED_ROOTS: Final = frozenset({native.ROOT, "tele", "stat", "cmnd", "v1", "v2"})


def adapter_for(protocol: DeviceProtocol | str) -> ProtocolAdapter:
    """The adapter for ``protocol``; ``ValueError`` for protocols without one (``http``)."""
    try:
        return ADAPTERS[DeviceProtocol(protocol)]
    except (ValueError, KeyError):
        raise ValueError(f"no MQTT protocol adapter for {short(protocol)}") from None


def command_answer(
    device: DeviceRef, outbound: OutboundMessage, payload: bytes, *, received_ms: int
) -> CommandResult | None:
    """The answer to command ``outbound`` that ``payload``, a message from ``device`` on the
    reply topic, carries; None when it carries none, or another command's (by request id,
    where the protocol has one).
    """
    decoded = adapter_for(device.protocol).decode(
        outbound.reply_topic, payload, received_ms=received_ms, key_map=device.key_map
    )
    result = decoded.command_result
    if result is None or (result.id is not None and result.id != outbound.correlation_id):
        return None
    return result


def identify(topic: str) -> tuple[DeviceProtocol, str | None] | None:
    """Which protocol a published topic belongs to, and the device address in it.

    The address is None for ThingsBoard (the connection identifies the device) and for
    Shelly RPC answers on ``wattwatch/rpc`` (the payload's ``src`` does). The order settles
    overlaps: fixed roots first, free-form Shelly prefixes last.
    """
    if not isinstance(topic, str):
        return None
    if topic.startswith(thingsboard.PREFIX + "/"):
        return thingsboard.NAME, None
    if topic == shelly.REPLY_TOPIC:
        return shelly.NAME, None
    for adapter in (native, tasmota, shelly):
        key = adapter.device_key(topic)
        if key is not None:
            return adapter.NAME, key
    return None


def check_device_topic(protocol: DeviceProtocol | str, address: str) -> str | None:
    """Why ``address`` cannot be a device's topic address under ``protocol``, or None if it can.

    The registry should call this before saving a device: wildcards would widen the ACL, and a
    Shelly prefix under another protocol's root would capture that protocol's topics.
    """
    try:
        proto = DeviceProtocol(protocol)
    except ValueError:
        return f"unknown protocol {short(protocol)}"
    if proto in (DeviceProtocol.THINGSBOARD, DeviceProtocol.HTTP):
        return None  # no address in topics
    multi_level = proto is DeviceProtocol.SHELLY
    levels = address_levels(address, multi_level=multi_level)
    if levels is None:
        return f"{short(address)} must be 1-256 printable characters without + # or a leading $" + (
            ", in non-empty levels" if multi_level else " or /"
        )
    if multi_level and levels[0] in _RESERVED_ROOTS:
        return f"a Shelly prefix must not start with {levels[0]!r}/, another protocol's root"
    return None
