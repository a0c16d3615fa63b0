"""The device's flash log: framing, torn writes and kill -9, eviction, collectors reading."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattwatch.domain import Reading
from wattwatch.sim.flashlog import (
    HEADER,
    FlashLog,
    FlashLogError,
    Record,
    decode_records,
    encode_record,
    list_segments,
    read_log,
)


def _payloads(n: int, size: int = 40) -> list[bytes]:
    return [f"record {i:06d} ".encode().ljust(size, b".") for i in range(1, n + 1)]


def test_write_then_read_everything(tmp_path: Path) -> None:
    with FlashLog(tmp_path) as log:
        seqs = [log.append(p) for p in _payloads(100)]
        assert seqs == list(range(1, 101))
        assert log.read_all() == [Record(i, p) for i, p in enumerate(_payloads(100), 1)]
        assert [r.seq for r in log.read_after(95)] == [96, 97, 98, 99, 100]
        assert [r.seq for r in log.read_after(10, limit=3)] == [11, 12, 13]
    # A collector needs no writer.
    assert len(list(read_log(tmp_path))) == 100


def _tear(tmp_path: Path, cut_into_last: int, garbage: bytes) -> None:
    (_, path), *_ = reversed(list_segments(tmp_path))
    data = path.read_bytes()
    last = 40 + HEADER.size
    path.write_bytes(data[: len(data) - last + cut_into_last] + garbage)


@pytest.mark.parametrize("cut", [1, 5, HEADER.size, HEADER.size + 17])
@pytest.mark.parametrize("garbage", [b"", b"\x00" * 300, os.urandom(64), b"WL" + os.urandom(40)])
def test_a_torn_last_record_and_garbage_are_not_read(
    tmp_path: Path, cut: int, garbage: bytes
) -> None:
    payloads = _payloads(50)
    with FlashLog(tmp_path) as log:
        log.append_many(payloads)
    _tear(tmp_path, cut, garbage)
    assert [r.payload for r in read_log(tmp_path)] == payloads[:49]
    # The device restarts: the tail is cut back and numbering continues after the last whole record.
    with FlashLog(tmp_path) as log:
        assert log.next_seq == 50
        assert log.append(b"after restart") == 50
        assert [r.seq for r in log.read_all()] == list(range(1, 51))
        assert log.read_all()[-1].payload == b"after restart"


def test_eviction_keeps_the_newest(tmp_path: Path) -> None:
    frame = 40 + HEADER.size
    with FlashLog(tmp_path, segment_bytes=10 * frame, max_bytes=35 * frame) as log:
        for p in _payloads(1000):
            log.append(p)
        records = log.read_all()
        assert records[-1].seq == 1000
        assert [r.seq for r in records] == list(range(records[0].seq, 1001))  # a suffix, no holes
        assert 1000 - 40 < records[0].seq <= 1000 - 25
        assert log.size_bytes <= 35 * frame
        assert log.first_seq == records[0].seq
        assert len(log.segments) <= 4
        # Reading from before the oldest kept record returns what is left.
        assert [r.seq for r in log.read_after(3)] == [r.seq for r in records]


def test_segments_rotate_and_survive_reopening(tmp_path: Path) -> None:
    with FlashLog(tmp_path, segment_bytes=1000) as log:
        log.append_many(_payloads(100))
        n_segments = len(log.segments)
    assert n_segments > 5
    with FlashLog(tmp_path, segment_bytes=1000) as log:
        assert log.next_seq == 101
        log.append_many(_payloads(10))
        assert [r.seq for r in log.read_after(95)] == list(range(96, 111))


def test_readings_round_trip_and_upload_cursor(tmp_path: Path) -> None:
    readings = [
        Reading(
            {"power_w": 12.5 + i, "energy_wh": 1000.0 + i}, 1_750_000_000_000 + i * 5000, "mains"
        )
        for i in range(20)
    ]
    with FlashLog(tmp_path) as log:
        log.append_readings(readings[:10])
        for r in readings[10:]:
            log.append_reading(r)
        got = log.readings_after()
        assert [r for _, r in got] == readings
        assert log.acked == 0
        log.ack(12)
        assert log.acked == 12
        assert [r.seq for r in log.pending()] == list(range(13, 21))
    with FlashLog(tmp_path) as log:
        assert log.acked == 12


def test_limits(tmp_path: Path) -> None:
    with pytest.raises(FlashLogError):
        encode_record(1, b"x" * (2 << 20))
    log = FlashLog(tmp_path)
    log.close()
    with pytest.raises(FlashLogError):
        log.append(b"late")
    with pytest.raises(ValueError):
        FlashLog(tmp_path, segment_bytes=100, max_bytes=50)


_WRITER = """
import sys
from wattwatch.sim.flashlog import FlashLog
log = FlashLog(sys.argv[1], segment_bytes=64 * 1024, max_bytes=1 << 30)
i = 0
print("ready", flush=True)
while True:
    i += 1
    log.append(b"%08d" % i * (1 + i % 50))
"""


def test_kill_9_mid_write_leaves_only_whole_records(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(0.4)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    records = list(read_log(tmp_path))
    assert len(records) > 100
    for i, r in enumerate(records, 1):
        assert r.seq == i and r.payload == b"%08d" % i * (1 + i % 50)
    with FlashLog(tmp_path) as log:
        assert log.append(b"next") == len(records) + 1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=30), st.data())
def test_framing_round_trips_and_any_cut_keeps_exactly_the_whole_records(
    payloads: list[bytes], data: st.DataObject
) -> None:
    frames = [encode_record(i, p) for i, p in enumerate(payloads, 1)]
    buf = b"".join(frames)
    records, end = decode_records(buf)
    assert records == [Record(i, p) for i, p in enumerate(payloads, 1)] and end == len(buf)
    cut = data.draw(st.integers(0, len(buf)))
    tail = data.draw(st.binary(max_size=50))
    records, end = decode_records(buf[:cut] + tail)
    whole = 0
    offset = 0
    for f in frames:
        if offset + len(f) > cut:
            break
        offset += len(f)
        whole += 1
    # Every record before the cut is read; nothing else is, unless the tail happens to hold the
    # missing bytes of the torn one (then it *is* that record). A forged CRC32 is 2^-32.
    assert len(records) >= whole
    assert records == [Record(i, p) for i, p in enumerate(payloads[: len(records)], 1)]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=100), min_size=1, max_size=20), st.data())
def test_a_flipped_bit_is_never_read_as_a_record(
    payloads: list[bytes], data: st.DataObject
) -> None:
    buf = bytearray(b"".join(encode_record(i, p) for i, p in enumerate(payloads, 1)))
    pos = data.draw(st.integers(0, len(buf) - 1))
    buf[pos] ^= 1 << data.draw(st.integers(0, 7))
    records, _ = decode_records(bytes(buf))
    assert records == [Record(i, p) for i, p in enumerate(payloads[: len(records)], 1)]
    assert len(records) < len(payloads)
