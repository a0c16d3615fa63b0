"""Tasmota smart plugs: ``tele/<topic>/SENSOR|STATE|LWT``, ``stat/<topic>/POWER|RESULT``.

Assumes Tasmota's default ``FullTopic`` ``%prefix%/%topic%/``; ``<topic>`` is the device's
Tasmota topic (one level), kept in ``DeviceRef.topic``.

- ``tele/<topic>/SENSOR`` (and ``stat/<topic>/STATUS8|STATUS10``, which wrap the same data in
  ``StatusSNS``): the ``ENERGY`` object is mapped through ``ENERGY_FIELDS``; everything else a
  Tasmota prints (switches, temperature sensors, ``Today``/``Yesterday``) is ignored.
  Multi-channel devices print arrays (``"Power": [120, 45]``): element 1 goes to the default
  channel, element n to channel ``ch<n>``. Scalar voltage/frequency apply to every channel;
  other scalars next to arrays (``Total`` is then the sum of all channels) belong to no
  single channel and are dropped.
- Reading time: Tasmota's ``Time`` is the device's *local* time without a zone and is only as
  good as its NTP/timezone settings, so readings carry ``ts_ms=None`` (receive time). MQTT
  delivery is near-real-time, so this loses well under a second, never an hour.
- ``tele/<topic>/STATE`` (and ``StatusSTS``): ``POWER``/``POWER<n>`` → ``state`` readings
  (``POWER``/``POWER1`` is the default channel, ``POWER<n>`` channel ``ch<n>``), the rest
  (uptime, Wi-Fi…) → ``attributes``. ``tele/<topic>/INFO1..3`` → ``attributes``.
- ``tele/<topic>/LWT``: ``Online``/``Offline`` → ``online``.
- ``stat/<topic>/POWER`` (``ON``/``OFF``) and ``stat/<topic>/RESULT`` (``{"POWER": "ON"}``) →
  a ``state`` reading and, for the first relay, a ``command_result``. Tasmota has no request
  ids: results carry ``id=None`` and are matched to the pending command by reply topic.
  ``{"Command": "Unknown"|"Error"}`` → a failed ``command_result``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

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
    bounded_attributes,
    decode_online,
    extract,
    field,
    json_type,
    load_object,
    load_text,
    message_text,
    never_raises,
    parse_action,
    rejected,
    scaled,
    short,
    switch_state,
    topic_address,
    topic_levels,
    valid_level,
)

NAME: Final = DeviceProtocol.TASMOTA

ENERGY_FIELDS: Final[tuple[MetricField, ...]] = (
    field("Total", "energy_wh", scaled(1000)),  # kWh on the wire
    field("Power", "power_w"),
    field("ApparentPower", "apparent_power_va"),
    field("ReactivePower", "reactive_power_var"),
    field("Factor", "power_factor"),
    field("Voltage", "voltage_v"),
    field("Current", "current_a"),
    field("Frequency", "frequency_hz"),
)
# Scalars that hold for every channel of a multi-channel device (one supply, one meter chip).
_SHARED_METRICS: Final = frozenset({"voltage_v", "frequency_hz"})
# Tasmota drives at most 32 relays / energy channels.
MAX_CHANNELS: Final = 32

_POWER_KEY: Final = re.compile(r"POWER([1-9][0-9]?)?")
_COMMANDS: Final[Mapping[CommandAction, bytes]] = {
    CommandAction.ON: b"ON",
    CommandAction.OFF: b"OFF",
    CommandAction.TOGGLE: b"TOGGLE",
}
_LWT: Final[Mapping[str, bool]] = {"online": True, "offline": False}


def device_key(topic: str) -> str | None:
    """The ``<topic>`` in ``tele/<topic>/…`` or ``stat/<topic>/…``; None for other topics."""
    levels = topic_levels(topic)
    if (
        levels is None
        or len(levels) != 3
        or levels[0] not in ("tele", "stat")
        or not valid_level(levels[1])
        or not levels[2]
    ):
        return None
    return levels[1]


def _channel(number: int) -> str | None:
    return None if number <= 1 else f"ch{number}"


@never_raises
def decode(
    topic: str,
    payload: bytes,
    *,
    received_ms: int,
    key_map: Mapping[str, str] | None = None,
) -> Decoded:
    """What one Tasmota message says; never raises. ``received_ms``/``key_map`` are unused."""
    if device_key(topic) is None:
        return rejected(f"topic {short(topic)} is not a Tasmota tele/… or stat/… topic")
    prefix, _, command = topic.split("/")
    if prefix == "tele":
        if command == "SENSOR":
            return _with_object(payload, _decode_sensor)
        if command == "STATE":
            return _with_object(payload, _decode_state)
        if command == "LWT":
            return decode_online(payload, _LWT, "LWT must be Online or Offline")
        if command in ("INFO1", "INFO2", "INFO3"):
            return _with_object(payload, _decode_info)
        return Decoded()  # tele/<topic>/RESULT, HASS_STATE…: nothing about energy
    if command == "RESULT":
        return _with_object(payload, _decode_result)
    if command in ("STATUS8", "STATUS10"):
        return _with_object(payload, _decode_sensor, inside="StatusSNS")
    if command == "STATUS11":
        return _with_object(payload, _decode_state, inside="StatusSTS")
    match = _POWER_KEY.fullmatch(command)
    if match:
        return _decode_power_text(payload, int(match.group(1) or 1))
    return Decoded()  # other STATUS<n> answers, command echoes: not ours to read


def _with_object(
    payload: bytes,
    decode_object: Callable[[dict[str, Any]], Decoded],
    *,
    inside: str | None = None,
) -> Decoded:
    """Parse a JSON object payload (optionally the object under key ``inside``) and decode it."""
    try:
        obj = load_object(payload)
        if inside is not None:
            inner = obj.get(inside)
            if not isinstance(inner, dict):
                raise ValueError(f"{inside} must be a JSON object, got {json_type(inner)}")
            obj = inner
    except ValueError as exc:
        return rejected(str(exc))
    return decode_object(obj)


def _decode_sensor(sensor: dict[str, Any]) -> Decoded:
    energy = sensor.get("ENERGY")
    if energy is None:
        return Decoded()  # a plug without metering, or only other sensors
    if not isinstance(energy, dict):
        return rejected(f"ENERGY must be a JSON object, got {json_type(energy)}")
    width = max((len(v) for v in energy.values() if isinstance(v, list)), default=0)
    if width == 0:
        try:
            values = extract(energy, ENERGY_FIELDS)
        except ValueError as exc:
            return rejected(str(exc))
        return Decoded(readings=[Reading(values=values)] if values else [])
    if width > MAX_CHANNELS:
        return rejected(f"ENERGY has {width} channels, more than the {MAX_CHANNELS} Tasmota drives")
    decoded = Decoded()
    for index in range(width):
        row: dict[str, Any] = {}
        for spec in ENERGY_FIELDS:
            raw = energy.get(spec.key)
            if isinstance(raw, list):
                row[spec.key] = raw[index] if index < len(raw) else None
            elif spec.metric in _SHARED_METRICS:
                row[spec.key] = raw
        try:
            values = extract(row, ENERGY_FIELDS)
        except ValueError as exc:
            decoded.rejected.append(Rejection(index, str(exc)))
            continue
        if values:
            decoded.readings.append(Reading(values=values, channel=_channel(index + 1)))
    return decoded


def _power_states(obj: Mapping[str, Any], decoded: Decoded) -> dict[int, float]:
    """The relay states in ``POWER``/``POWER<n>`` keys, added to ``decoded`` as readings."""
    states: dict[int, float] = {}
    for key, raw in obj.items():
        match = _POWER_KEY.fullmatch(key)
        if not match:
            continue
        number = int(match.group(1) or 1)
        try:
            state = switch_state(raw)
        except ValueError as exc:
            decoded.rejected.append(Rejection(number - 1, f"{key} {exc}"))
            continue
        states[number] = state
        decoded.readings.append(Reading(values={"state": state}, channel=_channel(number)))
    return states


def _decode_state(state: dict[str, Any]) -> Decoded:
    decoded = Decoded()
    _power_states(state, decoded)
    rest = {k: v for k, v in state.items() if k != "Time" and not _POWER_KEY.fullmatch(k)}
    try:
        decoded.attributes = bounded_attributes(rest)
    except ValueError as exc:
        decoded.rejected.append(Rejection(0, str(exc)))
    return decoded


def _decode_info(info: dict[str, Any]) -> Decoded:
    try:
        return Decoded(attributes=bounded_attributes(info))
    except ValueError as exc:
        return rejected(str(exc))


def _decode_result(result: dict[str, Any]) -> Decoded:
    decoded = Decoded()
    states = _power_states(result, decoded)
    if 1 in states:
        decoded.command_result = CommandResult(ok=True, state=int(states[1]))
    elif "Command" in result:
        # Tasmota's only failure report; it does not say which command failed.
        decoded.command_result = CommandResult(
            ok=False, error=f"Tasmota answered Command: {message_text(result['Command'])}"
        )
    return decoded


def _decode_power_text(payload: bytes, number: int) -> Decoded:
    try:
        state = switch_state(load_text(payload))
    except ValueError as exc:
        return rejected(f"POWER {exc}")
    decoded = Decoded(readings=[Reading(values={"state": state}, channel=_channel(number))])
    if number == 1:
        decoded.command_result = CommandResult(ok=True, state=int(state))
    return decoded


def encode_command(device: DeviceRef, action: str, command_id: str) -> OutboundMessage:
    """``ON|OFF|TOGGLE`` on ``cmnd/<topic>/POWER``; the answer comes on ``stat/<topic>/RESULT``.

    Tasmota echoes no id, so ``correlation_id`` is just ``command_id`` (for the audit trail)
    and the control service matches the answer by ``reply_topic``.
    """
    act = parse_action(action)
    topic = topic_address(device.topic, "Tasmota topic")
    return OutboundMessage(
        topic=f"cmnd/{topic}/POWER",
        payload=_COMMANDS[act],
        correlation_id=command_id,
        reply_topic=f"stat/{topic}/RESULT",
    )


def topic_allowed(device: DeviceRef, topic: str, *, publish: bool) -> bool:
    """A Tasmota publishes ``tele/<topic>/…`` and ``stat/<topic>/…``, subscribes ``cmnd/<topic>/#``.

    Its group and fallback topics (``cmnd/tasmotas/#``, ``cmnd/DVES_…_fb/#``) are refused:
    they would let one plug hear commands meant for others.
    """
    if address_levels(device.topic) is None:
        return False
    own = device.topic
    return acl_allows(
        topic,
        publish=publish,
        may_publish=(f"tele/{own}/+", f"stat/{own}/+"),
        may_subscribe=(f"cmnd/{own}/#",),
    )
