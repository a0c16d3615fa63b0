"""ThingsBoard device MQTT API compatibility: ``v1/devices/me/telemetry|attributes|rpc/…``.

The connection (username = access token) identifies the device, so topics never name it and
``device_key`` is always None. Because every ThingsBoard device uses the *same* topic names,
the broker must keep each connection's ``v1/devices/me/…`` traffic to that connection (as
ThingsBoard itself does); the ACL here only says which of those names a device may use.

- ``v1/devices/me/telemetry``: ``{"power": 812}``, ``[{…}, {…}]``,
  ``{"ts": 1714557600000, "values": {…}}`` or an array of those (at most ``MAX_ITEMS``).
  Keys map to metrics through ``DEFAULT_FIELDS`` (canonical names map to themselves) and the
  device's ``key_map`` on top (``{"watts": "power_w"}``); the conversion follows the target
  metric (``state`` takes true/false/"ON"…, the others numbers or numeric strings), and values
  are taken in canonical units (``energy`` is Wh). Unmapped keys (``temperature``, ``rssi``…)
  are not readings: they are kept in ``attributes`` (last value wins), as ThingsBoard would
  still store them. A ``ts`` outside the ``{"ts", "values"}`` form is an ordinary key.
- ``v1/devices/me/attributes``: client-side attributes → ``attributes``.
- ``v1/devices/me/rpc/request/<id>`` published by the device is a client-side RPC →
  ``rpc_request`` ``(id, {"method": …, "params": …})``; the server answers on
  ``v1/devices/me/rpc/response/<id>``.
- Commands are server-side RPC on ``v1/devices/me/rpc/request/<n>``:
  ``{"method": "setState", "params": true|false}`` for on/off and
  ``{"method": "toggle", "params": {}}`` for toggle. ``<n>`` is an integer, as ThingsBoard
  sends, because device SDKs parse it as one. The device's answer on
  ``v1/devices/me/rpc/response/<n>`` → ``command_result(id="<n>")``; accepted answers are a
  bare ``true``/``false``/``1``/``0``/``"ON"``/``"OFF"`` (the new state), or an object with
  optional ``state`` (or ``value``), ``ok``/``success`` and ``error``; ``null`` or ``{}`` mean
  "done" with no state.
- Not handled yet: attribute requests (``attributes/request/<id>``), claiming, the ``v2/…``
  short topics and the gateway API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from wattwatch.domain import (
    METRICS,
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
    bounded_attributes,
    clean_text,
    decode_items,
    failed_answer,
    join_reasons,
    json_type,
    lenient_number,
    load_json,
    load_object,
    message_text,
    metric_value,
    never_raises,
    numeric_id,
    parse_action,
    reading_ts,
    rejected,
    short,
    switch_state,
    topic_levels,
)

NAME: Final = DeviceProtocol.THINGSBOARD
PREFIX: Final = "v1/devices/me"


def _row(key: str, metric: str) -> MetricField:
    # The conversion belongs to the metric, so a key_map entry only has to name the metric.
    return MetricField((key,), metric, switch_state if metric == "state" else lenient_number)


DEFAULT_FIELDS: Final[Mapping[str, MetricField]] = {
    row.key: row
    for row in (
        *(_row(metric, metric) for metric in METRICS),
        _row("power", "power_w"),
        _row("voltage", "voltage_v"),
        _row("current", "current_a"),
        _row("energy", "energy_wh"),
        _row("pf", "power_factor"),
        _row("powerFactor", "power_factor"),
        _row("frequency", "frequency_hz"),
        _row("apparentPower", "apparent_power_va"),
        _row("reactivePower", "reactive_power_var"),
        _row("state", "state"),
    )
}


def fields_for(key_map: Mapping[str, str] | None) -> Mapping[str, MetricField]:
    """The default table with a device's ``key_map`` (its key → canonical metric) on top."""
    if not key_map:
        return DEFAULT_FIELDS
    return {**DEFAULT_FIELDS, **{key: _row(key, metric) for key, metric in key_map.items()}}


def device_key(topic: str) -> str | None:
    """Always None: the MQTT connection, not the topic, identifies a ThingsBoard device."""
    return None


@never_raises
def decode(
    topic: str,
    payload: bytes,
    *,
    received_ms: int,
    key_map: Mapping[str, str] | None = None,
) -> Decoded:
    """What one message from a ThingsBoard-API device says; never raises."""
    levels = topic_levels(topic)
    if levels is None or topic.count("/") < 3 or not topic.startswith(PREFIX + "/"):
        return rejected(f"topic {short(topic)} is not a {PREFIX}/… topic")
    rest = levels[3:]
    if rest == ["telemetry"]:
        return _decode_telemetry(payload, received_ms, fields_for(key_map))
    if rest == ["attributes"]:
        return _decode_attributes(payload)
    if len(rest) == 3 and rest[0] == "rpc" and rest[2]:
        if rest[1] == "response":
            return _decode_response(rest[2], payload)
        if rest[1] == "request":
            return _decode_client_rpc(rest[2], payload)
    if len(rest) == 3 and rest[:2] == ["attributes", "request"]:
        return Decoded()  # attribute requests are not served yet
    return rejected(f"unsupported ThingsBoard topic {short(topic)}")


