"""MQTT framing and parsing (both protocol levels), and the credential / topic policy."""

from __future__ import annotations

import asyncio
import struct

import pytest

from wattwatch.app import Wattwatch
from wattwatch.broker import codec
from wattwatch.broker.auth import Authenticator, Identity, Refusal, service_may_publish
from wattwatch.broker.codec import Reason
from wattwatch.domain import DeviceProtocol, Role
from wattwatch.registry.service import Principal


class _Reader:
    """A byte stream that records how much was asked of it."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.asked = 0

    async def read(self, n: int = -1) -> bytes:
        self.asked += n
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk


def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def test_packet_size_is_checked_before_the_body_is_read() -> None:
    reader = _Reader(b"\x30\xff\xff\xff\x7f" + b"x" * 100)
    with pytest.raises(codec.PacketTooLarge) as caught:
        asyncio.run(codec.read_packet(reader, 1024))
    assert caught.value.size > 200_000_000 and reader.asked == 5
    with pytest.raises(codec.ProtocolError):
        asyncio.run(codec.read_packet(_Reader(b"\x30\xff\xff\xff\xff\x01"), 1024))
    first, body = asyncio.run(codec.read_packet(_Reader(codec.frame(0xC0, b"")), 1024))
    assert (first, body) == (0xC0, b"")


def test_connect_of_both_levels_and_refusals() -> None:
    v3 = _s("MQTT") + bytes((4, 0xC2)) + struct.pack("!H", 30) + _s("dev") + _s("u") + _s("p")
    connect = codec.parse_connect(0x10, v3)
    assert (connect.v5, connect.client_id, connect.username, connect.password) == (
        False,
        "dev",
        "u",
        b"p",
    )
    props = codec.encode_properties({codec.PROP_SESSION_EXPIRY: 60})
    will = b"\x00" + _s("t/LWT") + _s("Offline")
    v5 = (
        _s("MQTT") + bytes((5, 0xC4 | 0x08 | 0x20)) + struct.pack("!H", 0) + props + _s("")
        + will + _s("u") + _s("p")
    )  # fmt: skip
    connect = codec.parse_connect(0x10, v5)
    assert connect.v5 and connect.properties[codec.PROP_SESSION_EXPIRY] == 60
    assert connect.will is not None and connect.will.topic == "t/LWT" and connect.will.retain
    with pytest.raises(codec.UnsupportedProtocol):
        codec.parse_connect(0x10, _s("MQTT") + bytes((6, 0)) + b"\x00\x00" + _s("x"))
    with pytest.raises(codec.ProtocolError):
        codec.parse_connect(0x10, v3[:-3])  # truncated password
    with pytest.raises(codec.ProtocolError):
        codec.parse_connect(0x30, v3)  # not a CONNECT
    enhanced = codec.encode_properties({codec.PROP_AUTH_METHOD: "SCRAM"})
    with pytest.raises(codec.ProtocolError) as caught:
        codec.parse_connect(0x10, _s("MQTT") + bytes((5, 2)) + b"\x00\x00" + enhanced + _s("c"))
    assert caught.value.reason is Reason.BAD_AUTH_METHOD


def test_replies_per_protocol_level() -> None:
    assert codec.suback(7, [0, 0x87], v5=False) == b"\x90\x04\x00\x07\x00\x80"
    assert codec.suback(7, [0, 0x87], v5=True) == b"\x90\x05\x00\x07\x00\x00\x87"
    assert codec.connack(False, Reason.BAD_CREDENTIALS, v5=False) == b"\x20\x02\x00\x04"
    assert codec.connack(True, Reason.SUCCESS, v5=True) == b"\x20\x03\x01\x00\x00"
    assert codec.ack(codec.PUBACK, 5, Reason.NOT_AUTHORIZED, v5=False) == b"\x40\x02\x00\x05"
    assert codec.ack(codec.PUBACK, 5, Reason.NOT_AUTHORIZED, v5=True) == b"\x40\x03\x00\x05\x87"
    pub = codec.parse_publish(0x32, codec.publish("a/b", b"x", 1, 9, v5=True)[2:], v5=True)
    assert (pub.topic, pub.packet_id, pub.payload, pub.qos) == ("a/b", 9, b"x", 1)


def test_credentials_and_topic_rules(ww: Wattwatch) -> None:
    ww.registry.bootstrap_owner()
    org = ww.registry.db.first_org_id()
    assert org is not None
    owner = Principal(1, org, Role.OWNER, "owner@localhost")
    _, token = ww.registry.create_device(owner, name="m", site_id=None, uid="m1")
    _, tb_token = ww.registry.create_device(
        owner, name="t", site_id=None, uid="t1", protocol=DeviceProtocol.THINGSBOARD
    )
    auth = Authenticator(ww.store.registry, service_user="svc", service_password="x" * 16)
    device = auth.check("m1", token.encode())
    assert isinstance(device, Identity) and device.name == "m1"
    assert isinstance(auth.check("m1", b"wwd_nope"), Refusal)
    assert isinstance(auth.check(None, None), Refusal)
    assert isinstance(auth.check(token, None), Refusal)  # a native token is no TB user name
    assert isinstance(auth.check(tb_token, None), Identity)
    assert isinstance(auth.check("svc", b"x" * 16), Identity)
    assert isinstance(auth.check("svc", b"y" * 16), Refusal)
    assert isinstance(Authenticator(ww.store.registry).check("wattwatch", b""), Refusal)

    assert device.may_publish("wattwatch/m1/telemetry")
    assert not device.may_publish("wattwatch/m2/telemetry")
    assert not device.may_publish("wattwatch/m1/command")
    assert device.may_subscribe("wattwatch/m1/command")
    assert not device.may_subscribe("wattwatch/+/command")
    assert service_may_publish("wattwatch/m1/telemetry")
    assert service_may_publish("tele/plug/SENSOR")
    assert not service_may_publish("wattwatch/m1/command")
    assert not service_may_publish("cmnd/plug/POWER")
    assert not service_may_publish("v1/devices/me/telemetry")
    service = Identity.service("svc")
    assert service.may_subscribe("#") and service.may_subscribe("wattwatch/+/telemetry")
    assert not service.may_subscribe("$SYS/#") and not service.may_subscribe("v1/devices/me/#")
