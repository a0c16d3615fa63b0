"""Offline-first devices and the collector that brings their logs to the server.

The ESP32 design: a monitor keeps measuring whether or not it has a network and appends
every reading to its log on flash (:class:`~wattwatch.sim.flashlog.FlashLog`). A collector
(the phone app) that comes within range pulls what it has not pulled yet, keeps it in its
own crash-safe spool, and uploads it in batches (``POST /api/v1/telemetry`` with the
device's token) whenever it is online. Nothing here needs the network to be reliable:

- a pull copies only records after the last one the collector holds, so pulling twice
  adds nothing, and records the device dropped before anyone pulled them are counted
  (``lost``), never invented;
- the spool's upload cursor moves only after the server answered; a crash or a lost answer
  means the batch is sent again, which the server counts as duplicates because a reading
  is identified by (channel, ts);
- two collectors may carry the same log and upload it in any order (``newest_first``
  uploads the present first so dashboards fill from now backwards): the server ends up
  with each reading exactly once.

A spool record is the device's record with its device sequence number in front (8 bytes,
little-endian), so the collector knows how far it has pulled and the device can be told
what the server has (``OfflineDevice.confirm``).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Final

import httpx
import orjson

from wattwatch.sim.flashlog import FlashLog, Record, list_segments, read_log
from wattwatch.sim.provision import SimDevice

_SEQ: Final = struct.Struct("<Q")
_RETRY_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})


class OfflineDevice:
    """A simulated device whose readings all go to its flash log first."""

    def __init__(
        self,
        sim: SimDevice,
        log_dir: str | Path,
        *,
        step_s: float = 5.0,
        segment_bytes: int = 64 * 1024,
        max_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.sim = sim
        self.step_s = step_s
        self.log_dir = Path(log_dir)
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.log = FlashLog(self.log_dir, segment_bytes=segment_bytes, max_bytes=max_bytes)

    @property
    def uid(self) -> str:
        return self.sim.uid

    def measure_until(self, t_ms: int) -> int:
        """Take the readings due before ``t_ms`` and append them to flash; returns how many."""
        cols = self.sim.take(t_ms, self.step_s)
        if cols is None:
            return 0
        keys = ["ts" if k == "ts_ms" else k for k in cols]
        lists = [cols[k].tolist() for k in cols]
        dumps = orjson.dumps
        payloads = [dumps(dict(zip(keys, row, strict=True))) for row in zip(*lists, strict=True)]
        self.log.append_many(payloads)
        self.log.sync()
        return len(payloads)

    def reboot(self) -> None:
        """Power cycle: reopen the log (a torn last record is cut off, appends go on)."""
        self.log.close()
        self.log = FlashLog(
            self.log_dir, segment_bytes=self.segment_bytes, max_bytes=self.max_bytes
        )

    # What a collector in range can ask for (over BLE or the device's own Wi-Fi AP).
    def records_after(self, seq: int, limit: int | None = None) -> list[Record]:
        return list(self.log.read_after(seq, limit))

    @property
    def first_seq(self) -> int:
        return self.log.first_seq

    def confirm(self, seq: int) -> None:
        """The server has every record up to ``seq`` (the device may show "synced")."""
        if seq > self.log.acked:
            self.log.ack(seq)

    @property
    def confirmed(self) -> int:
        return self.log.acked

    def close(self) -> None:
        self.log.close()


@dataclass
class PullReport:
    uid: str
    pulled: int = 0  # records copied into the spool now
    lost: int = 0  # records the device dropped (full flash) before anyone pulled them


@dataclass
class DeviceUpload:
    """What one device's spool upload did."""

    uid: str
    batches: int = 0
    readings: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    done: bool = False  # everything spooled is on the server


@dataclass
class UploadReport:
    devices: list[DeviceUpload] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(d.accepted for d in self.devices)

    @property
    def duplicates(self) -> int:
        return sum(d.duplicates for d in self.devices)

    @property
    def readings(self) -> int:
        return sum(d.readings for d in self.devices)

    @property
    def ok(self) -> bool:
        return all(d.done for d in self.devices)


