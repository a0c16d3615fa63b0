"""The offline-first device's local log on flash: framed, CRC-checked, append-only segments.

A device that cannot reach the server keeps its readings here and a collector (the device's
uploader, or a tool reading a pulled SD card) later sends everything after the last position
the server acknowledged. The log must survive power cuts and ``kill -9`` at any instant.

Layout: a directory of segment files ``<seq of first record, 20 digits>.seg``. A record is a
header then its payload::

    magic b"WL" | payload length u32 | seq u64 | crc32 u32 | payload      (little-endian)

The CRC covers the length, the sequence number and the payload. ``seq`` counts records from 1
(position 0 is "before the first record") and keeps counting across segments and evictions.

Crash safety: a record is written with a single ``write`` at the end of the active segment, so
a crash can only leave a *torn last record* (a short header, a short payload) or, on some
filesystems after a power cut, garbage after the last good byte. Readers stop at the first
record whose header or CRC does not check; a writer reopening the log truncates the active
segment back to its last whole record before appending again. A damaged record in an older
segment (bit rot) ends that segment's readable part; reading goes on with the next segment.

Flash wear, and why the log is shaped this way:

- Appends only, sequentially: NAND is written in pages and erased in much larger blocks;
  sequential appends let the FTL fill blocks in order, with no read-modify-write of old data.
- Nothing is updated in place: no record is ever rewritten, no header patched, no index file
  rewritten per record (positions are recovered by scanning, which is cheap for small
  segments). The only rewritten file is the optional upload cursor, once per upload batch,
  and via write-new-then-rename.
- Rotation instead of a ring buffer: when a segment reaches ``segment_bytes`` a new file is
  started; when the log exceeds ``max_bytes`` the *oldest whole segment* is deleted. Deleting
  a file is one metadata update and frees whole erase blocks; wrapping a ring buffer would
  overwrite live data in place. Choose ``segment_bytes`` as a multiple of the erase block
  (64-256 KiB typically) so freed segments map to whole blocks.
- ``fsync`` per record multiplies page programming (each sync flushes a partly filled page
  that is programmed again at the next sync). The default flushes to the OS on every
  append (survives a process kill) and leaves fsync to ``sync()``/``fsync=True``; a device
  typically syncs every few seconds or records, trading that window on power loss for wear.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import orjson

from wattwatch.domain import Reading
from wattwatch.sim.payloads import native_object

MAGIC = b"WL"
HEADER = struct.Struct("<2sIQI")
MAX_RECORD_BYTES = 1 << 20  # a longer length in a header is damage, not a record
SEGMENT_SUFFIX = ".seg"
CURSOR_FILE = "cursor"


class Record(NamedTuple):
    seq: int
    payload: bytes


class FlashLogError(Exception):
    """The log cannot be used (a record too large, a closed log)."""


def _crc(length: int, seq: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<IQ", length, seq)))


def encode_record(seq: int, payload: bytes) -> bytes:
    """One framed record."""
    if len(payload) > MAX_RECORD_BYTES:
        raise FlashLogError(f"record of {len(payload)} bytes exceeds {MAX_RECORD_BYTES}")
    return HEADER.pack(MAGIC, len(payload), seq, _crc(len(payload), seq, payload)) + payload


def decode_records(buf: bytes | bytearray | memoryview, start: int = 0) -> tuple[list[Record], int]:
    """The whole records at the start of ``buf[start:]`` and the offset just after the last one.

    Stops at the first incomplete or damaged record (torn write, garbage): what follows a
    damaged record cannot be trusted to be framed.
    """
    view = memoryview(buf)
    out: list[Record] = []
    pos = start
    end = len(view)
    hsize = HEADER.size
    while pos + hsize <= end:
        magic, length, seq, crc = HEADER.unpack_from(view, pos)
        if magic != MAGIC or length > MAX_RECORD_BYTES or pos + hsize + length > end:
            break
        payload = view[pos + hsize : pos + hsize + length]
        if _crc(length, seq, payload) != crc:
            break
        out.append(Record(seq, bytes(payload)))
        pos += hsize + length
    return out, pos


def reading_payload(reading: Reading) -> bytes:
    """A reading as compact JSON: the native telemetry object ``{"ts", "channel", metrics…}``,
    so an upload is just the payloads joined into a JSON array."""
    return orjson.dumps(native_object(reading))


def payload_reading(payload: bytes) -> Reading:
    """The reading a :func:`reading_payload` encoded."""
    obj = orjson.loads(payload)
    if not isinstance(obj, dict):
        raise ValueError("a reading payload is a JSON object")
    ts = obj.pop("ts", None)
    channel = obj.pop("channel", None)
    return Reading(values={k: float(v) for k, v in obj.items()}, ts_ms=ts, channel=channel)


def _segment_base(path: Path) -> int | None:
    if path.suffix != SEGMENT_SUFFIX or not path.stem.isdigit():
        return None
    return int(path.stem)


def list_segments(directory: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """The log's segments, oldest first: (seq of their first record, path)."""
    found = []
    for p in Path(directory).iterdir():
        base = _segment_base(p)
        if base is not None:
            found.append((base, p))
    return sorted(found)


