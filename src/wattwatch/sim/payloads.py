"""What simulated firmware sends: readings encoded as each protocol's devices encode them.

The server-side decoders live in :mod:`wattwatch.protocols`; these are their counterparts on
the device side (DESIGN.md §4), with each firmware's habits: Tasmota reports local time
without a zone, kWh totals and whole watts; Shelly Gen2 reports ``aenergy.total`` in Wh and
one-decimal watts; the native protocol and the HTTP batch carry canonical metric names.

MQTT messages come as :class:`Publish` (topic, payload); HTTP bodies as bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

import orjson

from wattwatch.domain import DeviceProtocol, Reading

_UTC: Final = ZoneInfo("UTC")
CSV_MIME: Final = "text/csv"
NDJSON_MIME: Final = "application/x-ndjson"
JSON_MIME: Final = "application/json"


@dataclass(frozen=True, slots=True)
class Publish:
    """One MQTT message a device publishes."""

    topic: str
    payload: bytes
    retain: bool = False


def native_object(reading: Reading) -> dict[str, Any]:
    """``{"ts": …, "channel": …, "power_w": …}``: the native telemetry object."""
    obj: dict[str, Any] = {}
    if reading.ts_ms is not None:
        obj["ts"] = reading.ts_ms
    if reading.channel is not None:
        obj["channel"] = reading.channel
    obj.update(reading.values)
    return obj


def encode_native(uid: str, readings: Reading | Sequence[Reading]) -> Publish:
    """``wattwatch/<uid>/telemetry``: one object for one reading, an array for several."""
    if isinstance(readings, Reading):
        body: Any = native_object(readings)
    else:
        body = [native_object(r) for r in readings]
    return Publish(f"wattwatch/{uid}/telemetry", orjson.dumps(body))


def encode_native_status(uid: str, online: bool, **attributes: Any) -> Publish:
    """``wattwatch/<uid>/status``: ``{"online": …, "firmware": …}``, retained (as an LWT)."""
    return Publish(
        f"wattwatch/{uid}/status", orjson.dumps({"online": online, **attributes}), retain=True
    )


def encode_thingsboard(
    readings: Reading | Sequence[Reading], key_map: Mapping[str, str] | None = None
) -> Publish:
    """``v1/devices/me/telemetry``: ``{"ts": …, "values": {…}}`` (an array for several readings).

    Keys are canonical metric names unless ``key_map`` renames them (canonical → device key,
    e.g. :data:`THINGSBOARD_SHORT_KEYS`). ThingsBoard has no channels: send one channel.
    """
    rename = key_map or {}

    def one(r: Reading) -> dict[str, Any]:
        values = {rename.get(k, k): v for k, v in r.values.items()}
        return values if r.ts_ms is None else {"ts": r.ts_ms, "values": values}

    body: Any = one(readings) if isinstance(readings, Reading) else [one(r) for r in readings]
    return Publish("v1/devices/me/telemetry", orjson.dumps(body))


# The short keys a hand-written ThingsBoard firmware typically uses.
THINGSBOARD_SHORT_KEYS: Final[Mapping[str, str]] = {
    "power_w": "power",
    "energy_wh": "energy",
    "voltage_v": "voltage",
    "current_a": "current",
    "power_factor": "powerFactor",
    "frequency_hz": "frequency",
    "apparent_power_va": "apparentPower",
    "reactive_power_var": "reactivePower",
    "state": "state",
}


def tasmota_time(ts_ms: int, tz: ZoneInfo | str = _UTC) -> str:
    """Tasmota's ``Time``: local time, ISO 8601 without a zone, whole seconds."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return datetime.fromtimestamp(ts_ms / 1000, zone).strftime("%Y-%m-%dT%H:%M:%S")


def encode_tasmota_sensor(
    topic: str,
    reading: Reading,
    *,
    tz: ZoneInfo | str = _UTC,
    today_kwh: float | None = None,
    yesterday_kwh: float | None = None,
    total_start_ms: int | None = None,
) -> Publish:
    """``tele/<topic>/SENSOR`` with the ENERGY block of a Tasmota power-monitoring plug.

    Units and resolution as Tasmota sends them: ``Total``/``Today``/``Yesterday`` kWh with 3
    decimals, ``Power``/``ApparentPower``/``ReactivePower`` whole W/VA/var, ``Voltage`` whole
    V, ``Current`` A with 3 decimals, ``Factor`` with 2.
    """
    if reading.ts_ms is None:
        raise ValueError("a Tasmota SENSOR message carries its Time: the reading needs ts_ms")
    v = reading.values
    energy: dict[str, Any] = {}
    if total_start_ms is not None:
        energy["TotalStartTime"] = tasmota_time(total_start_ms, tz)
    if "energy_wh" in v:
        energy["Total"] = round(v["energy_wh"] / 1000.0, 3)
    if yesterday_kwh is not None:
        energy["Yesterday"] = round(yesterday_kwh, 3)
    if today_kwh is not None:
        energy["Today"] = round(today_kwh, 3)
    for key, metric, digits in _TASMOTA_FIELDS:
        if metric in v:
            energy[key] = round(v[metric]) if digits == 0 else round(v[metric], digits)
    body = {"Time": tasmota_time(reading.ts_ms, tz), "ENERGY": energy}
    return Publish(f"tele/{topic}/SENSOR", orjson.dumps(body))


_TASMOTA_FIELDS: Final = (
    ("Power", "power_w", 0),
    ("ApparentPower", "apparent_power_va", 0),
    ("ReactivePower", "reactive_power_var", 0),
    ("Factor", "power_factor", 2),
    ("Frequency", "frequency_hz", 0),
    ("Voltage", "voltage_v", 0),
    ("Current", "current_a", 3),
)


