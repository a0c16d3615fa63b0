"""Native protocol adapter: telemetry batches, status, command results and topic ACL."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from wattwatch.domain import CommandResult, Decoded, DeviceProtocol, DeviceRef, Reading
from wattwatch.protocols import MAX_ITEMS, native

FIXTURES = Path(__file__).parents[1] / "fixtures" / "payloads" / "native"
RECEIVED_MS = 1_714_557_800_000
DEVICE = DeviceRef(id=7, uid="ww-0001", protocol=DeviceProtocol.NATIVE, topic="ww-0001")
TELEMETRY = "wattwatch/ww-0001/telemetry"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decode(topic: str, payload: bytes, key_map: dict[str, str] | None = None) -> Decoded:
    return native.decode(topic, payload, received_ms=RECEIVED_MS, key_map=key_map)


def test_telemetry_object() -> None:
    decoded = decode(TELEMETRY, fixture("telemetry_object.json"))
    assert decoded.rejected == []
    assert decoded.readings == [
        Reading(
            values={
                "power_w": 812.5,
                "voltage_v": 229.8,
                "current_a": 3.54,
                "energy_wh": 123456.7,
                "power_factor": 0.97,
                "frequency_hz": 50.01,
            },
            ts_ms=1714557600000,
            channel="mains",
        )
    ]


def test_telemetry_batch_with_iso_and_epoch_times() -> None:
    decoded = decode(TELEMETRY, fixture("telemetry_batch.json"))
    assert decoded.rejected == []
    assert [(r.ts_ms, r.channel) for r in decoded.readings] == [
        (1714557480000, None),
        (1714557540000, None),
        (1714557600000, "ac01"),
    ]


def test_ts_and_channel_are_optional() -> None:
    decoded = decode(TELEMETRY, b'{"power_w": 5}')
    assert decoded.readings == [Reading(values={"power_w": 5.0}, ts_ms=None, channel=None)]


def test_mixed_batch_keeps_good_rejects_bad_with_reasons() -> None:
    payload = (
        b'[{"power_w": 1},'
        b'{"power_w": NaN},'
        b'{"power_w": Infinity},'
        b'{"powr_w": 3},'
        b'{"power_w": "3"},'
        b'{"power_w": true},'
        b'{"ts": "yesterday", "power_w": 3},'
        b'{"channel": "a b", "power_w": 3},'
        b'{"ts": 1714557600000},'
        b'{"power_w": 123456789012345678901234567890123456789},'
        b'{"state": 2},'
        b"[1],"
        b'{"power_w": 2, "channel": "phase_b"}]'
    )
    decoded = decode(TELEMETRY, payload)
    assert [(r.values, r.channel) for r in decoded.readings] == [
        ({"power_w": 1.0}, None),
        ({"power_w": 2.0}, "phase_b"),
    ]
    reasons = {r.index: r.reason for r in decoded.rejected}
    assert reasons == {
        1: "power_w must be finite, got nan",
        2: "power_w must be finite, got inf",
        3: "unknown metric 'powr_w'",
        4: "power_w must be a number, got string",
        5: "power_w must be a number, got boolean",
        6: "timestamp 'yesterday' is not epoch ms nor ISO 8601",
        7: "channel must be 1-64 letters, digits or '_.:-', got 'a b'",
        8: "reading has no metric values",
        9: "power_w=1.2345678901234568e+38 outside plausible range -1e+06..1e+06 W",
        10: "state=2.0 outside plausible range 0..1",
        11: "reading must be a JSON object, got array",
    }


def test_several_problems_in_one_reading_are_all_named() -> None:
    decoded = decode(TELEMETRY, b'{"foo": 1, "bar": 2, "voltage_v": -5}')
    reason = decoded.rejected[0].reason
    assert "unknown metric 'foo'" in reason and "unknown metric 'bar'" in reason
    assert "voltage_v=-5.0" in reason


def test_key_map_aliases() -> None:
    decoded = decode(TELEMETRY, b'{"watts": 12}', key_map={"watts": "power_w"})
    assert decoded.readings == [Reading(values={"power_w": 12.0})]


def test_duplicate_keys_last_wins() -> None:
    decoded = decode(TELEMETRY, b'{"power_w": 1, "power_w": 2}')
    assert decoded.readings == [Reading(values={"power_w": 2.0})]


def test_batch_limit() -> None:
    at_limit = orjson.dumps([{"power_w": 1}] * MAX_ITEMS)
    assert len(decode(TELEMETRY, at_limit).readings) == MAX_ITEMS
    over = orjson.dumps([{"power_w": 1}] * (MAX_ITEMS + 1))
    decoded = decode(TELEMETRY, over)
    assert decoded.readings == []
    assert (
        decoded.rejected[0].reason
        == f"batch of {MAX_ITEMS + 1} items is over the {MAX_ITEMS} limit; split it"
    )


def test_oversized_payload_refused_before_parsing() -> None:
    decoded = decode(TELEMETRY, b" " * (5 * 1024 * 1024))
    assert "over the" in decoded.rejected[0].reason


def test_deep_nesting_is_a_rejection() -> None:
    decoded = decode(TELEMETRY, b"[" * 100_000 + b"]" * 100_000)
    assert "not valid JSON" in decoded.rejected[0].reason


def test_status() -> None:
    decoded = decode("wattwatch/ww-0001/status", fixture("status.json"))
    assert decoded.online is True
    assert decoded.attributes == {"firmware": "1.2.0", "model": "ww-plug-1", "rssi": -61}


def test_status_with_bad_online_keeps_attributes() -> None:
    decoded = decode("wattwatch/ww-0001/status", b'{"online": "yes", "firmware": "1.0"}')
    assert decoded.online is None
    assert decoded.attributes == {"firmware": "1.0"}
    assert "online must be true or false" in decoded.rejected[0].reason


def test_command_result_fixture() -> None:
    decoded = decode("wattwatch/ww-0001/command/result", fixture("command_result.json"))
    assert decoded.command_result == CommandResult(ok=True, state=1, id="c-123")
    assert decoded.readings == [Reading(values={"state": 1.0})]


def test_failed_command_result() -> None:
    payload = b'{"id": "c-9", "ok": false, "error": "relay\\nwelded"}'
    decoded = decode("wattwatch/ww-0001/command/result", payload)
    assert decoded.command_result == CommandResult(ok=False, id="c-9", error="relay?welded")


def test_malformed_command_result_with_id_fails_the_command() -> None:
    decoded = decode("wattwatch/ww-0001/command/result", b'{"id": "c-9", "ok": "yes"}')
    assert decoded.command_result is not None and decoded.command_result.ok is False
    assert decoded.rejected


def test_command_result_without_id_is_rejected() -> None:
    decoded = decode("wattwatch/ww-0001/command/result", b'{"ok": true}')
    assert decoded.command_result is None
    assert "id must be a string" in decoded.rejected[0].reason


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("wattwatch/ww-0001/metrics", "unknown topic"),
        ("wattwatch/ww-0001/command", "unknown topic"),
        ("tele/x/SENSOR", "not a wattwatch/<uid>"),
        ("wattwatch/+/telemetry", "not a wattwatch/<uid>"),
    ],
)
def test_unusable_topics(topic: str, reason: str) -> None:
    assert reason in decode(topic, b"{}").rejected[0].reason


@pytest.mark.parametrize(
    ("topic", "key"),
    [
        ("wattwatch/ww-0001/telemetry", "ww-0001"),
        ("wattwatch/ww-0001/command/result", "ww-0001"),
        ("wattwatch/rpc", None),
        ("wattwatch//telemetry", None),
        ("wattwatch/$x/telemetry", None),
        ("other/ww-0001/telemetry", None),
    ],
)
def test_device_key(topic: str, key: str | None) -> None:
    assert native.device_key(topic) == key


@pytest.mark.parametrize("action", ["on", "off", "toggle"])
def test_command_round_trip(action: str) -> None:
    message = native.encode_command(DEVICE, action, "c-123")
    assert message.topic == "wattwatch/ww-0001/command"
    assert orjson.loads(message.payload) == {"id": "c-123", "action": action}
    # The device answers with the id it was given.
    request = orjson.loads(message.payload)
    answer = orjson.dumps({"id": request["id"], "ok": True, "state": 0 if action == "off" else 1})
    result = decode(message.reply_topic, answer).command_result
    assert result is not None
    assert result.id == message.correlation_id == "c-123"
    assert message.reply_topic == "wattwatch/ww-0001/command/result"


def test_unknown_action_raises() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        native.encode_command(DEVICE, "explode", "c-1")


@pytest.mark.parametrize(
    ("topic", "publish", "allowed"),
    [
        ("wattwatch/ww-0001/telemetry", True, True),
        ("wattwatch/ww-0001/status", True, True),
        ("wattwatch/ww-0001/command/result", True, True),
        ("wattwatch/ww-0001/command", True, False),
        ("wattwatch/ww-0002/telemetry", True, False),
        ("wattwatch/+/telemetry", True, False),
        ("wattwatch/ww-0001/#", True, False),
        ("wattwatch/ww-0001/telemetry\x00", True, False),
        ("", True, False),
        ("wattwatch/ww-0001/command", False, True),
        ("wattwatch/ww-0001/command/result", False, False),
        ("wattwatch/ww-0001/#", False, False),
        ("wattwatch/+/command", False, False),
        ("wattwatch/ww-0002/command", False, False),
        ("$SYS/#", False, False),
        ("", False, False),
    ],
)
def test_acl(topic: str, publish: bool, allowed: bool) -> None:
    assert native.topic_allowed(DEVICE, topic, publish=publish) is allowed
