"""Tasmota adapter: captured payloads, bad input, commands and topic ACL."""

from __future__ import annotations

from pathlib import Path

import pytest

from wattwatch.domain import CommandResult, Decoded, DeviceProtocol, DeviceRef, Reading
from wattwatch.protocols import tasmota

FIXTURES = Path(__file__).parents[1] / "fixtures" / "payloads" / "tasmota"
RECEIVED_MS = 1_714_557_800_000
PLUG = DeviceRef(id=1, uid="plug-uid-1", protocol=DeviceProtocol.TASMOTA, topic="plug-kitchen")


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decode(topic: str, payload: bytes) -> Decoded:
    return tasmota.decode(topic, payload, received_ms=RECEIVED_MS)


def test_sensor_energy_maps_every_field_through_the_table() -> None:
    decoded = decode("tele/plug-kitchen/SENSOR", fixture("tele_SENSOR_energy.json"))
    assert decoded.rejected == []
    assert decoded.readings == [
        Reading(
            values={
                "energy_wh": 12345.0,  # Total 12.345 kWh
                "power_w": 812.0,
                "apparent_power_va": 850.0,
                "reactive_power_var": 250.0,
                "power_factor": 0.96,
                "voltage_v": 230.0,
                "current_a": 3.7,
            },
            ts_ms=None,  # Tasmota's zone-less local Time is not trusted
            channel=None,
        )
    ]


def test_sensor_two_channels_split_arrays_and_share_voltage() -> None:
    decoded = decode("tele/plug-kitchen/SENSOR", fixture("tele_SENSOR_energy_2ch.json"))
    assert decoded.rejected == []
    first, second = decoded.readings
    assert first.channel is None
    assert second.channel == "ch2"
    assert second.values == {
        "power_w": 38.0,
        "apparent_power_va": 52.0,
        "reactive_power_var": 35.0,
        "power_factor": 0.73,
        "voltage_v": 231.0,
        "current_a": 0.226,
        "frequency_hz": 50.0,
    }
    assert first.values["voltage_v"] == 231.0
    # A scalar Total next to arrays is the sum of both channels: it belongs to neither.
    assert "energy_wh" not in first.values and "energy_wh" not in second.values


def test_status10_answer_decodes_like_sensor() -> None:
    decoded = decode("stat/plug-kitchen/STATUS10", fixture("stat_STATUS10.json"))
    assert decoded.rejected == []
    assert decoded.readings[0].values["energy_wh"] == 12346.0
    assert decoded.readings[0].values["power_w"] == 815.0


def test_sensor_without_energy_is_not_an_error() -> None:
    decoded = decode("tele/plug-kitchen/SENSOR", fixture("tele_SENSOR_switch_only.json"))
    assert decoded.readings == [] and decoded.rejected == []


def test_state_gives_relay_state_and_attributes() -> None:
    decoded = decode("tele/plug-kitchen/STATE", fixture("tele_STATE.json"))
    assert decoded.rejected == []
    assert decoded.readings == [Reading(values={"state": 1.0})]
    assert decoded.attributes["UptimeSec"] == 911
    assert decoded.attributes["Wifi"]["RSSI"] == 46
    assert "POWER" not in decoded.attributes and "Time" not in decoded.attributes


@pytest.mark.parametrize(
    ("name", "online"), [("tele_LWT_online.txt", True), ("tele_LWT_offline.txt", False)]
)
def test_lwt(name: str, online: bool) -> None:
    decoded = decode("tele/plug-kitchen/LWT", fixture(name))
    assert decoded.online is online and decoded.rejected == []


def test_info_goes_to_attributes() -> None:
    decoded = decode("tele/plug-kitchen/INFO1", fixture("tele_INFO1.json"))
    assert decoded.attributes["Info1"]["Version"] == "13.4.0(tasmota)"


def test_stat_power_text_is_a_command_result_and_a_state_reading() -> None:
    decoded = decode("stat/plug-kitchen/POWER", fixture("stat_POWER_on.txt"))
    assert decoded.command_result == CommandResult(ok=True, state=1, id=None)
    assert decoded.readings == [Reading(values={"state": 1.0})]


def test_stat_power2_is_a_reading_on_its_channel_only() -> None:
    decoded = decode("stat/plug-kitchen/POWER2", b"OFF")
    assert decoded.command_result is None
    assert decoded.readings == [Reading(values={"state": 0.0}, channel="ch2")]


def test_result_power() -> None:
    decoded = decode("stat/plug-kitchen/RESULT", fixture("stat_RESULT_power_off.json"))
    assert decoded.command_result == CommandResult(ok=True, state=0)
    assert decoded.readings == [Reading(values={"state": 0.0})]


def test_result_command_unknown_is_a_failed_command() -> None:
    decoded = decode("stat/plug-kitchen/RESULT", fixture("stat_RESULT_command_unknown.json"))
    assert decoded.command_result is not None
    assert decoded.command_result.ok is False
    assert "Unknown" in (decoded.command_result.error or "")


def test_unrelated_result_says_nothing() -> None:
    decoded = decode("stat/plug-kitchen/RESULT", b'{"SetOption19":"OFF"}')
    assert decoded == Decoded()


def test_bad_values_reject_the_reading_with_reasons() -> None:
    payload = b'{"ENERGY":{"Total":12.3,"Power":"lots","Voltage":5000,"Current":null}}'
    decoded = decode("tele/plug-kitchen/SENSOR", payload)
    assert decoded.readings == []
    [rejection] = decoded.rejected
    assert "'Power' must be a number, got string" in rejection.reason
    assert "voltage_v=5000.0 outside plausible range" in rejection.reason


