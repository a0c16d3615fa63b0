"""The adapter registry: lookup, topic identification, device address checks, table sanity."""

from __future__ import annotations

import pytest

from wattwatch.domain import METRICS, DeviceProtocol
from wattwatch.protocols import (
    ADAPTERS,
    adapter_for,
    check_device_topic,
    identify,
    native,
    shelly,
    tasmota,
    thingsboard,
)


def test_every_mqtt_protocol_has_an_adapter_named_after_it() -> None:
    assert set(ADAPTERS) == set(DeviceProtocol) - {DeviceProtocol.HTTP}
    for protocol, adapter in ADAPTERS.items():
        assert adapter.NAME is protocol
        assert adapter_for(protocol) is adapter
        assert adapter_for(protocol.value) is adapter


@pytest.mark.parametrize("protocol", ["http", "zigbee", ""])
def test_adapter_for_unknown_raises(protocol: str) -> None:
    with pytest.raises(ValueError, match="no MQTT protocol adapter"):
        adapter_for(protocol)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("wattwatch/ww-1/telemetry", (DeviceProtocol.NATIVE, "ww-1")),
        ("v1/devices/me/telemetry", (DeviceProtocol.THINGSBOARD, None)),
        ("v1/devices/me/rpc/response/4", (DeviceProtocol.THINGSBOARD, None)),
        ("tele/plug-kitchen/SENSOR", (DeviceProtocol.TASMOTA, "plug-kitchen")),
        ("stat/plug-kitchen/RESULT", (DeviceProtocol.TASMOTA, "plug-kitchen")),
        ("shellyplusplugs-1/status/switch:0", (DeviceProtocol.SHELLY, "shellyplusplugs-1")),
        ("shellyplusplugs-1/online", (DeviceProtocol.SHELLY, "shellyplusplugs-1")),
        ("wattwatch/rpc", (DeviceProtocol.SHELLY, None)),
        # Fixed roots win over free-form Shelly prefixes.
        ("tele/plug/online", (DeviceProtocol.TASMOTA, "plug")),
        ("random/topic", None),
        ("", None),
        ("#", None),
    ],
)
def test_identify(topic: str, expected: tuple[DeviceProtocol, str | None] | None) -> None:
    assert identify(topic) == expected


@pytest.mark.parametrize(
    ("protocol", "address", "ok"),
    [
        ("native", "ww-0001", True),
        ("native", "a/b", False),
        ("tasmota", "plug-kitchen", True),
        ("tasmota", "plug+1", False),
        ("tasmota", "$SYS", False),
        ("shelly", "shellyplusplugs-80646fc8fb9c", True),
        ("shelly", "home/kitchen/plug", True),
        ("shelly", "home//plug", False),
        ("shelly", "wattwatch", False),  # would subscribe to wattwatch/rpc
        ("shelly", "tele/x", False),
        ("shelly", "#", False),
        ("thingsboard", "anything", True),
        ("http", "", True),
        ("zigbee", "x", False),
    ],
)
def test_check_device_topic(protocol: str, address: str, ok: bool) -> None:
    assert (check_device_topic(protocol, address) is None) is ok


def test_tables_name_only_canonical_metrics() -> None:
    rows = [
        *tasmota.ENERGY_FIELDS,
        *shelly.SWITCH_FIELDS,
        *thingsboard.DEFAULT_FIELDS.values(),
    ]
    assert {row.metric for row in rows} <= set(METRICS)
    assert native.NAME is DeviceProtocol.NATIVE
