"""The native wattwatch MQTT protocol: ``wattwatch/<uid>/telemetry|status|command[/result]``.

Contract (DESIGN.md §4):

- ``wattwatch/<uid>/telemetry``: one reading object or an array of them (at most
  ``MAX_ITEMS``), ``{"ts": …, "channel": "mains", "power_w": 812.5, …}``. ``ts`` is optional
  (epoch ms, epoch s or ISO 8601; absent → receive time), ``channel`` is optional (absent → the
  device's default channel). Every other key must be a canonical metric name (or a key the
  device's ``key_map`` aliases to one): an unknown key rejects that reading with
  ``unknown metric 'x'`` rather than being dropped silently, because on our own protocol it
  is a firmware bug the device author needs to see. Values must be JSON numbers.
- ``wattwatch/<uid>/status``: ``{"online": true, "firmware": "1.2.0", …}`` → ``online`` and
  the other keys as ``attributes``.
- ``wattwatch/<uid>/command`` (server → device): ``{"id": "c-123", "action": "on"}``; the
  answer ``{"id": "c-123", "ok": true, "state": 1}`` on ``wattwatch/<uid>/command/result``
  becomes a ``command_result`` (and a ``state`` reading).

Duplicate JSON keys: the last one wins (as in every mainstream JSON parser).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from wattwatch.domain import (
    METRICS,
    CommandResult,
    Decoded,
    DeviceProtocol,
    DeviceRef,
    OutboundMessage,
    Reading,
    Rejection,
)
from wattwatch.protocols._payload import (
    acl_allows,
    address_levels,
    bounded_attributes,
    channel_name,
    clean_text,
    decode_items,
    failed_answer,
    join_reasons,
    json_type,
    load_object,
    message_text,
    metric_value,
    never_raises,
    number,
    parse_action,
    reading_ts,
    rejected,
    short,
    switch_state,
    topic_address,
    topic_levels,
    valid_level,
)

NAME: Final = DeviceProtocol.NATIVE
ROOT: Final = "wattwatch"

# Keys of a telemetry object that are not metrics.
_TS: Final = "ts"
_CHANNEL: Final = "channel"


def device_key(topic: str) -> str | None:
    """The uid in ``wattwatch/<uid>/…``; None for other topics."""
    levels = topic_levels(topic)
    if levels is None or len(levels) < 3 or levels[0] != ROOT or not valid_level(levels[1]):
        return None
    return levels[1]


@never_raises
def decode(
    topic: str,
    payload: bytes,
    *,
    received_ms: int,
    key_map: Mapping[str, str] | None = None,
) -> Decoded:
    """What one message from a native device says; never raises (problems → ``rejected``)."""
    uid = device_key(topic)
    if uid is None:
        return rejected(f"topic {short(topic)} is not a {ROOT}/<uid>/… topic")
    kind = topic.split("/", 2)[2]
    if kind == "telemetry":
        return decode_telemetry(payload, received_ms=received_ms, key_map=key_map)
    if kind == "status":
        return _decode_status(payload)
    if kind == "command/result":
        return _decode_result(payload)
    return rejected(
        f"unknown topic {short(topic)}; a device publishes telemetry, status or command/result"
    )


@never_raises
def decode_telemetry(
    payload: bytes,
    *,
    received_ms: int,
    key_map: Mapping[str, str] | None = None,
) -> Decoded:
    """Readings from a JSON object or array in the native format (MQTT telemetry, HTTP batch)."""
    aliases = key_map or {}
    return decode_items(payload, lambda item: _reading(item, received_ms, aliases))


def _reading(item: Any, received_ms: int, aliases: Mapping[str, str]) -> Reading:
    if not isinstance(item, dict):
        raise ValueError(f"reading must be a JSON object, got {json_type(item)}")
    reading = Reading(values={})
    problems: list[str] = []
    for key, raw in item.items():
        try:
            if key == _TS:
                reading.ts_ms = None if raw is None else reading_ts(raw, received_ms)
            elif key == _CHANNEL:
                reading.channel = channel_name(raw)
            else:
                metric = aliases.get(key, key)
                if metric not in METRICS:
                    raise ValueError(f"unknown metric {short(key)}")
                reading.values[metric] = metric_value(key, metric, raw, number)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError(join_reasons(problems))
    if not reading.values:
        raise ValueError("reading has no metric values")
    return reading


def _decode_status(payload: bytes) -> Decoded:
    try:
        status = load_object(payload)
    except ValueError as exc:
        return rejected(str(exc))
    decoded = Decoded()
    online = status.pop("online", None)
    if isinstance(online, bool):
        decoded.online = online
    elif online is not None:
        decoded.rejected.append(Rejection(0, f"online must be true or false, got {short(online)}"))
    try:
        decoded.attributes = bounded_attributes(status)
    except ValueError as exc:
        decoded.rejected.append(Rejection(0, str(exc)))
    return decoded


def _decode_result(payload: bytes) -> Decoded:
    try:
        answer = load_object(payload)
        command_id = clean_text(answer.get("id"), "id")
    except ValueError as exc:
        return rejected(f"command result unusable: {exc}")
    ok = answer.get("ok")
    if not isinstance(ok, bool):
        return failed_answer(
            command_id, "malformed answer", f"ok must be true or false, got {short(ok)}"
        )
    result = CommandResult(ok=ok, id=command_id)
    decoded = Decoded(command_result=result)
    error = answer.get("error")
    if error is not None:
        result.error = message_text(error)
    raw_state = answer.get("state")
    if raw_state is not None:
        try:
            state = switch_state(raw_state)
        except ValueError as exc:
            decoded.rejected.append(Rejection(0, f"state {exc}"))
        else:
            result.state = int(state)
            decoded.readings.append(Reading(values={"state": state}))
    return decoded


def encode_command(device: DeviceRef, action: str, command_id: str) -> OutboundMessage:
    """``{"id", "action"}`` on ``wattwatch/<uid>/command``; ``ValueError`` for unknown actions."""
    act = parse_action(action)
    uid = topic_address(device.uid, "device uid")
    return OutboundMessage(
        topic=f"{ROOT}/{uid}/command",
        payload=orjson.dumps({"id": command_id, "action": act.value}),
        correlation_id=command_id,
        reply_topic=f"{ROOT}/{uid}/command/result",
    )


def topic_allowed(device: DeviceRef, topic: str, *, publish: bool) -> bool:
    """A native device publishes its telemetry, status and results; it reads its commands."""
    if address_levels(device.uid) is None:
        return False
    base = f"{ROOT}/{device.uid}"
    return acl_allows(
        topic,
        publish=publish,
        may_publish=(f"{base}/telemetry", f"{base}/status", f"{base}/command/result"),
        may_subscribe=(f"{base}/command",),
    )
