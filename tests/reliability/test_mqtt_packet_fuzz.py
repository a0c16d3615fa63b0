"""Raw MQTT packets against the running embedded broker: whatever a socket sends, the broker
closes that connection (or answers it) and goes on serving everyone else.

After every attack a real paho client of a real device connects, publishes a reading at QoS 1,
gets its PUBACK, and the reading is in the store. tests/broker/test_codec_auth.py checks the
packet codec in isolation; here the bytes go through the live server over TCP.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.broker.conftest import App, connect, wait_until
from tests.reliability.fuzzing import EXAMPLES, fuzz_settings

from wattwatch.broker.codec import encode_varint, frame
from wattwatch.domain import now_ms

MAX_PACKET = 64 * 1024
UID = "pkt-fuzz"
# A fifth of the decoder examples: each one opens a socket and waits for the broker's answer.
RAW_EXAMPLES_SCALE = 0.25
pytestmark = pytest.mark.timeout(max(300, int(EXAMPLES * RAW_EXAMPLES_SCALE * 0.5) + 120))

CONNECT, PUBLISH, SUBSCRIBE, PINGREQ = 1, 3, 8, 12
_seq = itertools.count()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    running = App(
        tmp_path_factory.mktemp("pktfuzz") / "data",
        mqtt_max_packet_bytes=MAX_PACKET,
        mqtt_connect_timeout_s=2.0,
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def device(app: App) -> tuple[dict[str, Any], str]:
    return app.device(UID)


def utf8(text: bytes) -> bytes:
    return len(text).to_bytes(2, "big") + text


def connect_packet(
    client_id: bytes = b"",
    user: bytes | None = None,
    password: bytes | None = None,
    *,
    name: bytes = b"MQTT",
    level: int = 4,
    flags: int | None = None,
) -> bytes:
    if flags is None:
        flags = 0x02 | (0x80 if user is not None else 0) | (0x40 if password is not None else 0)
    body = utf8(name) + bytes((level, flags)) + (60).to_bytes(2, "big")
    if level == 5:
        body += b"\x00"  # no properties
    body += utf8(client_id)
    if user is not None:
        body += utf8(user)
    if password is not None:
        body += utf8(password)
    return frame(CONNECT << 4, body)


def publish_packet(topic: bytes, payload: bytes, qos: int = 1, packet_id: int = 1) -> bytes:
    body = utf8(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return frame((PUBLISH << 4) | (qos << 1), body)


def exchange(port: int, *chunks: bytes, wait_s: float = 2.0, close_early: bool = False) -> bytes:
    """Send ``chunks``, then read what the broker says until it closes (or ``wait_s``)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return received  # the broker closed on us mid-send: fine
        if close_early:
            return received
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                break
            received += data
    return received


