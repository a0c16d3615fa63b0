"""Shelly Gen2+ plugs: ``<prefix>/status/switch:0``, ``<prefix>/online``, RPC on ``<prefix>/rpc``.

``<prefix>`` is the device's MQTT topic prefix (default its id, ``shellyplusplugs-80646fc8fb9c``),
kept in ``DeviceRef.topic``; it may have several levels but must not start with another
protocol's root (``wattwatch/``, ``tele/``…; see ``protocols.check_device_topic``).

- ``<prefix>/status/switch:<n>`` (and ``pm1:<n>``), the whole component status the device
  publishes when "generic status update over MQTT" is on, is mapped through ``SWITCH_FIELDS``
  (``aenergy.total`` is already Wh). ``temperature``, ``aenergy.by_minute``, ``source`` and
  other components (``sys``, ``wifi``…) carry no canonical metric and are ignored. Component 0
  is the default channel, component n channel ``switch:<n>``.
- ``<prefix>/events/rpc`` ``NotifyStatus``/``NotifyFullStatus`` notifications carry the same
  component objects, partially; they are read the same way.
- The status has no timestamp (and ``NotifyStatus.ts`` depends on the plug's SNTP), so
  readings carry ``ts_ms=None`` (receive time).
- ``<prefix>/online``: ``true``/``false`` (the device's MQTT will) → ``online``.
- Commands are RPC frames on ``<prefix>/rpc`` with ``"src": "wattwatch"``; the device answers
  on ``wattwatch/rpc`` with ``{"id", "src", "dst", "result": {"was_on": …}}`` or
  ``{"id", …, "error": {"code", "message"}}``. The request id is an integer (Shelly echoes
  it as one); its two low bits record the action (1 on, 2 off, 3 toggle), so the answer alone
  tells the new state: on → 1, off → 0, toggle → not ``was_on``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

from wattwatch.domain import (
    CommandAction,
    CommandResult,
    Decoded,
    DeviceProtocol,
    DeviceRef,
    OutboundMessage,
    Reading,
    Rejection,
)
from wattwatch.protocols._payload import (
    MetricField,
    acl_allows,
    address_levels,
    decode_online,
    extract,
    field,
    load_object,
    message_text,
    never_raises,
    numeric_id,
    parse_action,
    rejected,
    short,
    switch_state,
    topic_address,
    topic_levels,
    valid_level,
)

NAME: Final = DeviceProtocol.SHELLY
# Our RPC client name; Shelly publishes answers to "<src>/rpc".
SRC: Final = "wattwatch"
REPLY_TOPIC: Final = f"{SRC}/rpc"

SWITCH_FIELDS: Final[tuple[MetricField, ...]] = (
    field("output", "state", switch_state),
    field("apower", "power_w"),
    field("voltage", "voltage_v"),
    field("current", "current_a"),
    field("freq", "frequency_hz"),
    field("pf", "power_factor"),
    field("aenergy.total", "energy_wh"),  # Wh on the wire
)

_COMPONENT: Final = re.compile(r"(switch|pm1):([0-9]{1,3})")
_ONLINE: Final[Mapping[str, bool]] = {"true": True, "false": False}
_NOTIFICATIONS: Final = frozenset({"NotifyStatus", "NotifyFullStatus"})
# Low two bits of a request id: which action it was (0 = not one of ours).
_ACTION_CODE: Final[Mapping[CommandAction, int]] = {
    CommandAction.ON: 1,
    CommandAction.OFF: 2,
    CommandAction.TOGGLE: 3,
}


def _prefix_of(levels: list[str]) -> str | None:
    if levels and all(valid_level(level) for level in levels):
        return "/".join(levels)
    return None


def device_key(topic: str) -> str | None:
    """The prefix before ``/status/<component>``, ``/online`` or ``/events/rpc``; else None.

    The RPC answer topic ``wattwatch/rpc`` names no device (the answer's ``src`` does), so it
    gives None too; ``protocols.identify`` still attributes it to Shelly.
    """
    levels = topic_levels(topic)
    if levels is None:
        return None
    if len(levels) >= 2 and levels[-1] == "online":
        return _prefix_of(levels[:-1])
    if len(levels) >= 3 and levels[-2] == "status" and levels[-1]:
        return _prefix_of(levels[:-2])
    if len(levels) >= 3 and levels[-2:] == ["events", "rpc"]:
        return _prefix_of(levels[:-2])
    return None


def _channel(kind: str, number: int) -> str | None:
    return None if number == 0 else f"{kind}:{number}"


@never_raises
def decode(
    topic: str,
    payload: bytes,
    *,
    received_ms: int,
    key_map: Mapping[str, str] | None = None,
) -> Decoded:
    """What one Shelly message says; never raises. ``received_ms``/``key_map`` are unused."""
    if topic == REPLY_TOPIC:
        return _decode_answer(payload)
    if device_key(topic) is None:
        return rejected(f"topic {short(topic)} is not a Shelly status, online or RPC topic")
    levels = topic.split("/")
    if levels[-1] == "online":
        return decode_online(payload, _ONLINE, "online must be true or false")
    if levels[-2] == "status":
        component = _COMPONENT.fullmatch(levels[-1])
        if component is None:
            return Decoded()  # sys, wifi, cloud…: no energy data
        try:
            status = load_object(payload)
        except ValueError as exc:
            return rejected(str(exc))
        decoded = Decoded()
        _add_component(decoded, component, status, index=0)
        return decoded
    return _decode_notification(payload)


def _add_component(decoded: Decoded, component: re.Match[str], status: Any, *, index: int) -> None:
    if not isinstance(status, dict):
        decoded.rejected.append(Rejection(index, f"{component.group(0)} must be a JSON object"))
        return
    try:
        values = extract(status, SWITCH_FIELDS)
    except ValueError as exc:
        decoded.rejected.append(Rejection(index, str(exc)))
        return
    if values:
        channel = _channel(component.group(1), int(component.group(2)))
        decoded.readings.append(Reading(values=values, channel=channel))


def _decode_notification(payload: bytes) -> Decoded:
    try:
        frame = load_object(payload)
    except ValueError as exc:
        return rejected(str(exc))
    method, params = frame.get("method"), frame.get("params")
    if not isinstance(method, str) or method not in _NOTIFICATIONS or not isinstance(params, dict):
        return Decoded()  # NotifyEvent (button presses…) and the like
    decoded = Decoded()
    for index, (key, status) in enumerate(params.items()):
        component = _COMPONENT.fullmatch(key)
        if component is not None:
            _add_component(decoded, component, status, index=index)
    return decoded


def _decode_answer(payload: bytes) -> Decoded:
    try:
        frame = load_object(payload)
    except ValueError as exc:
        return rejected(f"RPC answer unusable: {exc}")
    request_id = frame.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int) or request_id < 0:
        return rejected(f"RPC answer id must be a non-negative integer, got {short(request_id)}")
    command_id = str(request_id)
    if "error" in frame:
        error = frame["error"]
        if isinstance(error, dict):
            text = f"{message_text(error.get('code'), 20)}: {message_text(error.get('message'))}"
        else:
            text = message_text(error)
        return Decoded(command_result=CommandResult(ok=False, id=command_id, error=text))
    if "result" not in frame:
        return rejected("RPC answer has neither result nor error")
    return Decoded(
        command_result=CommandResult(
            ok=True, id=command_id, state=_state_after(request_id, frame["result"])
        )
    )


def _state_after(request_id: int, result: Any) -> int | None:
    """The relay state after the command ``request_id`` encodes, given its ``result``."""
    code = request_id & 3
    if code == _ACTION_CODE[CommandAction.ON]:
        return 1
    if code == _ACTION_CODE[CommandAction.OFF]:
        return 0
    was_on = result.get("was_on") if isinstance(result, dict) else None
    if code == _ACTION_CODE[CommandAction.TOGGLE] and isinstance(was_on, bool):
        return 0 if was_on else 1
    return None


def encode_command(device: DeviceRef, action: str, command_id: str) -> OutboundMessage:
    """A ``Switch.Set``/``Switch.Toggle`` RPC frame for switch 0 on ``<prefix>/rpc``.

    ``correlation_id`` is the integer request id as text: that is what the answer carries.
    """
    act = parse_action(action)
    prefix = topic_address(device.topic, "Shelly prefix", multi_level=True)
    request_id = numeric_id(command_id, 29) << 2 | _ACTION_CODE[act]
    if act is CommandAction.TOGGLE:
        method, params = "Switch.Toggle", {"id": 0}
    else:
        method, params = "Switch.Set", {"id": 0, "on": act is CommandAction.ON}
    frame = {"id": request_id, "src": SRC, "method": method, "params": params}
    return OutboundMessage(
        topic=f"{prefix}/rpc",
        payload=orjson.dumps(frame),
        correlation_id=str(request_id),
        reply_topic=REPLY_TOPIC,
    )


def topic_allowed(device: DeviceRef, topic: str, *, publish: bool) -> bool:
    """A Shelly publishes its status, online flag, notifications and RPC answers;
    it subscribes to its own ``<prefix>/rpc`` and ``<prefix>/command/#``.

    Every Shelly may publish to the shared ``wattwatch/rpc``; the control service should
    accept an answer only from the connection of the device the command went to.
    """
    if address_levels(device.topic, multi_level=True) is None:
        return False
    own = device.topic
    return acl_allows(
        topic,
        publish=publish,
        may_publish=(f"{own}/status/+", f"{own}/online", f"{own}/events/rpc", REPLY_TOPIC),
        may_subscribe=(f"{own}/rpc", f"{own}/command/#"),
    )
