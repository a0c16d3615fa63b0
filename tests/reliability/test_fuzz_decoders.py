"""Fuzzing every protocol decoder and the HTTP batch parser, through validation to stored rows.

tests/protocols/test_fuzz.py already feeds every adapter arbitrary bytes and ``json.dumps``
output. This file adds what ``json.dumps`` cannot write and what only shows after decoding:

- raw JSON *text* with duplicate keys, ``NaN``/``Infinity`` literals, numbers of thousands of
  digits, deep nesting, lone surrogates, timestamps far in the past and future (epoch and ISO);
- protocol-shaped messages per decoder (Tasmota ``ENERGY``, Shelly ``aenergy``, ThingsBoard
  ``{ts, values}`` …) so the generated input gets past the first type check;
- the readings a decoder accepts are put through ``normalise`` (the pipeline's validation)
  with a real SQLite registry: each reading becomes exactly one stored row or one rejection
  with a reason, and every stored value is finite and inside its metric's range;
- the HTTP batch parser (JSON array, NDJSON, CSV, other types): only ``BodyError`` (the
  documented "whole body unreadable" error, a 400 at the web boundary) or per-row rejections;
- the columnar fast path ``normalise_uniform`` against the general path: same rows, same
  rejected indices;
- giant arrays at and around the item limits.

Examples per property: see tests/reliability/fuzzing.py (200 in CI; ``WATTWATCH_LONG=1``:
10,000 per decoder).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.reliability.fuzzing import EXAMPLES, fuzz_settings, timeout_for

from wattwatch.app import Wattwatch
from wattwatch.config import Settings
from wattwatch.domain import (
    MAX_FUTURE_MS,
    METRICS,
    MIN_TS_MS,
    Decoded,
    DeviceProtocol,
    Reading,
    Rejection,
    Role,
)
from wattwatch.errors import WattwatchError
from wattwatch.ingest.http import MAX_BATCH_READINGS, BodyError, parse_batch, parse_json_array
from wattwatch.ingest.pipeline import decode_uniform, normalise, normalise_uniform
from wattwatch.protocols import ADAPTERS, MAX_ITEMS
from wattwatch.registry.service import Principal
from wattwatch.store.base import CORE_METRICS, ChannelDirectory, StoredRow

pytestmark = pytest.mark.timeout(timeout_for(EXAMPLES, 0.1))
RECEIVED_MS = 1_764_800_000_000  # 2025-12-03

# --- raw JSON text ------------------------------------------------------------------------

FAR_TIMESTAMPS = [
    "0",
    "-1",
    "1",
    str(MIN_TS_MS - 1),
    str(MIN_TS_MS),
    str(RECEIVED_MS),
    str(RECEIVED_MS + MAX_FUTURE_MS),
    str(RECEIVED_MS + MAX_FUTURE_MS + 1),
    "1764800000",  # epoch seconds
    "1764800000.5",
    "253402300800000",  # year 10000
    "1e15",
    "1e20",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    '"0001-01-01T00:00:00Z"',
    '"9999-12-31T23:59:59.999Z"',
    '"1999-12-31T23:59:59Z"',
    '"2025-12-03T21:33:20+14:00"',
    '"2024-02-30T00:00:00"',
    '"1764800000000"',
    '"-0"',
    '"now"',
]
NUMBER_TEXTS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1e-400",
    "-0",
    "0.0",
    "1E6",
    "1000000.0000001",
    "999999.9999999",
    "4.9e-324",
    "1.7976931348623157e308",
    "9" * 19,
    "9" * 310,
    "9" * 4301,  # past Python's int-to-str digit limit
    "-" + "9" * 5000,
    "0." + "0" * 400 + "1",
]


def _string(text: str) -> str:
    return orjson.dumps(text).decode()


texts = st.text(max_size=12).map(_string) | st.sampled_from(
    ['"\\ud800"', '"\\udfff\\u0000"', '"ON"', '"off"', '"1.5"', '" 2 "', '"1e400"', '"NaN"']
)
numbers = (
    st.integers(min_value=-(2**80), max_value=2**80).map(str)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | st.floats(min_value=-2e6, max_value=2e6).map(lambda f: repr(f).replace("inf", "1e400"))
    | st.sampled_from(NUMBER_TEXTS)
)
scalar_texts = (
    numbers | texts | st.sampled_from(["true", "false", "null"]) | st.sampled_from(FAR_TIMESTAMPS)
)


def _array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def _object(pairs: list[tuple[str, str]]) -> str:
    # A list of pairs, not a dict: keys may repeat (which value wins is the parser's choice).
    return "{" + ",".join(f"{_string(k)}:{v}" for k, v in pairs) + "}"


def json_texts(keys: list[str], max_leaves: int = 30) -> st.SearchStrategy[str]:
    key = st.sampled_from(keys) | st.text(max_size=8)
    return st.recursive(
        scalar_texts,
        lambda children: (
            st.lists(children, max_size=6).map(_array)
            | st.lists(st.tuples(key, children), max_size=8).map(_object)
        ),
        max_leaves=max_leaves,
    )


@st.composite
def deep_texts(draw: st.DrawFn) -> str:
    depth = draw(st.integers(min_value=1, max_value=3000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"values":', "}")]))
    inner = draw(scalar_texts)
    return opener * depth + inner + closer * depth


def with_duplicates(obj_text: str, key: str, value: str) -> str:
    """``{…, key: value}`` appended to an object text (a duplicate when the key is there)."""
    if obj_text.startswith("{") and obj_text.endswith("}"):
        body = obj_text[1:-1]
        return "{" + body + ("," if body else "") + f"{_string(key)}:{value}" + "}"
    return obj_text


# --- protocol-shaped messages ---------------------------------------------------------------

TB_KEYS = ["power", "voltage", "current", "energy", "pf", "frequency", "ts", "values", "x"]
TASMOTA_ENERGY = [
    "Total",
    "Power",
    "Voltage",
    "Current",
    "Factor",
    "ApparentPower",
    "ReactivePower",
    "Frequency",
    "Today",
    "Yesterday",
]
SHELLY_KEYS = [
    "output",
    "apower",
    "voltage",
    "current",
    "freq",
    "pf",
    "aenergy",
    "id",
    "ret_aenergy",
]
NATIVE_KEYS = [*METRICS, "ts", "channel", "online", "firmware", "id", "ok", "state", "error"]


def metric_pairs(keys: list[str]) -> st.SearchStrategy[list[tuple[str, str]]]:
    return st.lists(st.tuples(st.sampled_from(keys), scalar_texts), max_size=8)


@st.composite
def native_message(draw: st.DrawFn) -> str:
    def reading() -> str:
        pairs = draw(metric_pairs(list(METRICS)))
        if draw(st.booleans()):
            pairs.append(("ts", draw(st.sampled_from(FAR_TIMESTAMPS) | numbers)))
        if draw(st.booleans()):
            pairs.append(("channel", draw(texts | st.sampled_from(['"mains"', '"ac01"']))))
        return _object(draw(st.permutations(pairs)))

    if draw(st.booleans()):
        return reading()
    return _array([reading() for _ in range(draw(st.integers(0, 6)))])


@st.composite
def thingsboard_message(draw: st.DrawFn) -> str:
    values = _object(draw(metric_pairs(TB_KEYS)))
    shape = draw(st.sampled_from(["flat", "ts-values", "array"]))
    if shape == "flat":
        return values
    wrapped = _object([("ts", draw(st.sampled_from(FAR_TIMESTAMPS) | numbers)), ("values", values)])
    return wrapped if shape == "ts-values" else _array([wrapped, values, wrapped])


@st.composite
def tasmota_message(draw: st.DrawFn) -> str:
    energy = _object(draw(metric_pairs(TASMOTA_ENERGY)))
    if draw(st.booleans()):  # several channels: arrays for Power, Voltage …
        energy = with_duplicates(energy, "Power", _array(draw(st.lists(numbers, max_size=4))))
    sensor = _object([("Time", draw(st.sampled_from(FAR_TIMESTAMPS) | texts)), ("ENERGY", energy)])
    shape = draw(st.sampled_from(["sensor", "status10", "state", "power"]))
    if shape == "status10":
        return _object([("StatusSNS", sensor)])
    if shape == "state":
        return _object([("POWER", draw(texts)), ("POWER2", draw(texts)), ("Time", draw(texts))])
    if shape == "power":
        return draw(st.sampled_from(["ON", "OFF", "TOGGLE", "1", "", "on\x00"]))
    return sensor


@st.composite
def shelly_message(draw: st.DrawFn) -> str:
    pairs = draw(metric_pairs(SHELLY_KEYS))
    pairs.append(("aenergy", _object(draw(metric_pairs(["total", "by_minute", "minute_ts"])))))
    status = _object(draw(st.permutations(pairs)))
    shape = draw(st.sampled_from(["status", "notify", "answer", "online"]))
    if shape == "notify":
        method = draw(st.sampled_from(['"NotifyStatus"', '"NotifyFullStatus"', '"x"']))
        params = _object([("ts", draw(numbers)), ("switch:0", status), ("pm1:0", status)])
        return _object([("method", method), ("params", params)])
    if shape == "answer":
        result = _object([("was_on", draw(scalar_texts))])
        return _object(
            [("id", draw(numbers)), ("src", draw(texts)), ("result", result), ("error", status)]
        )
    if shape == "online":
        return draw(st.sampled_from(["true", "false", "1", "null", ""]))
    return status


TOPICS: dict[DeviceProtocol, list[str]] = {
    DeviceProtocol.NATIVE: [
        "wattwatch/ww-1/telemetry",
        "wattwatch/ww-1/status",
        "wattwatch/ww-1/command/result",
    ],
    DeviceProtocol.THINGSBOARD: [
        "v1/devices/me/telemetry",
        "v1/devices/me/attributes",
        "v1/devices/me/rpc/response/17",
    ],
    DeviceProtocol.TASMOTA: [
        "tele/plug/SENSOR",
        "tele/plug/STATE",
        "tele/plug/LWT",
        "stat/plug/POWER",
        "stat/plug/RESULT",
        "stat/plug/STATUS10",
    ],
    DeviceProtocol.SHELLY: [
        "plug/status/switch:0",
        "plug/status/pm1:1",
        "plug/online",
        "plug/events/rpc",
        "wattwatch/rpc",
    ],
}
SHAPED = {
    DeviceProtocol.NATIVE: native_message(),
    DeviceProtocol.THINGSBOARD: thingsboard_message(),
    DeviceProtocol.TASMOTA: tasmota_message(),
    DeviceProtocol.SHELLY: shelly_message(),
}
VOCABULARY = {
    DeviceProtocol.NATIVE: NATIVE_KEYS,
    DeviceProtocol.THINGSBOARD: TB_KEYS,
    DeviceProtocol.TASMOTA: ["ENERGY", "StatusSNS", "Time", "POWER", *TASMOTA_ENERGY],
    DeviceProtocol.SHELLY: ["method", "params", "switch:0", "result", *SHELLY_KEYS],
}
KEY_MAP = {"x": "power_w", "power": "nope", "watts": "power_w"}


def payloads(protocol: DeviceProtocol) -> st.SearchStrategy[bytes]:
    text = (
        SHAPED[protocol]
        | json_texts(VOCABULARY[protocol])
        | deep_texts()
        | st.tuples(SHAPED[protocol], st.sampled_from(VOCABULARY[protocol]), scalar_texts).map(
            lambda t: with_duplicates(*t)
        )
    )
    encoded = text.map(lambda s: s.encode("utf-8", "surrogatepass"))
    return encoded | st.binary(max_size=200)


# --- the checks -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ww(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wattwatch]:
    instance = Wattwatch.open(
        Settings(data_dir=tmp_path_factory.mktemp("fuzz") / "data"), lock=True
    )
    yield instance
    instance.close()


@pytest.fixture(scope="module")
def device_id(ww: Wattwatch) -> int:
    ww.registry.bootstrap_owner()
    org = ww.registry.db.first_org_id()
    assert org is not None
    owner = Principal(user_id=1, org_id=org, role=Role.OWNER, email="owner@localhost")
    device, _ = ww.registry.create_device(owner, name="fuzz", site_id=None, uid="fuzz-1")
    return int(device["id"])


def check_rows(
    rows: list[StoredRow], where: list[int], rejected: list[Rejection], indices: list[int]
) -> None:
    """Each reading (by index) is one row or one rejection, with a reason; stored values are
    finite and inside their metric's range, timestamps inside the accepted window."""
    assert len(where) == len(rows)
    assert sorted([*where, *(r.index for r in rejected)]) == sorted(indices)
    for rejection in rejected:
        assert isinstance(rejection.index, int) and rejection.index >= 0
        assert rejection.reason.strip() and not rejection.reason.startswith("internal error")
        assert len(rejection.reason) < 2000, "a reason must not echo a huge input"
        rejection.reason.encode("utf-8")
    for row in rows:
        _, ts, *core, extra = row
        assert MIN_TS_MS <= ts <= RECEIVED_MS + MAX_FUTURE_MS
        for name, raw in zip(CORE_METRICS, core, strict=True):
            if raw is not None:
                assert type(raw) is int
                spec = METRICS[name]
                assert spec.lo <= raw / 1000 <= spec.hi, (name, raw)
        if extra is not None:
            for name, value in orjson.loads(extra).items():
                spec = METRICS[name]
                assert type(value) in (int, float), (name, value)
                assert math.isfinite(value) and spec.lo <= value <= spec.hi, (name, value)


