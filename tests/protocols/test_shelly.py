"""Shelly Gen2 adapter: captured payloads, bad input, RPC round trips and topic ACL."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from wattwatch.domain import CommandResult, Decoded, DeviceProtocol, DeviceRef, Reading
from wattwatch.protocols import shelly

FIXTURES = Path(__file__).parents[1] / "fixtures" / "payloads" / "shelly"
RECEIVED_MS = 1_714_557_800_000
PREFIX = "shellyplusplugs-80646fc8fb9c"
PLUG = DeviceRef(id=3, uid="plug-uid-3", protocol=DeviceProtocol.SHELLY, topic=PREFIX)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decode(topic: str, payload: bytes) -> Decoded:
    return shelly.decode(topic, payload, received_ms=RECEIVED_MS)


def test_switch_status_maps_the_table() -> None:
    decoded = decode(f"{PREFIX}/status/switch:0", fixture("status_switch0.json"))
    assert decoded.rejected == []
    assert decoded.readings == [
        Reading(
            values={
                "state": 1.0,
                "power_w": 812.4,
                "voltage_v": 229.8,
                "current_a": 3.712,
                "energy_wh": 12345.678,  # aenergy.total is Wh already
            }
        )
    ]


def test_switch_status_off() -> None:
    decoded = decode(f"{PREFIX}/status/switch:0", fixture("status_switch0_off.json"))
    assert decoded.readings[0].values["state"] == 0.0
    assert decoded.readings[0].values["power_w"] == 0.0
    assert decoded.readings[0].values["energy_wh"] == 12389.004


def test_second_switch_gets_its_own_channel() -> None:
    decoded = decode(f"{PREFIX}/status/switch:1", b'{"id":1,"output":true,"apower":5.5}')
    assert decoded.readings == [Reading(values={"state": 1.0, "power_w": 5.5}, channel="switch:1")]


def test_other_components_are_ignored() -> None:
    assert decode(f"{PREFIX}/status/sys", fixture("status_sys.json")) == Decoded()


@pytest.mark.parametrize(
    ("name", "online"), [("online_true.txt", True), ("online_false.txt", False)]
)
def test_online(name: str, online: bool) -> None:
    assert decode(f"{PREFIX}/online", fixture(name)) == Decoded(online=online)


def test_notify_status_event() -> None:
    decoded = decode(f"{PREFIX}/events/rpc", fixture("events_rpc_notify_status.json"))
    assert decoded.readings == [Reading(values={"state": 0.0})]


def test_notify_event_is_ignored() -> None:
    assert decode(f"{PREFIX}/events/rpc", fixture("events_rpc_notify_event.json")) == Decoded()


@pytest.mark.parametrize(
    ("name", "result"),
    [
        ("rpc_answer_set.json", CommandResult(ok=True, id="401", state=1)),  # 401 & 3 = on
        ("rpc_answer_toggle.json", CommandResult(ok=True, id="403", state=0)),  # was on
        (
            "rpc_answer_error.json",
            CommandResult(
                ok=False, id="402", error="-103: Invalid argument 'id': no such component"
            ),
        ),
    ],
)
def test_rpc_answers(name: str, result: CommandResult) -> None:
    decoded = decode("wattwatch/rpc", fixture(name))
    assert decoded.command_result == result
    assert decoded.rejected == []


def test_bad_values_reject_the_reading() -> None:
    payload = b'{"id":0,"output":"maybe","apower":1e400,"voltage":230}'
    decoded = decode(f"{PREFIX}/status/switch:0", payload)
    assert decoded.readings == []
    reason = decoded.rejected[0].reason
    assert "'output' must be on/off" in reason
    assert "power_w must be finite" in reason


def test_notify_full_status_keeps_good_components() -> None:
    frame = {
        "src": PREFIX,
        "method": "NotifyFullStatus",
        "params": {
            "ts": 1714557600.0,
            "sys": {"uptime": 5},
            "switch:0": {"output": True, "apower": 20.0},
            "switch:1": {"output": True, "apower": -5e9},
            "switch:2": "broken",
        },
    }
    decoded = decode(f"{PREFIX}/events/rpc", orjson.dumps(frame))
    assert decoded.readings == [Reading(values={"state": 1.0, "power_w": 20.0})]
    assert [r.index for r in decoded.rejected] == [3, 4]


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (f"{PREFIX}/online", b"yes", "online must be true or false"),
        (f"{PREFIX}/online", b"", "empty"),
        (f"{PREFIX}/status/switch:0", b"[]", "must be a JSON object"),
        ("wattwatch/rpc", b'{"id":"x","result":{}}', "id must be a non-negative integer"),
        ("wattwatch/rpc", b'{"id":5}', "neither result nor error"),
        ("wattwatch/rpc", b"\x00\x01", "not valid JSON"),
        ("shelly", b"{}", "not a Shelly"),
    ],
)
def test_unusable_messages_are_rejected(topic: str, payload: bytes, reason: str) -> None:
    assert reason in decode(topic, payload).rejected[0].reason


@pytest.mark.parametrize(
    ("topic", "key"),
    [
        (f"{PREFIX}/status/switch:0", PREFIX),
        (f"{PREFIX}/online", PREFIX),
        (f"{PREFIX}/events/rpc", PREFIX),
        ("home/kitchen/plug/status/switch:0", "home/kitchen/plug"),
        ("wattwatch/rpc", None),
        (f"{PREFIX}/rpc", None),
        ("online", None),
        ("/online", None),
        ("+/online", None),
        (f"{PREFIX}/status/", None),
    ],
)
def test_device_key(topic: str, key: str | None) -> None:
    assert shelly.device_key(topic) == key


def device_answers(request: bytes, *, was_on: bool) -> tuple[str, bytes]:
    """What a Shelly does with an RPC frame: act, and answer on ``<src>/rpc``."""
    frame = orjson.loads(request)
    answer = {"id": frame["id"], "src": PREFIX, "dst": frame["src"], "result": {"was_on": was_on}}
    return f"{frame['src']}/rpc", orjson.dumps(answer)


@pytest.mark.parametrize(
    ("action", "was_on", "state"),
    [
        ("on", False, 1),
        ("on", True, 1),
        ("off", True, 0),
        ("toggle", True, 0),
        ("toggle", False, 1),
    ],
)
def test_command_round_trip(action: str, was_on: bool, state: int) -> None:
    message = shelly.encode_command(PLUG, action, "c-42")
    assert message.topic == f"{PREFIX}/rpc"
    frame = orjson.loads(message.payload)
    assert frame["src"] == "wattwatch"
    assert frame["params"]["id"] == 0
    if action == "toggle":
        assert frame["method"] == "Switch.Toggle"
    else:
        assert frame["method"] == "Switch.Set"
        assert frame["params"]["on"] is (action == "on")
    topic, answer = device_answers(message.payload, was_on=was_on)
    assert topic == message.reply_topic == "wattwatch/rpc"
    result = decode(topic, answer).command_result
    assert result == CommandResult(ok=True, id=message.correlation_id, state=state)


def test_request_ids_are_integers_and_distinct_per_command() -> None:
    ids = {
        orjson.loads(shelly.encode_command(PLUG, "on", f"c-{n}").payload)["id"] for n in range(500)
    }
    assert len(ids) == 500
    assert all(isinstance(i, int) and 0 < i < 2**31 for i in ids)


def test_unknown_action_raises() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        shelly.encode_command(PLUG, "ON", "c-1")


@pytest.mark.parametrize(
    ("topic", "publish", "allowed"),
    [
        (f"{PREFIX}/status/switch:0", True, True),
        (f"{PREFIX}/online", True, True),
        (f"{PREFIX}/events/rpc", True, True),
        ("wattwatch/rpc", True, True),
        ("shellyplusplugs-000000000000/status/switch:0", True, False),
        (f"{PREFIX}/rpc", True, False),  # that is its command topic
        (f"{PREFIX}/status/+", True, False),
        (f"{PREFIX}/rpc", False, True),
        (f"{PREFIX}/command/#", False, True),
        (f"{PREFIX}/command", False, True),
        (f"{PREFIX}/command/switch:0", False, True),
        ("wattwatch/rpc", False, False),  # would read other plugs' answers
        ("+/rpc", False, False),
        ("#", False, False),
    ],
)
def test_acl(topic: str, publish: bool, allowed: bool) -> None:
    assert shelly.topic_allowed(PLUG, topic, publish=publish) is allowed


def test_multi_level_prefix_acl() -> None:
    plug = DeviceRef(4, "u4", DeviceProtocol.SHELLY, "home/kitchen/plug")
    assert shelly.topic_allowed(plug, "home/kitchen/plug/status/switch:0", publish=True)
    assert not shelly.topic_allowed(plug, "home/kitchen/status/switch:0", publish=True)
    assert shelly.topic_allowed(plug, "home/kitchen/plug/rpc", publish=False)
    assert not shelly.topic_allowed(plug, "home/kitchen/#", publish=False)