def test_bad_channel_rejected_good_channel_kept() -> None:
    payload = b'{"ENERGY":{"Power":[10,-2e9],"Voltage":230,"Current":[0.1,0.2]}}'
    decoded = decode("tele/plug-kitchen/SENSOR", payload)
    assert [r.channel for r in decoded.readings] == [None]
    assert [r.index for r in decoded.rejected] == [1]


def test_nan_in_sensor_is_a_rejection_not_an_exception() -> None:
    decoded = decode("tele/plug-kitchen/SENSOR", b'{"ENERGY":{"Power":NaN,"Voltage":230}}')
    assert decoded.readings == []
    assert "finite" in decoded.rejected[0].reason


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("tele/plug-kitchen/SENSOR", b"{not json", "not valid JSON"),
        ("tele/plug-kitchen/SENSOR", b"[1,2]", "must be a JSON object"),
        ("tele/plug-kitchen/SENSOR", b'{"ENERGY":[1]}', "ENERGY must be a JSON object"),
        ("tele/plug-kitchen/LWT", b"Maybe", "LWT must be Online or Offline"),
        ("tele/plug-kitchen/LWT", b"\xff\xfe", "not valid UTF-8"),
        ("stat/plug-kitchen/POWER", b"AN", "must be on/off"),
        ("stat/plug-kitchen/STATUS10", b'{"StatusSNS":3}', "StatusSNS must be a JSON object"),
        ("cmnd/plug-kitchen/POWER", b"ON", "not a Tasmota"),
    ],
)
def test_unusable_messages_are_rejected(topic: str, payload: bytes, reason: str) -> None:
    decoded = decode(topic, payload)
    assert reason in decoded.rejected[0].reason


@pytest.mark.parametrize(
    ("topic", "key"),
    [
        ("tele/plug-kitchen/SENSOR", "plug-kitchen"),
        ("stat/plug-kitchen/RESULT", "plug-kitchen"),
        ("cmnd/plug-kitchen/POWER", None),
        ("tele/plug-kitchen", None),
        ("tele/a/b/c", None),
        ("tele/+/SENSOR", None),
        ("tele//SENSOR", None),
        ("wattwatch/u/telemetry", None),
    ],
)
def test_device_key(topic: str, key: str | None) -> None:
    assert tasmota.device_key(topic) == key


@pytest.mark.parametrize(
    ("action", "payload", "answer", "state"),
    [
        ("on", b"ON", b'{"POWER":"ON"}', 1),
        ("off", b"OFF", b'{"POWER":"OFF"}', 0),
        ("toggle", b"TOGGLE", b'{"POWER":"ON"}', 1),
    ],
)
def test_command_round_trip(action: str, payload: bytes, answer: bytes, state: int) -> None:
    message = tasmota.encode_command(PLUG, action, "c-7")
    assert message.topic == "cmnd/plug-kitchen/POWER"
    assert message.payload == payload
    assert message.reply_topic == "stat/plug-kitchen/RESULT"
    # Tasmota echoes no id: the answer matches by reply topic, and carries id None.
    decoded = decode(message.reply_topic, answer)
    assert decoded.command_result == CommandResult(ok=True, state=state, id=None)
    assert message.correlation_id == "c-7"


def test_unknown_action_raises() -> None:
    with pytest.raises(ValueError, match="unknown action 'blink'"):
        tasmota.encode_command(PLUG, "blink", "c-1")


def test_unsafe_topic_cannot_be_commanded() -> None:
    with pytest.raises(ValueError):
        tasmota.encode_command(DeviceRef(1, "u", DeviceProtocol.TASMOTA, "+"), "on", "c-1")


@pytest.mark.parametrize(
    ("topic", "publish", "allowed"),
    [
        ("tele/plug-kitchen/SENSOR", True, True),
        ("tele/plug-kitchen/LWT", True, True),
        ("stat/plug-kitchen/RESULT", True, True),
        ("tele/other-plug/SENSOR", True, False),
        ("cmnd/plug-kitchen/POWER", True, False),  # never publish commands
        ("tele/plug-kitchen/+", True, False),  # no wildcards when publishing
        ("tele/plug-kitchen/#", True, False),
        ("tele/plug-kitchen/a/b", True, False),
        ("cmnd/plug-kitchen/#", False, True),
        ("cmnd/plug-kitchen/POWER", False, True),
        ("cmnd/plug-kitchen/+", False, True),
        ("cmnd/tasmotas/#", False, False),  # group topic
        ("cmnd/+/POWER", False, False),
        ("cmnd/#", False, False),
        ("#", False, False),
        ("tele/plug-kitchen/SENSOR", False, False),
        ("cmnd/plug-kitchen/#/x", False, False),  # invalid filter
    ],
)
def test_acl(topic: str, publish: bool, allowed: bool) -> None:
    assert tasmota.topic_allowed(PLUG, topic, publish=publish) is allowed


def test_acl_refuses_everything_for_a_wildcard_device_topic() -> None:
    evil = DeviceRef(2, "u2", DeviceProtocol.TASMOTA, "+")
    assert not tasmota.topic_allowed(evil, "tele/plug-kitchen/SENSOR", publish=True)
    assert not tasmota.topic_allowed(evil, "cmnd/plug-kitchen/#", publish=False)
