"""The fast path for plain native telemetry gives exactly what the general path gives."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from wattwatch.domain import DEFAULT_CHANNEL, METRICS
from wattwatch.ingest.mqtt import plain_native_row
from wattwatch.ingest.pipeline import normalise
from wattwatch.protocols import native
from wattwatch.store.base import StoredRow

RECEIVED = 1_764_000_000_000


class Channels:
    """A channel directory: every device has channel ids by name (the real one needs a DB)."""

    def resolve_channel(self, device_id: int, name: str) -> int:
        return device_id * 100 + (1 if name == DEFAULT_CHANNEL else 2 + len(name))


def general(payload: bytes) -> list[StoredRow] | None:
    decoded = native.decode_telemetry(payload, received_ms=RECEIVED)
    if decoded.rejected or not decoded.readings:
        return None
    rows, _, bad = normalise(7, decoded.readings, Channels(), RECEIVED)
    return None if bad else rows


numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.sampled_from([0, 0.0, 230.1, 812.5, -1.0, 1e9, 1e12, 50.0, 0.95]),
)
keys = st.sampled_from([*METRICS, "ts", "channel", "power", "bogus"])
values = st.one_of(
    numbers,
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    st.integers(min_value=RECEIVED - 10**9, max_value=RECEIVED + 10**6),
    st.sampled_from(["2025-11-24T12:00:00Z", "mains", "phase_a"]),
)


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.dictionaries(keys, values, max_size=6), st.lists(st.integers(-9, 9))))
def test_fast_path_agrees_with_the_general_path(obj: Any) -> None:
    payload = orjson.dumps(obj)
    fast = plain_native_row(payload, RECEIVED, 7, Channels())
    if fast is not None:
        assert general(payload) == [fast]


def test_the_common_messages_take_the_fast_path() -> None:
    channels: Any = Channels()
    for payload in (
        b'{"ts":1763999000000,"power_w":812.5,"voltage_v":230.1}',
        b'{"power_w":12,"energy_wh":1234.5,"current_a":0.5,"power_factor":0.9}',
        b'{"ts":null,"frequency_hz":50}',
    ):
        fast = plain_native_row(payload, RECEIVED, 7, channels)
        assert fast is not None
        assert general(payload) == [fast]
    row = plain_native_row(b'{"ts":1763999000000,"power_w":812.5}', RECEIVED, 7, channels)
    assert row == StoredRow(701, 1763999000000, 812500, None, None, None, None)


def test_anything_else_takes_the_general_path() -> None:
    channels: Any = Channels()
    for payload in (
        b'[{"power_w":1}]',  # an array
        b'{"ts":1763999000,"power_w":1}',  # epoch seconds
        b'{"ts":"2025-11-24T12:00:00Z","power_w":1}',
        b'{"channel":"phase_a","power_w":1}',
        b'{"power_w":"12"}',
        b'{"power_w":true}',
        b'{"power_w":1e300}',  # out of range: the general path says why
        b'{"power":1}',  # an alias or unknown key
        b'{"ts":1763999000000}',  # no values
        b"{not json",
        b'{"power_w":NaN}',
        b"{}",
    ):
        assert plain_native_row(payload, RECEIVED, 7, channels) is None, payload