def check_decoded(decoded: Decoded, channels: ChannelDirectory, device_id: int) -> None:
    assert isinstance(decoded, Decoded)
    for reading in decoded.readings:
        for name, value in reading.values.items():
            assert type(value) is float and math.isfinite(value), (name, value)
    rows, where, rejected = normalise(device_id, decoded.readings, channels, RECEIVED_MS)
    check_rows(rows, where, rejected, list(range(len(decoded.readings))))
    for rejection in decoded.rejected:
        assert rejection.reason.strip() and not rejection.reason.startswith("internal error")
        rejection.reason.encode("utf-8")


def decoder_test(protocol: DeviceProtocol) -> Any:
    @fuzz_settings()
    @given(
        topic=st.sampled_from(TOPICS[protocol]), payload=payloads(protocol), mapped=st.booleans()
    )
    def run(ww: Wattwatch, device_id: int, topic: str, payload: bytes, mapped: bool) -> None:
        adapter = ADAPTERS[protocol]
        decoded = adapter.decode(
            topic, payload, received_ms=RECEIVED_MS, key_map=KEY_MAP if mapped else None
        )
        check_decoded(decoded, ww.pipeline.channels, device_id)

    return run


test_native_decoder = decoder_test(DeviceProtocol.NATIVE)
test_thingsboard_decoder = decoder_test(DeviceProtocol.THINGSBOARD)
test_tasmota_decoder = decoder_test(DeviceProtocol.TASMOTA)
test_shelly_decoder = decoder_test(DeviceProtocol.SHELLY)