def _decode_telemetry(
    payload: bytes, received_ms: int, fields: Mapping[str, MetricField]
) -> Decoded:
    extras: dict[str, Any] = {}
    decoded = decode_items(payload, lambda item: _reading(item, received_ms, fields, extras))
    if extras:
        try:
            decoded.attributes = bounded_attributes(extras)
        except ValueError as exc:
            decoded.rejected.append(Rejection(0, f"unmapped telemetry keys: {exc}"))
    return decoded


def _reading(
    item: Any,
    received_ms: int,
    fields: Mapping[str, MetricField],
    extras: dict[str, Any],
) -> Reading | None:
    if not isinstance(item, dict):
        raise ValueError(f"telemetry item must be a JSON object, got {json_type(item)}")
    ts_ms: int | None = None
    values = item
    if "ts" in item and "values" in item:
        values = item["values"]
        if not isinstance(values, dict):
            raise ValueError(f"values must be a JSON object, got {json_type(values)}")
        ts_ms = reading_ts(item["ts"], received_ms)
    metrics: dict[str, float] = {}
    problems: list[str] = []
    for key, raw in values.items():
        row = fields.get(key)
        if row is None:
            extras[key] = raw
            continue
        if raw is None:
            continue
        try:
            metrics[row.metric] = metric_value(key, row.metric, raw, row.convert)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError(join_reasons(problems))
    return Reading(values=metrics, ts_ms=ts_ms) if metrics else None


def _decode_attributes(payload: bytes) -> Decoded:
    try:
        return Decoded(attributes=bounded_attributes(load_object(payload)))
    except ValueError as exc:
        return rejected(str(exc))


def _decode_response(request_id: str, payload: bytes) -> Decoded:
    try:
        command_id = clean_text(request_id, "RPC id")
    except ValueError as exc:
        return rejected(str(exc))
    try:
        answer = load_json(payload)
    except ValueError as exc:
        return failed_answer(command_id, "unreadable answer", str(exc))  # the id is in the topic
    try:
        result = _result(answer)
    except ValueError as exc:
        return failed_answer(command_id, "unexpected answer", str(exc))
    result.id = command_id
    decoded = Decoded(command_result=result)
    if result.state is not None:
        decoded.readings.append(Reading(values={"state": float(result.state)}))
    return decoded


def _result(answer: Any) -> CommandResult:
    if answer is None:
        return CommandResult(ok=True)
    if not isinstance(answer, dict):
        try:
            return CommandResult(ok=True, state=int(switch_state(answer)))
        except ValueError:
            raise ValueError(f"answer must be a state or an object, got {short(answer)}") from None
    error = answer.get("error")
    ok = answer.get("ok", answer.get("success", error in (None, False, "")))
    if not isinstance(ok, bool):
        raise ValueError(f"ok must be true or false, got {short(ok)}")
    result = CommandResult(ok=ok)
    if error not in (None, False, ""):
        result.ok = False
        result.error = message_text(error)
    raw_state = answer.get("state", answer.get("value"))
    if raw_state is not None:
        try:
            result.state = int(switch_state(raw_state))
        except ValueError as exc:
            raise ValueError(f"state {exc}") from None
    return result


def _decode_client_rpc(request_id: str, payload: bytes) -> Decoded:
    try:
        rpc_id = clean_text(request_id, "RPC id")
        body = load_object(payload)
        method = body.get("method")
        if not isinstance(method, str) or not method:
            raise ValueError(f"RPC method must be a non-empty string, got {short(method)}")
        body = bounded_attributes(body)
    except ValueError as exc:
        return rejected(f"client-side RPC request unusable: {exc}")
    return Decoded(rpc_request=(rpc_id, body))


def encode_command(device: DeviceRef, action: str, command_id: str) -> OutboundMessage:
    """A server-side RPC ``setState``/``toggle`` on ``v1/devices/me/rpc/request/<n>``.

    ``correlation_id`` is ``<n>``, the integer request id as text, which the answer's topic
    carries; it is ``command_id`` itself when that is a small decimal number.
    """
    act = parse_action(action)
    request_id = str(numeric_id(command_id, 31))
    if act is CommandAction.TOGGLE:
        body: dict[str, Any] = {"method": "toggle", "params": {}}
    else:
        body = {"method": "setState", "params": act is CommandAction.ON}
    return OutboundMessage(
        topic=f"{PREFIX}/rpc/request/{request_id}",
        payload=orjson.dumps(body),
        correlation_id=request_id,
        reply_topic=f"{PREFIX}/rpc/response/{request_id}",
    )


def topic_allowed(device: DeviceRef, topic: str, *, publish: bool) -> bool:
    """The ThingsBoard device API topics, within ``v1/devices/me`` (the broker scopes ``me``).

    Publishing ``rpc/request/<id>`` is allowed because it is how a device makes a client-side
    RPC to the server; it must never be delivered to other devices.
    """
    return acl_allows(
        topic,
        publish=publish,
        may_publish=(
            f"{PREFIX}/telemetry",
            f"{PREFIX}/attributes",
            f"{PREFIX}/attributes/request/+",
            f"{PREFIX}/rpc/response/+",
            f"{PREFIX}/rpc/request/+",
        ),
        may_subscribe=(
            f"{PREFIX}/rpc/request/+",
            f"{PREFIX}/rpc/response/+",
            f"{PREFIX}/attributes",
            f"{PREFIX}/attributes/response/+",
        ),
    )