def encode_tasmota_state(
    topic: str, on: bool, ts_ms: int, *, tz: ZoneInfo | str = _UTC, uptime_s: int = 0
) -> Publish:
    """``tele/<topic>/STATE``: the periodic state report (relay, uptime)."""
    d, rest = divmod(max(0, uptime_s), 86_400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    body = {
        "Time": tasmota_time(ts_ms, tz),
        "Uptime": f"{d}T{h:02d}:{m:02d}:{s:02d}",
        "UptimeSec": uptime_s,
        "POWER": "ON" if on else "OFF",
    }
    return Publish(f"tele/{topic}/STATE", orjson.dumps(body))


def encode_tasmota_lwt(topic: str, online: bool) -> Publish:
    """``tele/<topic>/LWT``: ``Online`` / ``Offline`` (retained, plain text)."""
    return Publish(f"tele/{topic}/LWT", b"Online" if online else b"Offline", retain=True)


def encode_shelly_status(
    prefix: str,
    reading: Reading,
    *,
    source: str = "init",
    temperature_c: float | None = None,
    by_minute_mwh: Sequence[float] | None = None,
) -> Publish:
    """``<prefix>/status/switch:0``: a Shelly Gen2 switch component status.

    ``aenergy.by_minute`` holds the energy (mWh) of the last three whole minutes; without
    history it is estimated from the current power. ``temperature`` is the device's own
    temperature (warms with the load when not given).
    """
    v = reading.values
    watts = float(v.get("power_w", 0.0))
    body: dict[str, Any] = {
        "id": 0,
        "source": source,
        "output": bool(v.get("state", 1.0) >= 0.5),
        "apower": round(watts, 1),
    }
    if "voltage_v" in v:
        body["voltage"] = round(v["voltage_v"], 1)
    if "frequency_hz" in v:
        body["freq"] = round(v["frequency_hz"], 1)
    if "current_a" in v:
        body["current"] = round(v["current_a"], 3)
    if "power_factor" in v:
        body["pf"] = round(v["power_factor"], 2)
    if "energy_wh" in v:
        minute = round(watts * 1000.0 / 60.0, 3)
        body["aenergy"] = {
            "total": round(v["energy_wh"], 3),
            "by_minute": [round(x, 3) for x in by_minute_mwh]
            if by_minute_mwh is not None
            else [minute] * 3,
            "minute_ts": (reading.ts_ms // 60_000 * 60) if reading.ts_ms is not None else 0,
        }
    t_c = temperature_c if temperature_c is not None else 30.0 + watts / 150.0
    body["temperature"] = {"tC": round(t_c, 1), "tF": round(t_c * 9 / 5 + 32, 1)}
    return Publish(f"{prefix}/status/switch:0", orjson.dumps(body))


def encode_shelly_online(prefix: str, online: bool) -> Publish:
    """``<prefix>/online``: ``true`` / ``false`` (retained)."""
    return Publish(f"{prefix}/online", b"true" if online else b"false", retain=True)


# -- HTTP batch bodies ---------------------------------------------------------------------------


def encode_json_batch(readings: Sequence[Reading]) -> bytes:
    """``POST /api/v1/telemetry`` body: a JSON array of native objects."""
    return orjson.dumps([native_object(r) for r in readings])


def encode_ndjson(readings: Sequence[Reading]) -> bytes:
    """One native object per line (NDJSON)."""
    return b"".join(orjson.dumps(native_object(r)) + b"\n" for r in readings)


def encode_csv(readings: Sequence[Reading], metrics: Sequence[str] | None = None) -> bytes:
    """CSV with a header ``ts,channel,<metrics>``; an empty cell where a reading lacks a metric."""
    if metrics is None:
        seen: dict[str, None] = {}
        for r in readings:
            seen.update(dict.fromkeys(r.values))
        metrics = list(seen)
    lines = [",".join(("ts", "channel", *metrics))]
    for r in readings:
        cells = ["" if r.ts_ms is None else str(r.ts_ms), r.channel or ""]
        cells += [_number(r.values[m]) if m in r.values else "" for m in metrics]
        lines.append(",".join(cells))
    return ("\n".join(lines) + "\n").encode()


def _number(x: float) -> str:
    return repr(float(x)) if x != int(x) else str(int(x))


# -- per device ----------------------------------------------------------------------------------


def encode_for(
    protocol: DeviceProtocol | str,
    address: str,
    readings: Sequence[Reading],
    *,
    tz: ZoneInfo | str = _UTC,
) -> list[Publish]:
    """The MQTT messages a device of ``protocol`` publishes for ``readings``.

    ``address`` is the uid (native), the Tasmota topic or the Shelly prefix. Native and
    ThingsBoard devices send one array; Tasmota and Shelly one message per reading. HTTP
    devices do not publish (use :func:`encode_json_batch` and friends).
    """
    proto = DeviceProtocol(protocol)
    if not readings:
        return []
    if proto == DeviceProtocol.NATIVE:
        return [encode_native(address, readings)]
    if proto == DeviceProtocol.THINGSBOARD:
        return [encode_thingsboard(readings)]
    if proto == DeviceProtocol.TASMOTA:
        return [encode_tasmota_sensor(address, r, tz=tz) for r in readings]
    if proto == DeviceProtocol.SHELLY:
        return [encode_shelly_status(address, r) for r in readings]
    raise ValueError(
        f"{proto.value} devices upload over HTTP: use encode_json_batch/encode_ndjson/encode_csv"
    )