# --- the HTTP batch parser ------------------------------------------------------------------

CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/x-ndjson",
    "text/csv",
    "application/csv",
    "",
    None,
    "text/plain",
    "multipart/form-data; boundary=x",
]


@st.composite
def csv_bodies(draw: st.DrawFn) -> bytes:
    columns = draw(
        st.lists(
            st.sampled_from(["ts", "channel", *METRICS, "", "ts ", "bogus"]) | st.text(max_size=6),
            min_size=0,
            max_size=6,
        )
    )
    cells = (
        st.sampled_from([*FAR_TIMESTAMPS, *NUMBER_TEXTS[:14], "", "mains", '"a,b"', '"'])
        | st.text(max_size=10)
        | numbers
    )
    rows = draw(st.lists(st.lists(cells, max_size=len(columns) + 1), max_size=6))
    sep = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = sep.join([",".join(columns), *(",".join(row) for row in rows)])
    prefix = draw(st.sampled_from(["", "\ufeff"]))
    return (prefix + text).encode("utf-8", "surrogatepass")


@st.composite
def ndjson_bodies(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(native_message() | json_texts(NATIVE_KEYS) | st.text(max_size=8)))
    return "\n".join(lines).encode("utf-8", "surrogatepass")


batch_bodies = (
    native_message().map(lambda s: s.encode("utf-8", "surrogatepass"))
    | json_texts(NATIVE_KEYS).map(lambda s: s.encode("utf-8", "surrogatepass"))
    | deep_texts().map(str.encode)
    | ndjson_bodies()
    | csv_bodies()
    | st.binary(max_size=200)
)