class Collector:
    """Pulls logs from devices in range and uploads them when online (the phone app).

    Each device's spool is bounded by ``spool_max_bytes`` (a phone's storage is not endless):
    beyond it the oldest records are dropped even if unconfirmed, like the device's own log;
    the device usually still has them, and a later pull does not fetch them again.
    """

    def __init__(
        self,
        spool_dir: str | Path,
        *,
        batch_readings: int = 2000,
        max_batch_bytes: int = 2 * 1024 * 1024,
        spool_max_bytes: int = 64 * 1024 * 1024,
        retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.batch_readings = batch_readings
        self.max_batch_bytes = max_batch_bytes
        self.spool_max_bytes = spool_max_bytes
        self.retries = retries
        self.backoff_s = backoff_s
        self._tokens: dict[str, str] = {}

    def pair(self, uid: str, token: str) -> None:
        """Remember a device's upload token (given when the device was paired with the app)."""
        self._tokens[uid] = token

    @contextmanager
    def _spool(self, uid: str) -> Iterator[FlashLog]:
        log = FlashLog(
            self.spool_dir / uid,
            segment_bytes=256 * 1024,
            max_bytes=self.spool_max_bytes,
        )
        try:
            yield log
        finally:
            log.close()

    def held(self, uid: str) -> int:
        """The newest device seq this collector holds for ``uid`` (0: none)."""
        directory = self.spool_dir / uid
        if not directory.exists():
            return 0
        with self._spool(uid) as log:
            last = list(read_log(directory, after=max(0, log.next_seq - 2)))
        return _SEQ.unpack_from(last[-1].payload)[0] if last else 0

    def pull(self, device: OfflineDevice) -> PullReport:
        """Copy the device's records this collector does not hold yet into the spool."""
        if device.uid not in self._tokens:
            raise ValueError(f"{device.uid} is not paired with this collector")
        report = PullReport(device.uid)
        have = self.held(device.uid)
        records = device.records_after(have)
        if records and records[0].seq > have + 1:
            report.lost = records[0].seq - have - 1
        if records:
            with self._spool(device.uid) as log:
                log.append_many(_SEQ.pack(r.seq) + r.payload for r in records)
                log.sync()
            report.pulled = len(records)
        confirmed = self.confirmed(device.uid)
        if confirmed:
            device.confirm(confirmed)
        return report

    def confirmed(self, uid: str) -> int:
        """The newest device seq of ``uid`` the server has confirmed through this collector."""
        directory = self.spool_dir / uid
        if not directory.exists():
            return 0
        with self._spool(uid) as log:
            acked = log.acked
            if not acked:
                return 0
            rec = list(read_log(directory, after=acked - 1, limit=1))
        return _SEQ.unpack_from(rec[0].payload)[0] if rec and rec[0].seq == acked else 0

    def batches(self, uid: str) -> list[tuple[int, int, bytes]]:
        """The spool's unconfirmed records as upload bodies: (spool seq of the last record,
        readings, JSON array body), oldest first."""
        out: list[tuple[int, int, bytes]] = []
        parts: list[bytes] = []
        size = 0
        last = 0
        with self._spool(uid) as log:
            for rec in log.pending():
                payload = rec.payload[_SEQ.size :]
                if parts and (
                    len(parts) >= self.batch_readings
                    or size + len(payload) + 1 > self.max_batch_bytes
                ):
                    out.append((last, len(parts), b"[" + b",".join(parts) + b"]"))
                    parts, size = [], 0
                parts.append(payload)
                size += len(payload) + 1
                last = rec.seq
        if parts:
            out.append((last, len(parts), b"[" + b",".join(parts) + b"]"))
        return out

    def upload(self, client: httpx.Client, *, newest_first: bool = False) -> UploadReport:
        """Upload every device's unconfirmed spool through ``client`` (its base URL is the
        server). Oldest first, the cursor moves after each answered batch; ``newest_first``
        sends the present first and moves the cursor once everything is answered."""
        report = UploadReport()
        for uid in sorted(self._tokens):
            if (self.spool_dir / uid).exists():
                report.devices.append(self._upload_device(client, uid, newest_first))
        return report

    def _upload_device(self, client: httpx.Client, uid: str, newest_first: bool) -> DeviceUpload:
        result = DeviceUpload(uid)
        batches = self.batches(uid)
        if newest_first:
            batches.reverse()
        headers = {
            "Authorization": f"Bearer {self._tokens[uid]}",
            "Content-Type": "application/json",
        }
        for last_seq, count, body in batches:
            answer, error = _post(client, body, headers, self.retries, self.backoff_s)
            if answer is None:
                result.error = error
                return result
            result.batches += 1
            result.readings += count
            result.accepted += int(answer["accepted"])
            result.duplicates += int(answer["duplicates"])
            # A refused reading would be refused again: it is reported, not retried.
            result.rejected += list(answer["rejected"])
            if not newest_first:
                self._ack(uid, last_seq)
        if newest_first and batches:
            self._ack(uid, max(b[0] for b in batches))
        result.done = True
        return result

    def _ack(self, uid: str, spool_seq: int) -> None:
        with self._spool(uid) as log:
            log.ack(spool_seq)
        self._trim(uid, spool_seq)

    def _trim(self, uid: str, acked: int) -> None:
        """Delete spool segments of confirmed records, keeping the newest segment and the one
        holding record ``acked`` (it tells which device seq the server has)."""
        segments = list_segments(self.spool_dir / uid)
        for (_base, path), (next_base, _next) in pairwise(segments):
            if next_base <= acked:
                path.unlink(missing_ok=True)


def _post(
    client: httpx.Client, body: bytes, headers: dict[str, str], retries: int, backoff_s: float
) -> tuple[dict[str, Any] | None, str | None]:
    """One batch, retried on network errors and 5xx (a retry of a batch the server did
    commit only finds duplicates)."""
    error = None
    told = 0.0  # the server's Retry-After (per-device rate limit: 429)
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(max(told, backoff_s * 2 ** (attempt - 1)))
        try:
            r = client.post("/api/v1/telemetry", content=body, headers=headers)
        except httpx.HTTPError as exc:
            error = f"upload failed: {exc!r}"
            continue
        if r.status_code < 300:
            answer: dict[str, Any] = r.json()
            return answer, None
        error = f"upload answered HTTP {r.status_code}: {r.text[:200]}"
        if r.status_code not in _RETRY_STATUS:
            break
        told = retry_after_s(r)
    return None, error


def retry_after_s(response: httpx.Response, cap_s: float = 600.0) -> float:
    """The seconds a ``Retry-After`` header asks for (0 when absent or not a number)."""
    try:
        return min(cap_s, max(0.0, float(response.headers.get("retry-after", "0"))))
    except ValueError:
        return 0.0
