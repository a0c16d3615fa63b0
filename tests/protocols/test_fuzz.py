"""Property tests: no adapter function raises, whatever bytes, JSON or topics it is given.

``WATTWATCH_FUZZ_EXAMPLES`` sets the examples per property (default 200; a long run: 10000).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wattwatch.domain import METRICS, Decoded, DeviceProtocol, DeviceRef, check_value
from wattwatch.protocols import ADAPTERS, ProtocolAdapter, check_device_topic, identify

EXAMPLES = int(os.environ.get("WATTWATCH_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# A long run needs more than the suite's 300 s per-test timeout.
pytestmark = pytest.mark.timeout(max(300, EXAMPLES // 10))
RECEIVED_MS = 1_714_557_800_000

# Topics that reach every decoding branch of each adapter.
TOPICS: dict[DeviceProtocol, list[str]] = {
    DeviceProtocol.NATIVE: [
        "wattwatch/ww-1/telemetry",
        "wattwatch/ww-1/status",
        "wattwatch/ww-1/command/result",
        "wattwatch/ww-1/other",
    ],
    DeviceProtocol.THINGSBOARD: [
        "v1/devices/me/telemetry",
        "v1/devices/me/attributes",
        "v1/devices/me/rpc/response/17",
        "v1/devices/me/rpc/request/3",
        "v1/devices/me/attributes/request/1",
    ],
    DeviceProtocol.TASMOTA: [
        "tele/plug/SENSOR",
        "tele/plug/STATE",
        "tele/plug/LWT",
        "tele/plug/INFO1",
        "stat/plug/POWER",
        "stat/plug/POWER2",
        "stat/plug/RESULT",
        "stat/plug/STATUS10",
        "stat/plug/STATUS11",
    ],
    DeviceProtocol.SHELLY: [
        "plug/status/switch:0",
        "plug/status/pm1:1",
        "plug/online",
        "plug/events/rpc",
        "wattwatch/rpc",
    ],
}
CASES = [(protocol, topic) for protocol, topics in TOPICS.items() for topic in topics]
# A key map with a valid and an invalid target metric.
KEY_MAP = {"x": "power_w", "power": "nope"}

# Keys the adapters look for, so generated objects reach past the first type check.
KEYS = sorted(
    {
        *METRICS,
        *("ts", "channel", "online", "id", "ok", "state", "error", "result", "was_on"),
        *("values", "power", "voltage", "energy", "pf", "method", "params", "success", "value"),
        *("ENERGY", "Total", "Power", "Voltage", "Current", "Factor", "POWER", "POWER2"),
        *("StatusSNS", "StatusSTS", "Command", "Time", "Frequency", "ApparentPower"),
        *("output", "apower", "aenergy", "total", "switch:0", "switch:1", "pm1:0", "freq"),
        *("NotifyStatus", "NotifyFullStatus", "code", "message"),
    }
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: includes integers far beyond 64 bits
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, 1, 1714557600000, "ON", "OFF", "Online", "true", "1e400", "NaN"])
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), children, max_size=8)
    ),
    max_leaves=25,
)


def deep(depth: int, opener: str, closer: str) -> bytes:
    return (opener * depth + "1" + closer * depth).encode()


WEIRD_PAYLOADS = (
    b"",
    b" ",
    b"null",
    b"NaN",
    b"-Infinity",
    b"1e400",
    b"9" * 5000,
    b'{"power_w": ' + b"9" * 5000 + b"}",
    b'{"a":1,"a":2}',
    b'"\\ud800"',
    b'{"channel": "\\ud800", "power_w": 1}',
    b'{"id": "\\udfff", "ok": true}',
    b'{"id": 1, "result": {"was_on": "\\ud800"}}',
    deep(2000, "[", "]"),
    deep(600, '{"a":', "}"),
    deep(300, "[", "]"),
    b"\xff\xfe\x00",
    b"\x00",
)


def encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def check(decoded: Decoded) -> None:
    assert isinstance(decoded, Decoded)
    for rejection in decoded.rejected:
        assert isinstance(rejection.index, int) and rejection.index >= 0
        assert rejection.reason and not rejection.reason.startswith("internal error")
        rejection.reason.encode("utf-8")  # storable and printable as is
    for reading in decoded.readings:
        assert reading.values
        for name, value in reading.values.items():
            assert type(value) is float and math.isfinite(value)
            assert check_value(name, value) is None
        assert reading.channel is None or isinstance(reading.channel, str)
        if reading.channel is not None:
            reading.channel.encode("utf-8")
    if decoded.command_result is not None:
        assert decoded.command_result.state in (None, 0, 1)


def run_everywhere(payload: bytes) -> None:
    """Decode ``payload`` on every topic: generating input is the slow part, decoding is cheap."""
    for protocol, topic in CASES:
        adapter: ProtocolAdapter = ADAPTERS[protocol]
        check(adapter.decode(topic, payload, received_ms=RECEIVED_MS))
        check(adapter.decode(topic, payload, received_ms=RECEIVED_MS, key_map=KEY_MAP))


@FUZZ
@given(payload=st.binary(max_size=300))
def test_decode_never_raises_on_bytes(payload: bytes) -> None:
    run_everywhere(payload)


@FUZZ
@given(value=json_values)
def test_decode_never_raises_on_json(value: Any) -> None:
    run_everywhere(encode(value))


@FUZZ
@given(
    value=st.lists(json_values, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8)
)
def test_decode_never_raises_on_protocol_shaped_json(value: Any) -> None:
    run_everywhere(encode(value))


@pytest.mark.parametrize("payload", WEIRD_PAYLOADS, ids=range(len(WEIRD_PAYLOADS)))
def test_decode_never_raises_on_weird_payloads(payload: bytes) -> None:
    run_everywhere(payload)


topics = st.text(max_size=40) | st.lists(
    st.sampled_from(
        [
            "wattwatch",
            "v1",
            "devices",
            "me",
            "tele",
            "stat",
            "cmnd",
            "rpc",
            "+",
            "#",
            "",
            "online",
            "status",
            "switch:0",
            "plug",
            "$SYS",
            "\x00",
        ]
    ),
    max_size=6,
).map("/".join)


@FUZZ
@given(
    topic=topics,
    payload=st.binary(max_size=64),
    address=st.text(max_size=20),
    publish=st.booleans(),
)
def test_topic_functions_never_raise(
    topic: str, payload: bytes, address: str, publish: bool
) -> None:
    identify(topic)
    for protocol, adapter in ADAPTERS.items():
        key = adapter.device_key(topic)
        assert key is None or (key and "+" not in key and "#" not in key)
        device = DeviceRef(id=1, uid=address, protocol=protocol, topic=address)
        allowed = adapter.topic_allowed(device, topic, publish=publish)
        if allowed and publish:
            assert "+" not in topic and "#" not in topic
        check_device_topic(protocol, address)
        check(adapter.decode(topic, payload, received_ms=RECEIVED_MS))


@FUZZ
@given(
    action=st.text(max_size=8),
    command_id=st.text(min_size=1, max_size=40),
    address=st.text(max_size=20),
)
def test_encode_command_raises_only_value_error(action: str, command_id: str, address: str) -> None:
    for protocol, adapter in ADAPTERS.items():
        device = DeviceRef(id=1, uid=address, protocol=protocol, topic=address)
        try:
            message = adapter.encode_command(device, action, command_id)
        except ValueError:
            continue
        assert action in ("on", "off", "toggle")
        assert message.reply_topic and message.correlation_id
        # The device may hear the command and publish the answer.
        assert adapter.topic_allowed(device, message.topic, publish=False)
        assert adapter.topic_allowed(device, message.reply_topic, publish=True)
