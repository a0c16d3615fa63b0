"""What the adapters share: failed answers with a known id, unsafe command addresses, plain-text
online flags, and picking a command's answer out of a reply (``protocols.command_answer``)."""

from __future__ import annotations

import pytest

from wattwatch.domain import CommandResult, Decoded, DeviceProtocol, DeviceRef, Rejection
from wattwatch.protocols import command_answer, native, shelly, tasmota, thingsboard

RECEIVED_MS = 1_714_557_800_000


def test_native_answer_with_a_bad_ok_fails_the_command_at_once() -> None:
    decoded = native.decode(
        "wattwatch/ww-1/command/result", b'{"id": "c-1", "ok": "yes"}', received_ms=RECEIVED_MS
    )
    reason = "ok must be true or false, got 'yes'"
    assert decoded == Decoded(
        rejected=[Rejection(0, reason)],
        command_result=CommandResult(ok=False, id="c-1", error=f"malformed answer: {reason}"),
    )


@pytest.mark.parametrize(
    ("payload", "problem"),
    [(b"{not json", "unreadable answer"), (b"[1, 2]", "unexpected answer")],
)
def test_thingsboard_unusable_answer_fails_the_command_at_once(
    payload: bytes, problem: str
) -> None:
    decoded = thingsboard.decode("v1/devices/me/rpc/response/17", payload, received_ms=RECEIVED_MS)
    assert len(decoded.rejected) == 1
    reason = decoded.rejected[0].reason
    assert decoded.command_result == CommandResult(ok=False, id="17", error=f"{problem}: {reason}")


@pytest.mark.parametrize(
    ("adapter", "protocol", "message"),
    [
        (native, DeviceProtocol.NATIVE, "device uid 'a+b' cannot be used in a topic"),
        (tasmota, DeviceProtocol.TASMOTA, "Tasmota topic 'a+b' cannot be used in a topic"),
        (shelly, DeviceProtocol.SHELLY, "Shelly prefix 'a+b' cannot be used in a topic"),
    ],
)
def test_commands_refuse_unsafe_addresses(
    adapter: object, protocol: DeviceProtocol, message: str
) -> None:
    device = DeviceRef(id=1, uid="a+b", protocol=protocol, topic="a+b")
    with pytest.raises(ValueError) as raised:
        adapter.encode_command(device, "on", "c-1")  # type: ignore[attr-defined]
    assert str(raised.value) == message


def test_shelly_prefix_may_have_levels() -> None:
    device = DeviceRef(id=1, uid="u", protocol=DeviceProtocol.SHELLY, topic="home/plug-1")
    assert shelly.encode_command(device, "on", "5").topic == "home/plug-1/rpc"


@pytest.mark.parametrize(
    ("decode", "topic", "payload", "expected"),
    [
        (tasmota.decode, "tele/plug/LWT", b" Online ", Decoded(online=True)),
        (tasmota.decode, "tele/plug/LWT", b"OFFLINE", Decoded(online=False)),
        (shelly.decode, "plug/online", b"false", Decoded(online=False)),
        (
            tasmota.decode,
            "tele/plug/LWT",
            b"",
            Decoded(rejected=[Rejection(0, "payload is empty")]),
        ),
        (
            shelly.decode,
            "plug/online",
            b"Online",
            Decoded(rejected=[Rejection(0, "online must be true or false, got 'Online'")]),
        ),
    ],
)
def test_plain_text_online_flags(
    decode: object, topic: str, payload: bytes, expected: Decoded
) -> None:
    assert decode(topic, payload, received_ms=RECEIVED_MS) == expected  # type: ignore[operator]


def test_command_answer_matches_the_request_id() -> None:
    device = DeviceRef(id=1, uid="ww-1", protocol=DeviceProtocol.NATIVE, topic="ww-1")
    outbound = native.encode_command(device, "on", "c-1")
    ours = b'{"id": "c-1", "ok": true, "state": 1}'
    assert command_answer(device, outbound, ours, received_ms=RECEIVED_MS) == CommandResult(
        ok=True, id="c-1", state=1
    )
    other = b'{"id": "c-2", "ok": true, "state": 1}'
    assert command_answer(device, outbound, other, received_ms=RECEIVED_MS) is None
    assert command_answer(device, outbound, b"{}", received_ms=RECEIVED_MS) is None


def test_command_answer_without_an_id_is_taken_by_topic() -> None:
    plug = DeviceRef(id=2, uid="p", protocol=DeviceProtocol.TASMOTA, topic="plug")
    outbound = tasmota.encode_command(plug, "off", "c-3")
    result = command_answer(plug, outbound, b'{"POWER": "OFF"}', received_ms=RECEIVED_MS)
    assert result == CommandResult(ok=True, state=0)
