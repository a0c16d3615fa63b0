"""MQTT 3.1.1 and 5.0 framing, and the packets the embedded broker reads and writes itself.

amqtt speaks MQTT 3.1.1 only and reads a packet's body without a size check. The broker's
protocol handler (``handler.py``) reads whole packets through ``read_packet`` (bounded by the
maximum packet size before a byte of the body is buffered) and parses them here, for both
protocol levels. Parsing never trusts a length field: every read is bounds-checked and a
malformed packet raises ``ProtocolError`` (the connection is then closed, as the spec says).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final, Protocol

PROTOCOL_31: Final = 3  # MQTT 3.1 ("MQIsdp"): read like 3.1.1
PROTOCOL_311: Final = 4
PROTOCOL_5: Final = 5

CONNECT: Final = 1
CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
PUBREC: Final = 5
PUBREL: Final = 6
PUBCOMP: Final = 7
SUBSCRIBE: Final = 8
SUBACK: Final = 9
UNSUBSCRIBE: Final = 10
UNSUBACK: Final = 11
PINGREQ: Final = 12
PINGRESP: Final = 13
DISCONNECT: Final = 14
AUTH: Final = 15

# MQTT 5 property identifiers used here (section 2.2.2.2 of the spec).
PROP_PAYLOAD_FORMAT: Final = 0x01
PROP_SESSION_EXPIRY: Final = 0x11
PROP_ASSIGNED_CLIENT_ID: Final = 0x12
PROP_SERVER_KEEP_ALIVE: Final = 0x13
PROP_AUTH_METHOD: Final = 0x15
PROP_REASON_STRING: Final = 0x1F
PROP_RECEIVE_MAXIMUM: Final = 0x21
PROP_TOPIC_ALIAS_MAXIMUM: Final = 0x22
PROP_TOPIC_ALIAS: Final = 0x23
PROP_MAXIMUM_QOS: Final = 0x24
PROP_RETAIN_AVAILABLE: Final = 0x25
PROP_MAXIMUM_PACKET_SIZE: Final = 0x27
PROP_WILDCARD_AVAILABLE: Final = 0x28
PROP_SUBSCRIPTION_ID_AVAILABLE: Final = 0x29
PROP_SHARED_AVAILABLE: Final = 0x2A

# Wire type of each property: how to skip or read it.
_BYTE, _U16, _U32, _VARINT, _STR, _BIN, _PAIR = range(7)
_PROPERTY_TYPES: Final[dict[int, int]] = {
    0x01: _BYTE,  # payload format indicator
    0x02: _U32,  # message expiry interval
    0x03: _STR,  # content type
    0x08: _STR,  # response topic
    0x09: _BIN,  # correlation data
    0x0B: _VARINT,  # subscription identifier
    0x11: _U32,  # session expiry interval
    0x12: _STR,  # assigned client identifier
    0x13: _U16,  # server keep alive
    0x15: _STR,  # authentication method
    0x16: _BIN,  # authentication data
    0x17: _BYTE,  # request problem information
    0x18: _U32,  # will delay interval
    0x19: _BYTE,  # request response information
    0x1A: _STR,  # response information
    0x1C: _STR,  # server reference
    0x1F: _STR,  # reason string
    0x21: _U16,  # receive maximum
    0x22: _U16,  # topic alias maximum
    0x23: _U16,  # topic alias
    0x24: _BYTE,  # maximum qos
    0x25: _BYTE,  # retain available
    0x26: _PAIR,  # user property
    0x27: _U32,  # maximum packet size
    0x28: _BYTE,  # wildcard subscription available
    0x29: _BYTE,  # subscription identifier available
    0x2A: _BYTE,  # shared subscription available
}


class Reason(IntEnum):
    """MQTT 5 reason codes the broker sends (the 3.1.1 equivalents come from ``V3_CONNACK``)."""

    SUCCESS = 0x00
    NO_MATCHING_SUBSCRIBERS = 0x10
    UNSPECIFIED = 0x80
    MALFORMED = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC = 0x83
    UNSUPPORTED_VERSION = 0x84
    CLIENT_ID_NOT_VALID = 0x85
    BAD_CREDENTIALS = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_ID_IN_USE = 0x91
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    QUOTA_EXCEEDED = 0x97
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    ADMINISTRATIVE_ACTION = 0x98
    SHARED_NOT_SUPPORTED = 0x9E
    WILDCARD_NOT_SUPPORTED = 0xA2
    BAD_AUTH_METHOD = 0x8C


# CONNACK return codes of MQTT 3.1.1 for the refusals above (3.1.1 has only five).
V3_CONNACK: Final[dict[Reason, int]] = {
    Reason.SUCCESS: 0,
    Reason.UNSUPPORTED_VERSION: 1,
    Reason.CLIENT_ID_NOT_VALID: 2,
    Reason.SERVER_UNAVAILABLE: 3,
    Reason.SERVER_BUSY: 3,
    Reason.QUOTA_EXCEEDED: 3,
    Reason.BAD_CREDENTIALS: 4,
    Reason.BAD_AUTH_METHOD: 4,
    Reason.NOT_AUTHORIZED: 5,
}


class ProtocolError(Exception):
    """A packet that breaks the protocol; the connection is closed (v5: after a DISCONNECT)."""

    def __init__(self, message: str, reason: Reason = Reason.MALFORMED) -> None:
        super().__init__(message)
        self.reason = reason


class PacketTooLarge(ProtocolError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"packet of {size} bytes is over the {limit}-byte limit", Reason.PACKET_TOO_LARGE
        )
        self.size = size


class ByteReader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


async def read_packet(reader: ByteReader, max_bytes: int) -> tuple[int, bytes]:
    """The next packet as (first byte, body); ``EOFError`` when the connection ends.

    The remaining length is checked against ``max_bytes`` before the body is read, so a
    client announcing a 256 MB packet costs us nothing but closing its connection.
    """
    head = await reader.read(2)
    if len(head) < 2:
        raise EOFError
    first = head[0]
    byte = head[1]
    length = byte & 0x7F
    shift = 7
    while byte & 0x80:
        if shift > 21:
            raise ProtocolError("remaining length takes more than 4 bytes")
        more = await reader.read(1)
        if not more:
            raise EOFError
        byte = more[0]
        length |= (byte & 0x7F) << shift
        shift += 7
    if length + 2 > max_bytes:
        raise PacketTooLarge(length + 2, max_bytes)
    body = await reader.read(length) if length else b""
    if len(body) < length:
        raise EOFError
    return first, body


def encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_varint(len(body)) + body


class _Cursor:
    """Bounds-checked reading of a packet body."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise ProtocolError("packet is shorter than its fields say")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ProtocolError("packet is shorter than its fields say")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self) -> int:
        value: int = struct.unpack_from("!H", self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = struct.unpack_from("!I", self.take(4))[0]
        return value

    def varint(self) -> int:
        value = 0
        for shift in (0, 7, 14, 21):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise ProtocolError("variable byte integer takes more than 4 bytes")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def text(self) -> str:
        raw = self.binary()
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("string is not UTF-8") from None
        if "\x00" in value:
            raise ProtocolError("string contains U+0000")
        return value

    def properties(self) -> dict[int, Any]:
        """MQTT 5 properties; user properties are skipped, a repeated single one refused."""
        length = self.varint()
        end = self.pos + length
        if end > len(self.data):
            raise ProtocolError("properties are longer than the packet")
        found: dict[int, Any] = {}
        while self.pos < end:
            ident = self.varint()
            kind = _PROPERTY_TYPES.get(ident)
            if kind is None:
                raise ProtocolError(f"unknown property 0x{ident:02x}", Reason.PROTOCOL_ERROR)
            value: Any
            if kind == _BYTE:
                value = self.byte()
            elif kind == _U16:
                value = self.u16()
            elif kind == _U32:
                value = self.u32()
            elif kind == _VARINT:
                value = self.varint()
            elif kind == _STR:
                value = self.text()
            elif kind == _BIN:
                value = self.binary()
            else:
                self.text()
                self.text()
                continue
            if ident in found:
                raise ProtocolError(f"property 0x{ident:02x} repeated", Reason.PROTOCOL_ERROR)
            found[ident] = value
        if self.pos != end:
            raise ProtocolError("properties overrun their length")
        return found


def encode_properties(props: dict[int, Any]) -> bytes:
    out = bytearray()
    for ident, value in props.items():
        kind = _PROPERTY_TYPES[ident]
        out += encode_varint(ident)
        if kind == _BYTE:
            out.append(value)
        elif kind == _U16:
            out += struct.pack("!H", value)
        elif kind == _U32:
            out += struct.pack("!I", value)
        elif kind == _VARINT:
            out += encode_varint(value)
        elif kind == _STR:
            raw = value.encode()
            out += struct.pack("!H", len(raw)) + raw
        else:
            raise ValueError(f"cannot encode property 0x{ident:02x}")
    return encode_varint(len(out)) + bytes(out)


@dataclass(slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(slots=True)
class Connect:
    protocol_level: int
    clean_start: bool
    keep_alive_s: int
    client_id: str
    username: str | None
    password: bytes | None
    will: Will | None = None
    properties: dict[int, Any] = field(default_factory=dict)

    @property
    def v5(self) -> bool:
        return self.protocol_level == PROTOCOL_5


class UnsupportedProtocol(ProtocolError):
    def __init__(self, level: int, name: str) -> None:
        super().__init__(
            f"protocol {name!r} level {level} is not MQTT 3.1, 3.1.1 or 5",
            Reason.UNSUPPORTED_VERSION,
        )
        self.level = level


def parse_connect(first: int, body: bytes) -> Connect:
    """A CONNECT packet of any supported level; ``UnsupportedProtocol`` for the others."""
    if first >> 4 != CONNECT:
        raise ProtocolError("the first packet must be CONNECT", Reason.PROTOCOL_ERROR)
    if first & 0x0F:
        raise ProtocolError("CONNECT fixed-header flags must be 0")
    cur = _Cursor(body)
    name = cur.text()
    level = cur.byte()
    if (name, level) not in (("MQTT", PROTOCOL_311), ("MQTT", PROTOCOL_5), ("MQIsdp", 3)):
        raise UnsupportedProtocol(level, name)
    flags = cur.byte()
    if flags & 0x01:
        raise ProtocolError("CONNECT reserved flag must be 0")
    keep_alive = cur.u16()
    props = cur.properties() if level == PROTOCOL_5 else {}
    if PROP_AUTH_METHOD in props:
        raise ProtocolError("enhanced authentication is not supported", Reason.BAD_AUTH_METHOD)
    client_id = cur.text()
    will: Will | None = None
    will_flag = bool(flags & 0x04)
    will_qos = (flags >> 3) & 0x03
    will_retain = bool(flags & 0x20)
    if will_flag:
        if will_qos > 2:
            raise ProtocolError("will QoS must be 0, 1 or 2")
        if level == PROTOCOL_5:
            cur.properties()  # will delay, expiry…: not honoured, the will is sent at once
        will = Will(cur.text(), cur.binary(), will_qos, will_retain)
    elif will_qos or will_retain:
        raise ProtocolError("will QoS/retain set without the will flag")
    username = cur.text() if flags & 0x80 else None
    password = cur.binary() if flags & 0x40 else None
    if password is not None and username is None and level != PROTOCOL_5:
        raise ProtocolError("password without user name", Reason.BAD_CREDENTIALS)
    if cur.remaining():
        raise ProtocolError("CONNECT has trailing bytes")
    return Connect(
        level, bool(flags & 0x02), keep_alive, client_id, username, password, will, props
    )


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None
    topic_alias: int | None = None


def parse_publish(first: int, body: bytes, v5: bool) -> Publish:
    qos = (first >> 1) & 0x03
    if qos == 3:
        raise ProtocolError("PUBLISH QoS 3 does not exist")
    cur = _Cursor(body)
    topic = cur.text()
    packet_id = cur.u16() if qos else None
    if packet_id == 0:
        raise ProtocolError("packet identifier 0 is not allowed")
    alias = None
    if v5:
        props = cur.properties()
        alias = props.get(PROP_TOPIC_ALIAS)
    payload = body[cur.pos :]
    return Publish(topic, payload, qos, bool(first & 0x01), bool(first & 0x08), packet_id, alias)


def parse_subscribe(first: int, body: bytes, v5: bool) -> tuple[int, list[tuple[str, int]]]:
    """(packet id, [(filter, requested QoS)]). MQTT 5 options other than QoS are ignored."""
    if first & 0x0F != 0x02:
        raise ProtocolError("SUBSCRIBE fixed-header flags must be 2")
    cur = _Cursor(body)
    packet_id = cur.u16()
    if v5:
        cur.properties()
    topics: list[tuple[str, int]] = []
    while cur.remaining():
        topic_filter = cur.text()
        options = cur.byte()
        qos = options & 0x03
        if qos == 3 or options & (0xC0 if v5 else 0xFC):
            raise ProtocolError("SUBSCRIBE options byte is malformed")
        topics.append((topic_filter, qos))
    if not topics:
        raise ProtocolError("SUBSCRIBE without topic filters", Reason.PROTOCOL_ERROR)
    return packet_id, topics


def parse_unsubscribe(first: int, body: bytes, v5: bool) -> tuple[int, list[str]]:
    if first & 0x0F != 0x02:
        raise ProtocolError("UNSUBSCRIBE fixed-header flags must be 2")
    cur = _Cursor(body)
    packet_id = cur.u16()
    if v5:
        cur.properties()
    filters: list[str] = []
    while cur.remaining():
        filters.append(cur.text())
    if not filters:
        raise ProtocolError("UNSUBSCRIBE without topic filters", Reason.PROTOCOL_ERROR)
    return packet_id, filters


def parse_packet_id(body: bytes) -> int:
    """The packet id of PUBACK/PUBREC/PUBREL/PUBCOMP (a v5 reason code after it is ignored)."""
    if len(body) < 2:
        raise ProtocolError("acknowledgement without packet identifier")
    value: int = struct.unpack_from("!H", body)[0]
    return value


def parse_disconnect_reason(body: bytes, v5: bool) -> int:
    if not v5 or not body:
        return 0
    return body[0]


# --- encoders ----------------------------------------------------------------------------


def connack(
    session_present: bool, reason: Reason, v5: bool, props: dict[int, Any] | None = None
) -> bytes:
    if v5:
        body = bytes((1 if session_present else 0, int(reason))) + encode_properties(props or {})
    else:
        code = V3_CONNACK.get(reason, 3)
        body = bytes((1 if session_present and code == 0 else 0, code))
    return frame(CONNACK << 4, body)


def ack(kind: int, packet_id: int, reason: Reason = Reason.SUCCESS, v5: bool = False) -> bytes:
    """PUBACK, PUBREC, PUBREL or PUBCOMP."""
    first = (kind << 4) | (0x02 if kind == PUBREL else 0)
    if v5 and reason is not Reason.SUCCESS:
        return bytes((first, 3)) + struct.pack("!HB", packet_id, int(reason))
    return bytes((first, 2)) + struct.pack("!H", packet_id)


def suback(packet_id: int, codes: list[int], v5: bool) -> bytes:
    """SUBACK; 3.1.1 knows one failure code (0x80), MQTT 5 says why (0x87 not authorized…)."""
    if not v5:
        codes = [code if code < 0x80 else 0x80 for code in codes]
    body = struct.pack("!H", packet_id) + (b"\x00" if v5 else b"") + bytes(codes)
    return frame(SUBACK << 4, body)


def unsuback(packet_id: int, count: int, v5: bool) -> bytes:
    body = struct.pack("!H", packet_id)
    if v5:
        body += b"\x00" + bytes(count)  # 0x00 = success for each filter
    return frame(UNSUBACK << 4, body)


def publish(
    topic: str,
    payload: bytes,
    qos: int,
    packet_id: int | None,
    *,
    retain: bool = False,
    dup: bool = False,
    v5: bool = False,
) -> bytes:
    raw = topic.encode()
    first = (PUBLISH << 4) | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    parts = [struct.pack("!H", len(raw)), raw]
    if qos:
        parts.append(struct.pack("!H", packet_id or 0))
    if v5:
        parts.append(b"\x00")
    parts.append(payload)
    return frame(first, b"".join(parts))


PINGRESP_BYTES: Final = bytes((PINGRESP << 4, 0))


def disconnect(reason: Reason) -> bytes:
    """A server DISCONNECT (MQTT 5 only; a 3.1.1 server just closes the connection)."""
    return bytes((DISCONNECT << 4, 1, int(reason)))