@fuzz_settings()
@given(body=batch_bodies, content_type=st.sampled_from(CONTENT_TYPES))
def test_http_batch_parser(
    ww: Wattwatch, device_id: int, body: bytes, content_type: str | None
) -> None:
    try:
        readings, indices, rejected = parse_batch(body, content_type)
    except BodyError as exc:
        assert str(exc).strip()
        return
    assert len(indices) == len(readings) == len(set(indices))
    assert not set(indices) & {r.index for r in rejected}
    for reading in readings:
        assert isinstance(reading, Reading)
    check_rows([], [], rejected, [r.index for r in rejected])
    rows, where, bad = normalise(device_id, readings, ww.pipeline.channels, RECEIVED_MS, indices)
    check_rows(rows, where, bad, indices)


@pytest.fixture(scope="module")
def upload(ww: Wattwatch) -> Iterator[Any]:
    """POST a body to ``/api/v1/telemetry`` of the running app with a device token."""
    from fastapi.testclient import TestClient

    from wattwatch.web.server import create_api

    org = ww.registry.db.first_org_id()
    assert org is not None
    owner = Principal(user_id=1, org_id=org, role=Role.OWNER, email="owner@localhost")
    _, token = ww.registry.create_device(owner, name="http", site_id=None, uid="fuzz-http")
    with TestClient(create_api(ww), raise_server_exceptions=False) as api:

        def post(body: bytes, content_type: str | None) -> Any:
            headers = {"Authorization": f"Bearer {token}"}
            if content_type is not None:
                headers["Content-Type"] = content_type
            return api.post("/api/v1/telemetry", content=body, headers=headers)

        yield post


