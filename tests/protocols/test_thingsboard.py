"""ThingsBoard adapter: telemetry shapes, key maps, attributes, RPC both ways and topic ACL."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from wattwatch.domain import CommandResult, Decoded, DeviceProtocol, DeviceRef, Reading
from wattwatch.protocols import thingsboard

FIXTURES = Path(__file__).parents[1] / "fixtures" / "payloads" / "thingsboard"
RECEIVED_MS = 1_714_557_800_000
DEVICE = DeviceRef(id=5, uid="tb-uid-5", protocol=DeviceProtocol.THINGSBOARD, topic="tb-uid-5")
TELEMETRY = "v1/devices/me/telemetry"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decode(topic: str, payload: bytes, key_map: dict[str, str] | None = None) -> Decoded:
    return thingsboard.decode(topic, payload, received_ms=RECEIVED_MS, key_map=key_map)


def test_plain_object_maps_keys_and_keeps_extras_as_attributes() -> None:
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
                "frequency_hz": 50.02,
            },
            ts_ms=None,
        )
    ]
    assert decoded.attributes == {"temperature": 38.5, "rssi": -67}


def test_ts_values_form() -> None:
    decoded = decode(TELEMETRY, fixture("telemetry_ts_values.json"))
    assert decoded.readings == [
        Reading(
            values={
                "power_w": 640.1,
                "voltage_v": 230.4,
                "current_a": 2.79,
                "energy_wh": 123470.2,
                "state": 1.0,
            },
            ts_ms=1714557600000,
        )
    ]


def test_array_of_ts_values() -> None:
    decoded = decode(TELEMETRY, fixture("telemetry_array_ts_values.json"))
    assert [r.ts_ms for r in decoded.readings] == [1714557600000, 1714557660000, 1714557720000]
    assert [r.values["energy_wh"] for r in decoded.readings] == [123470.2, 123481.0, 123481.4]


def test_array_of_plain_objects() -> None:
    decoded = decode(TELEMETRY, fixture("telemetry_array_plain.json"))
    assert decoded.readings == [
        Reading(values={"power_w": 10.5}),
        Reading(values={"voltage_v": 231.0, "current_a": 0.05}),
    ]


def test_key_map_overrides_and_extends_defaults() -> None:
    payload = b'{"watts": 100, "power": 7, "relay": "ON"}'
    decoded = decode(
        TELEMETRY,
        payload,
        key_map={"watts": "power_w", "power": "apparent_power_va", "relay": "state"},
    )
    assert decoded.readings == [
        Reading(values={"power_w": 100.0, "apparent_power_va": 7.0, "state": 1.0})
    ]


def test_key_map_to_unknown_metric_rejects_the_reading() -> None:
    decoded = decode(TELEMETRY, b'{"watts": 100}', key_map={"watts": "watts_w"})
    assert decoded.rejected[0].reason.startswith("unknown metric 'watts_w'")


def test_numeric_strings_are_accepted() -> None:
    decoded = decode(TELEMETRY, b'{"power": "12.5", "voltage": " 230 "}')
    assert decoded.readings == [Reading(values={"power_w": 12.5, "voltage_v": 230.0})]


def test_mixed_good_and_bad_items() -> None:
    payload = orjson.dumps(
        [
            {"ts": 1714557600000, "values": {"power": 1.0}},
            {"ts": 1714557600000, "values": {"power": "abc"}},
            {"ts": 99, "values": {"power": 2.0}},  # 1970
            {"ts": 1714557600000, "values": [1]},
            "power=3",
            {"voltage": -1},
            {"power": 3.0, "temperature": 20},
        ]
    )
    decoded = decode(TELEMETRY, payload)
    assert [r.values for r in decoded.readings] == [{"power_w": 1.0}, {"power_w": 3.0}]
    reasons = {r.index: r.reason for r in decoded.rejected}
    assert set(reasons) == {1, 2, 3, 4, 5}
    assert "'power' must be a number, got string 'abc'" in reasons[1]
    assert "before 2000-01-01" in reasons[2]
    assert "values must be a JSON object" in reasons[3]
    assert "must be a JSON object, got string" in reasons[4]
    assert "voltage_v=-1.0 outside plausible range" in reasons[5]
    assert decoded.attributes == {"temperature": 20}


def test_future_timestamp_rejected() -> None:
    payload = b'{"ts": 1914557600000, "values": {"power": 1}}'
    assert "in the future" in decode(TELEMETRY, payload).rejected[0].reason


def test_attributes() -> None:
    decoded = decode("v1/devices/me/attributes", fixture("attributes.json"))
    assert decoded.attributes == {
        "firmwareVersion": "2.1.0",
        "serialNumber": "SN-4A21F",
        "hardwareRevision": "B",
        "model": "DIN-1P",
    }


def test_oversized_attributes_rejected() -> None:
    payload = orjson.dumps({"blob": "x" * 100_000})
    decoded = decode("v1/devices/me/attributes", payload)
    assert decoded.attributes == {}
    assert "over the" in decoded.rejected[0].reason


@pytest.mark.parametrize(
    ("name", "result"),
    [
        ("rpc_response_state.json", CommandResult(ok=True, id="17", state=1)),
        ("rpc_response_bare.json", CommandResult(ok=True, id="17", state=0)),
        (
            "rpc_response_error.json",
            CommandResult(ok=False, id="17", error="relay driver not ready"),
        ),
    ],
)
def test_rpc_responses(name: str, result: CommandResult) -> None:
    decoded = decode("v1/devices/me/rpc/response/17", fixture(name))
    assert decoded.command_result == result


def test_rpc_response_with_state_is_also_a_reading() -> None:
    decoded = decode("v1/devices/me/rpc/response/17", b'{"state": "OFF"}')
    assert decoded.readings == [Reading(values={"state": 0.0})]


def test_unreadable_rpc_response_fails_the_command_at_once() -> None:
    decoded = decode("v1/devices/me/rpc/response/17", b"done!")
    assert decoded.command_result is not None
    assert decoded.command_result.ok is False and decoded.command_result.id == "17"
    assert decoded.rejected


def test_client_side_rpc_request() -> None:
    decoded = decode("v1/devices/me/rpc/request/3", fixture("rpc_request_client.json"))
    assert decoded.rpc_request == ("3", {"method": "getCurrentTime", "params": {}})


def test_client_side_rpc_without_method_is_rejected() -> None:
    decoded = decode("v1/devices/me/rpc/request/3", b'{"params": 1}')
    assert decoded.rpc_request is None
    assert "method" in decoded.rejected[0].reason


@pytest.mark.parametrize(
    "topic",
    [
        "v1/devices/me/claim",
        "v1/devices/me",
        "v1/devices/other/telemetry",
        "v2/t",
        "v1/devices/me/rpc/response/",
    ],
)
def test_unsupported_topics_are_rejected(topic: str) -> None:
    assert decode(topic, b"{}").rejected


def test_attribute_requests_are_ignored_for_now() -> None:
    assert decode("v1/devices/me/attributes/request/1", b'{"clientKeys":"a"}') == Decoded()


def test_device_key_is_always_none() -> None:
    assert thingsboard.device_key(TELEMETRY) is None


@pytest.mark.parametrize(
    ("action", "body", "answer", "state"),
    [
        ("on", {"method": "setState", "params": True}, b"true", 1),
        ("off", {"method": "setState", "params": False}, b'{"state": false}', 0),
        ("toggle", {"method": "toggle", "params": {}}, b'{"state": 1}', 1),
    ],
)
def test_command_round_trip(action: str, body: object, answer: bytes, state: int) -> None:
    message = thingsboard.encode_command(DEVICE, action, "c-123")
    assert orjson.loads(message.payload) == body
    # A TB device answers on the request topic with "request" replaced by "response".
    reply_topic = message.topic.replace("/rpc/request/", "/rpc/response/")
    assert reply_topic == message.reply_topic
    request_id = message.topic.rsplit("/", 1)[1]
    assert request_id.isdecimal()  # TB SDKs parse it as an integer
    result = decode(reply_topic, answer).command_result
    assert result == CommandResult(ok=True, id=message.correlation_id, state=state)


def test_decimal_command_ids_are_used_as_is() -> None:
    message = thingsboard.encode_command(DEVICE, "on", "42")
    assert message.topic == "v1/devices/me/rpc/request/42"
    assert message.correlation_id == "42"


def test_unknown_action_raises() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        thingsboard.encode_command(DEVICE, "dim", "1")


@pytest.mark.parametrize(
    ("topic", "publish", "allowed"),
    [
        ("v1/devices/me/telemetry", True, True),
        ("v1/devices/me/attributes", True, True),
        ("v1/devices/me/rpc/response/17", True, True),
        ("v1/devices/me/rpc/request/5", True, True),  # client-side RPC
        ("v1/devices/me/attributes/request/1", True, True),
        ("v1/devices/me/rpc/response/+", True, False),
        ("v1/devices/me/#", True, False),
        ("v1/devices/other/telemetry", True, False),
        ("wattwatch/x/command", True, False),
        ("v1/devices/me/rpc/request/+", False, True),
        ("v1/devices/me/rpc/request/17", False, True),
        ("v1/devices/me/rpc/response/+", False, True),
        ("v1/devices/me/attributes", False, True),
        ("v1/devices/me/attributes/response/+", False, True),
        ("v1/devices/me/telemetry", False, False),
        ("v1/devices/me/#", False, False),
        ("v1/devices/+/rpc/request/+", False, False),
        ("#", False, False),
    ],
)
def test_acl(topic: str, publish: bool, allowed: bool) -> None:
    assert thingsboard.topic_allowed(DEVICE, topic, publish=publish) is allowed
