"""Core types: metrics and their units, readings, devices, rollup intervals (no I/O)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# A reading timestamp may be at most this far ahead of the receiver's clock.
MAX_FUTURE_MS = 5 * 60 * 1000
# ... and never before 2000-01-01T00:00:00Z.
MIN_TS_MS = 946_684_800_000


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A canonical metric: its unit, plausible range and stored resolution."""

    name: str
    unit: str
    lo: float
    hi: float
    # Values are stored as integers of 1/scale of the unit (1 mW, 1 mV, 1 mA, 1 mWh …):
    # finer than any meter reports, and half the bytes of a float on disk.
    scale: int
    description: str


METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec("power_w", "W", -1e6, 1e6, 1000, "active power"),
        MetricSpec("energy_wh", "Wh", 0.0, 1e13, 1000, "cumulative active energy counter"),
        MetricSpec("voltage_v", "V", 0.0, 1000.0, 1000, "RMS voltage"),
        MetricSpec("current_a", "A", -1e4, 1e4, 1000, "RMS current"),
        MetricSpec("power_factor", "", -1.0, 1.0, 1000, "power factor"),
        MetricSpec("frequency_hz", "Hz", 0.0, 1000.0, 1000, "mains frequency"),
        MetricSpec("apparent_power_va", "VA", 0.0, 1e6, 1000, "apparent power"),
        MetricSpec("reactive_power_var", "var", -1e6, 1e6, 1000, "reactive power"),
        MetricSpec("state", "", 0.0, 1.0, 1, "relay state, 0 = off, 1 = on"),
    )
}
METRIC_NAMES: tuple[str, ...] = tuple(METRICS)

DEFAULT_CHANNEL = "mains"


class DeviceKind(StrEnum):
    MONITOR = "monitor"
    PLUG = "plug"
    PANEL = "panel"


class DeviceProtocol(StrEnum):
    NATIVE = "native"
    THINGSBOARD = "thingsboard"
    TASMOTA = "tasmota"
    SHELLY = "shelly"
    HTTP = "http"


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    VIEWER = "viewer"

    def at_least(self, other: Role) -> bool:
        order = [Role.VIEWER, Role.ADMIN, Role.OWNER]
        return order.index(self) >= order.index(other)


class Interval(StrEnum):
    """Query resolutions. 1m/1h/1d are stored rollups; 1w/1mo are built from days."""

    RAW = "raw"
    MINUTE = "1m"
    HOUR = "1h"
    DAY = "1d"
    WEEK = "1w"
    MONTH = "1mo"


@dataclass(slots=True)
class Reading:
    """One timestamped set of metric values for one channel of one device.

    ``ts_ms`` is epoch milliseconds UTC; ``None`` means "when received".
    ``channel`` is the channel name; ``None`` means the device's default channel.
    """

    values: dict[str, float]
    ts_ms: int | None = None
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why the reading at ``index`` of its batch was refused."""

    index: int
    reason: str


@dataclass(slots=True)
class BatchResult:
    """What became of a batch: the DESIGN.md §4 response body."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": [{"index": r.index, "reason": r.reason} for r in self.rejected],
        }


def now_ms() -> int:
    return int(time.time() * 1000)


def check_value(name: str, value: object) -> str | None:
    """Return why ``value`` is not an acceptable ``name`` reading, or None when it is."""
    spec = METRICS.get(name)
    if spec is None:
        return f"unknown metric {name!r}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{name} must be a number, got {type(value).__name__}"
    if not math.isfinite(value):
        return f"{name} must be finite, got {value}"
    if not spec.lo <= value <= spec.hi:
        return (
            f"{name}={value} outside plausible range {spec.lo:g}..{spec.hi:g} {spec.unit}".rstrip()
        )
    return None


def check_ts(ts_ms: int, now: int) -> str | None:
    """Return why ``ts_ms`` is not an acceptable reading time at receive time ``now``."""
    if ts_ms < MIN_TS_MS:
        return f"timestamp {ts_ms} is before 2000-01-01"
    if ts_ms > now + MAX_FUTURE_MS:
        return f"timestamp {ts_ms} is more than 5 min in the future"
    return None


def parse_ts(value: object) -> int:
    """Turn an epoch (ms, or s when it is plainly seconds) or ISO 8601 time into epoch ms UTC.

    Raises ``ValueError`` with a readable reason. A naive ISO time is taken as UTC.
    """
    from datetime import UTC, datetime  # local import keeps module import cheap

    if isinstance(value, bool):
        raise ValueError("timestamp must be epoch milliseconds or ISO 8601, got a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"timestamp must be finite, got {value}")
        # Epoch seconds (< 1e11, i.e. before year 5138) are accepted and scaled.
        ms = value * 1000 if abs(value) < 1e11 else value
        if abs(ms) > 1e15:
            raise ValueError(f"timestamp {value} is out of range")
        return round(ms)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return parse_ts(int(text))
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"timestamp {value[:40]!r} is not epoch ms nor ISO 8601") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return round(dt.timestamp() * 1000)
    raise ValueError(
        f"timestamp must be epoch milliseconds or ISO 8601, got {type(value).__name__}"
    )


class CommandAction(StrEnum):
    """The actions a switchable device understands."""

    ON = "on"
    OFF = "off"
    TOGGLE = "toggle"


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """What a protocol adapter needs to know about a device.

    ``topic`` is the protocol's own device address: the Tasmota topic, the Shelly prefix;
    for native and ThingsBoard devices it is the uid. ``key_map`` maps a device's own
    telemetry keys to canonical metric names (ThingsBoard), on top of the adapter's defaults.
    """

    id: int
    uid: str
    protocol: DeviceProtocol
    topic: str
    key_map: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class CommandResult:
    """A device's answer to a command (``id`` matches the request when the protocol carries one)."""

    ok: bool
    state: int | None = None
    id: str | None = None
    error: str | None = None


@dataclass(slots=True)
class Decoded:
    """Everything one MQTT/HTTP message from a device said, in domain terms.

    A protocol decoder never raises on bad input: what it cannot use goes to ``rejected``
    (with the index of the item in its payload, or 0 for the message as a whole).
    """

    readings: list[Reading] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    online: bool | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    command_result: CommandResult | None = None
    # Device-originated request (e.g. ThingsBoard client-side RPC): (request id, body).
    rpc_request: tuple[str, dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A message the server publishes to a device (a command)."""

    topic: str
    payload: bytes
    # What to match in the answer: the request id and the topic the device answers on.
    correlation_id: str
    reply_topic: str