@fuzz_settings(0.5)
@given(body=batch_bodies, content_type=st.sampled_from(CONTENT_TYPES))
def test_http_upload_answers_4xx_or_a_batch_result(
    device_id: int, upload: Any, body: bytes, content_type: str | None
) -> None:
    """The whole HTTP path (body limit, parser, fast path, pipeline, store): never a 5xx."""
    r = upload(body, content_type)
    assert r.status_code < 500, r.text
    answer = r.json()
    if r.status_code != 200:
        assert 400 <= r.status_code < 500
        assert set(answer) == {"error"} and answer["error"]["code"] and answer["error"]["message"]
        return
    assert set(answer) == {"accepted", "duplicates", "rejected"}
    assert answer["accepted"] >= 0 and answer["duplicates"] >= 0
    for rejection in answer["rejected"]:
        assert rejection["reason"] and rejection["index"] >= 0


# --- the columnar fast path against the general path -----------------------------------------

uniform_values = (
    st.floats(min_value=-2e6, max_value=2e6)
    | st.floats()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, 0.5, True, False, None, "1.5", " 2 ", "nan", "1e3", "x", [], {}])
)
uniform_ts = (
    st.integers(min_value=MIN_TS_MS - 10, max_value=RECEIVED_MS + MAX_FUTURE_MS + 10)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([1764800000, 1764800000.0, 1764799999999.6, "1764800000000", True, None])
    | st.floats()
)


@st.composite
def uniform_batches(draw: st.DrawFn) -> list[Any]:
    metrics = draw(st.lists(st.sampled_from(list(METRICS)), min_size=1, max_size=4, unique=True))
    channel = draw(st.booleans())
    names = st.sampled_from(["mains", "ac01", "ac02"]) | st.text(max_size=70)
    objects = []
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        obj: dict[str, Any] = {"ts": draw(uniform_ts)}
        for m in metrics:
            obj[m] = draw(uniform_values)
        if channel:
            obj["channel"] = draw(names)
        objects.append(obj)
    return objects


def general_path(
    device_id: int, objects: list[Any], channels: ChannelDirectory
) -> tuple[list[StoredRow], list[int]]:
    from wattwatch.ingest.http import split_objects

    readings, indices, rejected = split_objects(objects)
    rows, _, bad = normalise(device_id, readings, channels, RECEIVED_MS, indices)
    return rows, sorted(r.index for r in [*rejected, *bad])