def read_log(
    directory: str | os.PathLike[str], after: int = 0, limit: int | None = None
) -> Iterator[Record]:
    """Records with ``seq > after``, oldest first, at most ``limit``; needs no writer (a
    collector may read while the device appends: a half-written tail is simply not there yet)."""
    segments = list_segments(directory)
    count = 0
    for i, (_base, path) in enumerate(segments):
        nxt = segments[i + 1][0] if i + 1 < len(segments) else None
        if nxt is not None and nxt <= after + 1:
            continue  # every record here is at or before ``after``
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # evicted meanwhile
            continue
        records, _ = decode_records(data)
        for rec in records:
            if rec.seq <= after:
                continue
            yield rec
            count += 1
            if limit is not None and count >= limit:
                return


class FlashLog:
    """The device side of the log: append records, bounded size, oldest segments evicted.

    ``segment_bytes``: rotate to a new segment file beyond this size; ``max_bytes``: delete
    the oldest segments while the log is larger (the active segment is never deleted);
    ``fsync``: fsync after every append (else only on :meth:`sync`).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_bytes: int = 256 * 1024,
        max_bytes: int = 8 * 1024 * 1024,
        fsync: bool = False,
    ) -> None:
        if segment_bytes < HEADER.size + 1 or max_bytes < segment_bytes:
            raise ValueError("need segment_bytes > header size and max_bytes >= segment_bytes")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._sizes: dict[int, int] = {}  # segment base -> bytes
        self._fd: int | None = None
        self._active: int | None = None
        self._closed = False
        self.next_seq = 1
        self._recover()

    # -- opening -----------------------------------------------------------------------------

    def _path(self, base: int) -> Path:
        return self.directory / f"{base:020d}{SEGMENT_SUFFIX}"

    def _recover(self) -> None:
        segments = list_segments(self.directory)
        for base, path in segments:
            self._sizes[base] = path.stat().st_size
        if not segments:
            return
        base, path = segments[-1]
        data = path.read_bytes()
        records, good_end = decode_records(data)
        if good_end < len(data):
            # A torn last write (or garbage after it): cut back to the last whole record so
            # new records are not appended after bytes no reader can get past.
            with path.open("r+b") as f:
                f.truncate(good_end)
                os.fsync(f.fileno())
            self._sizes[base] = good_end
        if records:
            self.next_seq = records[-1].seq + 1
        else:
            self.next_seq = max(base, self._last_seq_before(segments[:-1]) + 1)
        self._open_segment(base)

    def _last_seq_before(self, segments: list[tuple[int, Path]]) -> int:
        for _base, path in reversed(segments):
            records, _ = decode_records(path.read_bytes())
            if records:
                return records[-1].seq
        return 0

    def _open_segment(self, base: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self._path(base), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._active = base
        self._sizes.setdefault(base, 0)

    # -- writing -----------------------------------------------------------------------------

    def append(self, payload: bytes) -> int:
        """Append one record; returns its seq."""
        return self.append_many((payload,))

    def append_many(self, payloads: Iterable[bytes]) -> int:
        """Append records, one ``write`` per segment touched; returns the last seq (or the
        previous one when ``payloads`` is empty)."""
        frames: list[bytes] = []
        size = 0
        for payload in payloads:
            frame = encode_record(self.next_seq, payload)
            if self._needs_rotation(size, len(frame)):
                self._write(b"".join(frames))
                frames, size = [], 0
                self._rotate()
            frames.append(frame)
            size += len(frame)
            self.next_seq += 1
        self._write(b"".join(frames))
        self._evict()
        return self.next_seq - 1

    def append_reading(self, reading: Reading) -> int:
        return self.append(reading_payload(reading))

    def append_readings(self, readings: Iterable[Reading]) -> int:
        return self.append_many(reading_payload(r) for r in readings)

    def _needs_rotation(self, batch_bytes: int, frame_bytes: int) -> bool:
        """Whether a frame must start a new segment (an oversize record gets one to itself)."""
        if self._active is None:
            return True
        filled = self._sizes[self._active] + batch_bytes
        return filled > 0 and filled + frame_bytes > self.segment_bytes

    def _rotate(self) -> None:
        if self._closed:
            raise FlashLogError("the log is closed")
        self._open_segment(self.next_seq)

    def _write(self, data: bytes) -> None:
        if not data:
            return
        fd, active = self._fd, self._active
        if fd is None or active is None:
            raise FlashLogError("the log is closed")
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        self._sizes[active] += len(data)
        if self.fsync:
            os.fsync(fd)

    def _evict(self) -> None:
        while sum(self._sizes.values()) > self.max_bytes and len(self._sizes) > 1:
            oldest = min(self._sizes)
            if oldest == self._active:
                break
            self._path(oldest).unlink(missing_ok=True)
            del self._sizes[oldest]

    def sync(self) -> None:
        """Make everything appended so far durable (fsync the active segment)."""
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._closed = True

    def __enter__(self) -> FlashLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------

    def read_after(self, after: int = 0, limit: int | None = None) -> Iterator[Record]:
        """Records with ``seq > after``, oldest first (at most ``limit``)."""
        return read_log(self.directory, after, limit)

    def read_all(self) -> list[Record]:
        return list(read_log(self.directory))

    def readings_after(self, after: int = 0, limit: int | None = None) -> list[tuple[int, Reading]]:
        return [(r.seq, payload_reading(r.payload)) for r in read_log(self.directory, after, limit)]

    @property
    def size_bytes(self) -> int:
        return sum(self._sizes.values())

    @property
    def segments(self) -> list[Path]:
        return [self._path(b) for b in sorted(self._sizes)]

    @property
    def first_seq(self) -> int:
        """The oldest seq still held (``next_seq`` when the log is empty)."""
        for rec in read_log(self.directory):
            return rec.seq
        return self.next_seq

    # -- upload cursor -----------------------------------------------------------------------

    @property
    def acked(self) -> int:
        """The last seq the server confirmed (0 when none), as saved by :meth:`ack`."""
        try:
            return int((self.directory / CURSOR_FILE).read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def ack(self, seq: int) -> None:
        """Remember that everything up to ``seq`` was uploaded (atomic: new file + rename)."""
        tmp = self.directory / (CURSOR_FILE + ".tmp")
        with tmp.open("w") as f:
            f.write(str(int(seq)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.directory / CURSOR_FILE)

    def pending(self, limit: int | None = None) -> Iterator[Record]:
        """Records not yet acknowledged."""
        return self.read_after(self.acked, limit)