def closed_by_broker(port: int, *chunks: bytes, within_s: float = 5.0) -> bytes:
    """Send ``chunks`` and require the broker to end the connection within ``within_s``."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=within_s) as sock:
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return received
        deadline = time.monotonic() + within_s
        while True:
            assert time.monotonic() < deadline, f"broker kept the connection open: {chunks!r:.200}"
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                return received
            except TimeoutError:
                continue
            if not data:
                return received
            received += data


def device_still_served(app: App, device: tuple[dict[str, Any], str]) -> None:
    """A legitimate device connects, publishes at QoS 1, gets its PUBACK; the reading is stored."""
    record, token = device
    ts = now_ms() - 60_000 + next(_seq) % 50_000
    client = connect(app.port, UID, UID, token)
    try:
        assert client.ok, f"legit client refused: {client.rc}"
        client.publish_acked(f"wattwatch/{UID}/telemetry", json.dumps({"ts": ts, "power_w": 42.5}))
    finally:
        client.close()
    wait_until(
        lambda: any(r["ts"] == ts for r in app.readings(record["id"])),
        what=f"the reading at {ts} stored",
    )


def authenticated(device: tuple[dict[str, Any], str], client_id: bytes | None = None) -> bytes:
    """A valid CONNECT of the device (client id: its uid; b"": the broker assigns one)."""
    return connect_packet(
        UID.encode() if client_id is None else client_id, UID.encode(), device[1].encode()
    )


CONNACK_OK = b"\x20\x02\x00\x00"


def test_malformed_connect_packets_are_refused(
    app: App, device: tuple[dict[str, Any], str]
) -> None:
    port = app.port
    cases = {
        "bad protocol name": connect_packet(b"x", name=b"MQTX"),
        "bad protocol level": connect_packet(b"x", level=9),
        "level 0": connect_packet(b"x", level=0),
        "reserved flag set": connect_packet(b"x", flags=0x03),
        "will QoS 3": connect_packet(b"x", flags=0x1E),
        "password without user": connect_packet(b"x", flags=0x42),
        "remaining length of 5 bytes": b"\x10\xff\xff\xff\xff\x7f",
        "remaining length shorter than the body": b"\x10\x05" + connect_packet(b"x")[2:],
        "CONNECT with trailing bytes": frame(0x10, connect_packet(b"x")[2:] + b"\x00\x00"),
        "CONNECT flags in the fixed header": b"\x1f" + connect_packet(b"x")[1:],
        "string length past the body": b"\x10\x04\xff\xffMQ",
        "huge remaining length": b"\x10" + encode_varint(268_435_455),
        "over the packet limit": frame(0x10, b"\x00" * (MAX_PACKET + 10)),
        "invalid UTF-8 client id": connect_packet(b"\xff\xfe\xfd"),
        "NUL in the client id": connect_packet(b"a\x00b"),
        "surrogate in user name": connect_packet(b"x", b"\xed\xa0\x80", b"pw"),
        "wrong password": connect_packet(UID.encode(), UID.encode(), b"wwd_wrong"),
        "PUBLISH before CONNECT": publish_packet(f"wattwatch/{UID}/telemetry".encode(), b"{}"),
        "SUBSCRIBE before CONNECT": frame(0x82, b"\x00\x01" + utf8(b"#") + b"\x01"),
        "PINGREQ before CONNECT": b"\xc0\x00",
        "zero bytes": b"\x00\x00",
    }
    for what, packet in cases.items():
        answer = closed_by_broker(port, packet)
        assert answer != CONNACK_OK, what  # never accepted
        assert len(answer) <= 64, f"{what}: the broker sent {len(answer)} bytes"
    device_still_served(app, device)


def test_truncated_and_slow_connects_do_not_block_others(
    app: App, device: tuple[dict[str, Any], str]
) -> None:
    port = app.port
    packet = authenticated(device)
    # Half a CONNECT, held open: the broker ends it after its connect timeout (2 s here),
    # and meanwhile serves the device.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as stalled:
        stalled.sendall(packet[: len(packet) // 2])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as announced:
            announced.sendall(b"\x10" + encode_varint(MAX_PACKET - 100) + b"\x00\x04MQTT")
            device_still_served(app, device)
            stalled.settimeout(10)
            assert stalled.recv(10) == b"", "a stalled CONNECT was never closed"
            announced.settimeout(10)
            assert announced.recv(10) == b""
    # A CONNECT cut short by the client.
    exchange(port, packet[:7], close_early=True)
    device_still_served(app, device)


def test_bad_packets_after_connect_end_only_that_connection(
    app: App, device: tuple[dict[str, Any], str]
) -> None:
    port = app.port
    record, _ = device
    before = len(app.readings(record["id"]))
    topic = f"wattwatch/{UID}/telemetry".encode()
    good = json.dumps({"power_w": 1.0}).encode()
    attacks = {
        "invalid UTF-8 topic": publish_packet(b"wattwatch/\xff\xfe/telemetry", good),
        "surrogate in the topic": publish_packet(b"wattwatch/\xed\xa0\x80/telemetry", good),
        "NUL in the topic": publish_packet(b"wattwatch/pkt\x00fuzz/telemetry", good),
        "+ in a PUBLISH topic": publish_packet(b"wattwatch/+/telemetry", good),
        "# in a PUBLISH topic": publish_packet(b"wattwatch/#", good),
        "bare #": publish_packet(b"#", good),
        "empty topic": publish_packet(b"", good),
        "QoS 3": frame(0x36, utf8(topic) + b"\x00\x01" + good),
        "QoS 1 without a packet id": frame(0x32, utf8(topic)),
        "packet id 0": publish_packet(topic, good, packet_id=0),
        "oversized PUBLISH": publish_packet(topic, b"[" + b"1," * MAX_PACKET + b"1]"),
        "second CONNECT": authenticated(device),
        "reserved packet type 0": b"\x00\x00",
        "reserved packet type 15 (3.1.1)": b"\xf0\x00",
        "SUBSCRIBE with wrong flags": frame(0x80, b"\x00\x01" + utf8(b"x") + b"\x01"),
        "SUBSCRIBE without filters": frame(0x82, b"\x00\x01"),
    }
    for what, packet in attacks.items():
        # Each on a connection of its own, after a proper CONNECT.
        answer = closed_by_broker(port, authenticated(device), packet)
        assert answer.startswith(CONNACK_OK), f"{what}: {answer[:20]!r}"
        app.flush_presence()
    device_still_served(app, device)
    # Nothing any attack carried was stored: one reading more, the device's own.
    assert len(app.readings(record["id"])) == before + 1


def test_publish_to_wildcard_topics_is_never_delivered(
    app: App, device: tuple[dict[str, Any], str]
) -> None:
    """A subscriber of everything (the server's service user) sees no wildcard publish."""
    _, token = device
    watcher = connect(app.port, UID, UID, token)
    try:
        assert watcher.subscribe(f"wattwatch/{UID}/command")[0].value == 1
        for topic in (b"wattwatch/+/command", b"wattwatch/#", f"wattwatch/{UID}/#".encode()):
            exchange(
                app.port,
                connect_packet(b"", UID.encode(), token.encode()),
                publish_packet(topic, b'{"id": "x", "action": "off"}'),
                wait_s=0.5,
            )
        time.sleep(0.3)
        assert watcher.messages == []
    finally:
        watcher.close()
    device_still_served(app, device)


# Random bytes, alone or after a valid CONNECT (so they reach the post-CONNECT parser).
raw_tails = st.binary(max_size=300) | st.lists(
    st.sampled_from(
        [b"\x30", b"\x32", b"\x82", b"\xa2", b"\xc0", b"\xe0", b"\x00", b"\xff", b"\x7f", b"\x80"]
    )
    | st.binary(max_size=8),
    max_size=30,
).map(b"".join)


@fuzz_settings(RAW_EXAMPLES_SCALE)
@given(after_connect=st.booleans(), tail=raw_tails)
def test_random_bytes_never_take_the_broker_down(
    app: App, device: tuple[dict[str, Any], str], after_connect: bool, tail: bytes
) -> None:
    head = authenticated(device, b"") if after_connect else b""
    exchange(app.port, head + tail, wait_s=0.2)
    # Cheap liveness check per example (a full store round trip every few examples).
    answer = exchange(app.port, authenticated(device, UID.encode()), b"\xe0\x00", wait_s=1.0)
    assert answer.startswith(CONNACK_OK), answer[:20]
    if len(tail) % 16 == 0:
        device_still_served(app, device)


def test_the_broker_serves_after_the_random_run(
    app: App, device: tuple[dict[str, Any], str]
) -> None:
    device_still_served(app, device)