@fuzz_settings()
@given(objects=uniform_batches())
def test_uniform_fast_path_agrees_with_the_general_path(
    ww: Wattwatch, device_id: int, objects: list[Any]
) -> None:
    channels = ww.pipeline.channels
    try:
        fast = normalise_uniform(device_id, objects, channels, RECEIVED_MS)
    except WattwatchError as exc:  # pragma: no cover - reported below
        pytest.fail(f"the fast path raised {exc!r}; the general path rejects per row")
    # What a decoder process makes of the same body (WATTWATCH_DECODE_PROCESSES): a batch
    # only when every reading is good, and then the same rows.
    elsewhere = decode_uniform(json.dumps(objects).encode(), RECEIVED_MS)
    if fast is None:
        assert elsewhere is None
        return  # not of the uniform shape: the general path alone decides
    rows, rejected = fast
    expected_rows, expected_rejected = general_path(device_id, objects, channels)
    assert sorted(r.index for r in rejected) == expected_rejected
    assert [tuple(r) for r in rows] == [tuple(r) for r in expected_rows]
    if rejected:
        assert elsewhere is None
    else:
        assert elsewhere is not None
        assert [tuple(r) for r in elsewhere.rows(device_id, channels) or []] == [
            tuple(r) for r in rows
        ]


# --- giant arrays and bodies at the limits ----------------------------------------------------


def _reading_text(i: int) -> bytes:
    return b'{"ts":%d,"power_w":%d.5}' % (RECEIVED_MS - 10_000_000 + i, i % 1000)


@pytest.mark.parametrize("count", [MAX_ITEMS, MAX_ITEMS + 1])
def test_decoders_take_arrays_up_to_their_item_limit(
    ww: Wattwatch, device_id: int, count: int
) -> None:
    payload = b"[" + b",".join(_reading_text(i) for i in range(count)) + b"]"
    decoded = ADAPTERS[DeviceProtocol.NATIVE].decode(
        "wattwatch/ww-1/telemetry", payload, received_ms=RECEIVED_MS
    )
    if count <= MAX_ITEMS:
        assert len(decoded.readings) == count and not decoded.rejected
    else:
        assert not decoded.readings and decoded.rejected
        assert str(MAX_ITEMS) in decoded.rejected[0].reason
    check_decoded(decoded, ww.pipeline.channels, device_id)
    tb = ADAPTERS[DeviceProtocol.THINGSBOARD].decode(
        "v1/devices/me/telemetry", payload, received_ms=RECEIVED_MS
    )
    check_decoded(tb, ww.pipeline.channels, device_id)


@pytest.mark.parametrize("count", [MAX_BATCH_READINGS, MAX_BATCH_READINGS + 1])
def test_http_batches_up_to_their_row_limit(count: int) -> None:
    body = b"[" + b",".join([_reading_text(0)] * count) + b"]"
    ndjson = b"\n".join([_reading_text(0)] * count)
    csv = b"ts,power_w\n" + b"1764790000000,1.5\n" * count
    for payload, kind in (
        (body, "application/json"),
        (ndjson, "application/x-ndjson"),
        (csv, "text/csv"),
    ):
        if count <= MAX_BATCH_READINGS:
            readings, _, rejected = parse_batch(payload, kind)
            assert len(readings) == count and not rejected
        else:
            with pytest.raises(BodyError, match=str(MAX_BATCH_READINGS)):
                parse_batch(payload, kind)
    if count > MAX_BATCH_READINGS:
        with pytest.raises(BodyError):
            parse_json_array(body)


def test_deep_nesting_and_huge_numbers_in_a_batch_are_a_body_error_or_a_reason() -> None:
    for body in (
        b"[" * 100_000 + b"]" * 100_000,
        b'[{"power_w": ' + b"9" * 100_000 + b"}]",
        b'[{"ts": ' + b"9" * 5000 + b', "power_w": 1}]',
        b'[{"power_w": 1, "power_w": NaN}]',
        b'[{"power_w": Infinity}]',
    ):
        for kind in ("application/json", "application/x-ndjson"):
            try:
                readings, _, rejected = parse_batch(body, kind)
            except BodyError:
                continue
            assert len(readings) + len(rejected) >= 1
            assert all(r.reason for r in rejected)
