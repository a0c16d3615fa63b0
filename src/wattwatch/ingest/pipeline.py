"""The one ingest pipeline: validate → normalise → dedupe → batch → store, with backpressure.

Every protocol adapter hands ``Reading`` records of one device to ``IngestPipeline.ingest``.
Validation and unit normalisation happen in the caller's task; the store is written by a
single writer task that coalesces queued submissions into one transaction (group commit),
so many small MQTT messages cost one commit, not one each. A submission returns only when
its readings are committed, which is what lets MQTT QoS 1 and HTTP answer truthfully.

The queue is bounded by readings, not submissions: when the store falls behind, ``submit``
waits, the HTTP handler or MQTT session waits with it, and the sender is slowed down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import orjson

from wattwatch.domain import (
    DEFAULT_CHANNEL,
    MAX_FUTURE_MS,
    METRICS,
    MIN_TS_MS,
    BatchResult,
    Reading,
    Rejection,
    now_ms,
)
from wattwatch.errors import InvalidInput, WattwatchError
from wattwatch.ingest.stats import IngestStats
from wattwatch.store.base import CORE_METRICS, ChannelDirectory, ReadingStore, StoredRow

log = logging.getLogger(__name__)

_CORE_SET = frozenset(CORE_METRICS)
_BOUNDS = {name: (spec.lo, spec.hi, spec.unit) for name, spec in METRICS.items()}
_INT_TYPE = frozenset((int,))
_NUMBER_TYPES = frozenset((int, float))
# JSON uploads from this size (about 500 readings) go to a decoder process, if there is one.
DECODE_ELSEWHERE_BYTES = 64 * 1024


@dataclass(slots=True)
class CommittedBatch:
    """Readings that just became durable, for live views, alerts and hooks."""

    device_id: int
    org_id: int | None
    rows: list[StoredRow]
    channel_names: dict[int, str] = field(default_factory=dict)


Listener = Callable[[CommittedBatch], Awaitable[None] | None]


def _value_problem(name: str, value: Any) -> str | None:
    bounds = _BOUNDS.get(name)
    if bounds is None:
        return f"unknown metric {name!r}"
    # The class test first: it is the fast path for the millions of plain floats.
    if (value.__class__ is not float and value.__class__ is not int) and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        return f"{name} must be a number, got {type(value).__name__}"
    lo, hi, unit = bounds
    if not lo <= value <= hi:  # NaN fails both comparisons
        if value != value or value in (float("inf"), float("-inf")):
            return f"{name} must be finite, got {value}"
        return f"{name}={value} outside plausible range {lo:g}..{hi:g} {unit}".rstrip()
    return None


def normalise(
    device_id: int,
    readings: Sequence[Reading],
    channels: ChannelDirectory,
    received_ms: int,
    indices: Sequence[int] | None = None,
) -> tuple[list[StoredRow], list[int], list[Rejection]]:
    """Validate and convert readings to stored rows.

    Returns (rows, index of each row's reading, rejections). ``indices`` gives each reading's
    position in the message or body it came from (default: its position in ``readings``).
    A reading is rejected whole
    when any of its values is unusable: half a reading would make a misleading record.
    """
    rows: list[StoredRow] = []
    where: list[int] = []
    rejected: list[Rejection] = []
    channel_ids: dict[str, int] = {}
    lo_ts, hi_ts = MIN_TS_MS, received_ms + MAX_FUTURE_MS
    for i, reading in enumerate(readings):
        index = i if indices is None else indices[i]
        values = reading.values
        if not values:
            rejected.append(Rejection(index, "reading has no metric values"))
            continue
        ts = received_ms if reading.ts_ms is None else reading.ts_ms
        if not lo_ts <= ts <= hi_ts:
            reason = (
                f"timestamp {ts} is before 2000-01-01"
                if ts < lo_ts
                else f"timestamp {ts} is more than 5 min in the future"
            )
            rejected.append(Rejection(index, reason))
            continue
        problem = None
        extra: dict[str, float] | None = None
        for name, value in values.items():
            problem = _value_problem(name, value)
            if problem is not None:
                break
            if name not in _CORE_SET:
                if extra is None:
                    extra = {}
                extra[name] = value
        if problem is not None:
            rejected.append(Rejection(index, problem))
            continue
        name = reading.channel or DEFAULT_CHANNEL
        ch = channel_ids.get(name)
        if ch is None:
            try:
                ch = channels.resolve_channel(device_id, name)
            except InvalidInput as exc:
                rejected.append(Rejection(index, str(exc)))
                continue
            channel_ids[name] = ch
        p = values.get("power_w")
        e = values.get("energy_wh")
        v = values.get("voltage_v")
        a = values.get("current_a")
        rows.append(
            StoredRow(
                ch,
                int(ts),
                None if p is None else round(p * 1000),
                None if e is None else round(e * 1000),
                None if v is None else round(v * 1000),
                None if a is None else round(a * 1000),
                None if extra is None else orjson.dumps(extra).decode(),
            )
        )
        where.append(index)
    return rows, where, rejected


class IngestPipeline:
    def __init__(
        self,
        store: ReadingStore,
        channels: ChannelDirectory,
        stats: IngestStats,
        *,
        queue_readings: int = 200_000,
        batch_readings: int = 20_000,
        decode_processes: int = 0,
    ) -> None:
        self.store = store
        self.channels = channels
        self.stats = stats
        self.queue_readings = queue_readings
        self.batch_readings = batch_readings
        self._queue: asyncio.Queue[tuple[list[StoredRow], asyncio.Future[list[int]]]] | None = None
        self._queued = 0
        self._space: asyncio.Condition | None = None
        self._writer: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._listeners: list[Listener] = []
        self.decode_processes = decode_processes
        self._decoders: ProcessPoolExecutor | None = None

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every committed batch (live stream, alerts, hooks)."""
        self._listeners.append(listener)

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._space = asyncio.Condition()
        self._writer = asyncio.create_task(self._write_loop(), name="ingest-writer")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._queue is not None and self._writer is not None:
            await self._queue.join()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        self._executor.shutdown(wait=True)
        if self._decoders is not None:
            self._decoders.shutdown(wait=True, cancel_futures=True)
            self._decoders = None

    @property
    def queued_readings(self) -> int:
        return self._queued

    async def ingest(
        self,
        device: dict[str, Any],
        readings: Sequence[Reading],
        *,
        indices: Sequence[int] | None = None,
        rejected: Sequence[Rejection] = (),
        received_ms: int | None = None,
    ) -> BatchResult:
        """Validate, store and announce ``readings`` of ``device``; answer once committed.

        ``rejected`` are what the decoder already refused, counted and reported with the rest.
        """
        received = now_ms() if received_ms is None else received_ms
        rows, _, bad = normalise(device["id"], readings, self.channels, received, indices)
        return await self.ingest_rows(device, rows, [*rejected, *bad])

    async def decode_json(self, body: bytes) -> UniformBatch | None:
        """A large JSON upload decoded and checked in a decoder process, when there are any.

        None when there are none, when the body is small (the round trip would cost more
        than it saves), or when it is not a uniform batch of valid readings: the caller then
        decodes it in-process, which also names every reason a reading is rejected.
        """
        if self.decode_processes <= 0 or len(body) < DECODE_ELSEWHERE_BYTES:
            return None
        if self._decoders is None:
            # Started on first use; "spawn": the server process has threads, forking it is
            # not safe.
            self._decoders = ProcessPoolExecutor(
                self.decode_processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_exit_with_parent,
                initargs=(os.getpid(),),
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._decoders, decode_uniform, body, now_ms())

    async def ingest_uniform(
        self, device: dict[str, Any], batch: UniformBatch
    ) -> BatchResult | None:
        """Store a batch ``decode_json`` made; None when one of its channels cannot be had
        (too many): the caller then takes the general path, which rejects just those."""
        rows = await asyncio.to_thread(batch.rows, device["id"], self.channels)
        if rows is None:
            return None
        return await self.ingest_rows(device, rows, ())

    async def ingest_objects(self, device: dict[str, Any], objects: list[Any]) -> BatchResult:
        """Ingest a parsed JSON array of native reading objects (the HTTP batch body)."""
        received = now_ms()
        # Checking and scaling a batch (numpy, and a registry read for its channels) runs in a
        # worker thread: the event loop keeps reading other uploads meanwhile.
        fast = await asyncio.to_thread(
            normalise_uniform, device["id"], objects, self.channels, received
        )
        if fast is not None:
            return await self.ingest_rows(device, *fast)
        from wattwatch.ingest.http import split_objects

        readings, indices, rejected = split_objects(objects)
        return await self.ingest(
            device, readings, indices=indices, rejected=rejected, received_ms=received
        )

    async def ingest_rows(
        self, device: dict[str, Any], rows: list[StoredRow], bad: Sequence[Rejection]
    ) -> BatchResult:
        """Store already normalised rows; ``bad`` are the rejections of the same batch."""
        result = BatchResult(rejected=sorted(bad, key=lambda r: r.index))
        self.stats.rejected(len(result.rejected))
        for rejection in result.rejected[:20]:
            log.info(
                "device %s: reading %d rejected: %s",
                device["uid"],
                rejection.index,
                rejection.reason,
            )
        if rows:
            duplicates = await self.submit(rows)
            result.duplicates = len(duplicates)
            result.accepted = len(rows) - len(duplicates)
            if duplicates:
                dup = set(duplicates)
                rows = [r for i, r in enumerate(rows) if i not in dup]
            await self._announce(CommittedBatch(device["id"], device.get("org_id"), rows))
        return result

    async def ingest_rows_many(
        self, items: Sequence[tuple[dict[str, Any], list[StoredRow]]]
    ) -> list[list[int]]:
        """Store normalised rows of many devices as one submission; return each item's
        duplicate indices. Each device's committed rows are announced once.

        For transports that gather many one-reading messages (MQTT): one queue slot and one
        future for the lot instead of one per message. Rejections are the caller's to count.
        """
        rows = [row for _, item_rows in items for row in item_rows]
        duplicates = await self.submit(rows) if rows else []
        per_item: list[list[int]] = []
        offset = 0
        it = iter(duplicates)
        dup = next(it, None)
        kept: dict[int, tuple[dict[str, Any], list[StoredRow]]] = {}
        for device, item_rows in items:
            end = offset + len(item_rows)
            mine: list[int] = []
            while dup is not None and dup < end:
                mine.append(dup - offset)
                dup = next(it, None)
            per_item.append(mine)
            offset = end
            fresh = item_rows
            if mine:
                drop = set(mine)
                fresh = [r for i, r in enumerate(item_rows) if i not in drop]
            if fresh:
                slot = kept.get(device["id"])
                if slot is None:
                    kept[device["id"]] = (device, list(fresh))
                else:
                    slot[1].extend(fresh)
        for device, device_rows in kept.values():
            await self._announce(CommittedBatch(device["id"], device.get("org_id"), device_rows))
        return per_item

    async def submit(self, rows: list[StoredRow]) -> list[int]:
        """Queue rows for the writer (waiting while the queue is full); return duplicates."""
        if self._queue is None or self._space is None:
            raise WattwatchError("ingest pipeline is not running")
        need = min(len(rows), self.queue_readings)
        async with self._space:
            await self._space.wait_for(lambda: self._queued + need <= self.queue_readings)
            self._queued += len(rows)
        self.stats.queue_depth(self._queued)
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        await self._queue.put((rows, future))
        return await future

    async def _announce(self, batch: CommittedBatch) -> None:
        for listener in self._listeners:
            try:
                outcome = listener(batch)
                if outcome is not None:
                    await outcome
            except Exception:  # a listener must never break ingest
                log.exception("ingest listener %r failed", listener)

    async def _write_loop(self) -> None:
        assert self._queue is not None and self._space is not None
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            jobs = [first]
            size = len(first[0])
            while size < self.batch_readings and not self._queue.empty():
                job = self._queue.get_nowait()
                jobs.append(job)
                size += len(job[0])
            rows: list[StoredRow] = []
            for job_rows, _ in jobs:
                rows.extend(job_rows)
            started = time.perf_counter()
            try:
                duplicates = await loop.run_in_executor(
                    self._executor, self.store.write_readings, rows
                )
            except Exception as exc:
                log.exception("store write of %d readings failed", len(rows))
                for _, future in jobs:
                    if not future.done():
                        future.set_exception(exc)
            else:
                self.stats.committed(
                    len(rows) - len(duplicates), len(duplicates), time.perf_counter() - started
                )
                offset = 0
                it = iter(duplicates)
                dup = next(it, None)
                for job_rows, future in jobs:
                    end = offset + len(job_rows)
                    mine: list[int] = []
                    while dup is not None and dup < end:
                        mine.append(dup - offset)
                        dup = next(it, None)
                    if not future.done():
                        future.set_result(mine)
                    offset = end
            finally:
                async with self._space:
                    self._queued -= size
                    self._space.notify_all()
                self.stats.queue_depth(self._queued)
                for _ in jobs:
                    self._queue.task_done()


@dataclass(slots=True)
class UniformBatch:
    """A uniform batch of reading objects, checked and scaled column-wise, before its channels
    are known (so a decoder process can make it): stored units, one entry per reading."""

    ts: list[int]
    scaled: list[list[int] | None]  # per core metric (CORE_METRICS order): mW, mWh, mV, mA
    names: list[str] | None  # each reading's channel; None: all on the default channel
    extra: list[str] | None  # each reading's other metrics as JSON; None: there are none

    def __len__(self) -> int:
        return len(self.ts)

    def rows(self, device_id: int, channels: ChannelDirectory) -> list[StoredRow] | None:
        """The stored rows (None when a channel cannot be resolved, e.g. one too many)."""
        n = len(self.ts)
        try:
            if self.names is None:
                ch_col = [channels.resolve_channel(device_id, DEFAULT_CHANNEL)] * n
            else:
                ids = {name: channels.resolve_channel(device_id, name) for name in set(self.names)}
                ch_col = [ids[name] for name in self.names]
        except InvalidInput:
            return None  # the general path rejects just those rows
        nothing: list[None] = [None] * n
        columns = [nothing if col is None else col for col in self.scaled]
        extra = nothing if self.extra is None else self.extra
        return list(zip(ch_col, self.ts, *columns, extra, strict=True))  # type: ignore[arg-type]


def _uniform_columns(objects: list[Any], received_ms: int) -> tuple[Any, ...] | None:
    """(metrics, ts, {metric: values}, names, ok) of a batch of same-shaped native reading
    objects, every check done column-wise; None when the batch is not of that shape."""
    import numpy as np

    if not objects or set(map(type, objects)) != {dict}:
        return None
    keys = list(objects[0])
    metrics = [k for k in keys if k not in ("ts", "channel")]
    if not metrics or any(m not in _BOUNDS for m in metrics) or "ts" not in keys:
        return None
    # Same number of keys everywhere + every key of the first present (KeyError below)
    # = the same key set everywhere. map/itemgetter keep these passes in C.
    if set(map(len, objects)) != {len(keys)}:
        return None
    try:
        raw = {m: list(map(itemgetter(m), objects)) for m in ("ts", *metrics)}
    except KeyError:
        return None
    # Only JSON numbers (ts: integers) take this path. numpy would read true as 1.0, "1.5"
    # as 1.5 and truncate a float ts; the general path scales or refuses those, naming why.
    if not set(map(type, raw["ts"])) <= _INT_TYPE or any(
        not set(map(type, col)) <= _NUMBER_TYPES for col in raw.values()
    ):
        return None
    try:
        ts = np.array(raw.pop("ts"), dtype=np.int64)
        columns = {m: np.array(col, dtype=np.float64) for m, col in raw.items()}
    except (TypeError, ValueError, OverflowError):
        return None
    ok = (ts >= MIN_TS_MS) & (ts <= received_ms + MAX_FUTURE_MS)
    for m, col in columns.items():
        lo, hi, _ = _BOUNDS[m]
        ok &= (col >= lo) & (col <= hi)  # NaN compares False
    names = list(map(itemgetter("channel"), objects)) if "channel" in keys else None
    if names is not None and (
        set(map(type, names)) != {str} or not all(0 < len(n) <= 64 for n in set(names))
    ):
        return None
    return metrics, ts, columns, names, ok


def _scaled(
    metrics: list[str],
    ts: Any,
    columns: dict[str, Any],
    names: list[str] | None,
    objects: list[Any],
) -> UniformBatch:
    import numpy as np

    scaled: list[list[int] | None] = [
        np.rint(columns[m] * 1000).astype(np.int64).tolist() if m in columns else None
        for m in CORE_METRICS
    ]
    extra_names = [m for m in metrics if m not in _CORE_SET]
    extra = (
        [orjson.dumps({m: o[m] for m in extra_names}).decode() for o in objects]
        if extra_names
        else None
    )
    return UniformBatch(ts.tolist(), scaled, names, extra)


def _exit_with_parent(parent_pid: int) -> None:
    """Decoder process start-up: exit as soon as the server process is gone. A process pool's
    worker waits for work forever on a pipe it holds both ends of, so a server killed with
    SIGKILL would leave it behind."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def decode_uniform(body: bytes, received_ms: int) -> UniformBatch | None:
    """A JSON array body whose readings are all same-shaped and valid, decoded and scaled;
    None for anything else (invalid JSON, another shape, a reading to reject), which the
    caller then decodes itself and answers with every reason. Pure: runs in a decoder
    process (``IngestPipeline(decode_processes=N)``)."""
    from wattwatch.ingest.http import BodyError, json_items

    try:
        objects = json_items(orjson.loads(body))
    except (orjson.JSONDecodeError, BodyError):
        return None
    found = _uniform_columns(objects, received_ms)
    if found is None:
        return None
    metrics, ts, columns, names, ok = found
    if not ok.all():
        return None
    return _scaled(metrics, ts, columns, names, objects)


def normalise_uniform(
    device_id: int,
    objects: list[Any],
    channels: ChannelDirectory,
    received_ms: int,
) -> tuple[list[StoredRow], list[Rejection]] | None:
    """Columnar fast path of ``normalise`` for a batch of same-shaped native reading objects.

    Uploads from firmware and collectors are almost always uniform: every object has the same
    keys, integer ``ts`` and numeric metrics. Such a batch is checked and scaled with numpy in
    a few passes instead of a Python loop per value. Returns None when the batch is not of that
    shape (the caller then takes the general path); rows that fail a check are handed to the
    general path one by one so they get the same reasons.
    """
    import numpy as np

    found = _uniform_columns(objects, received_ms)
    if found is None:
        return None
    metrics, ts, columns, names, ok = found
    rejected: list[Rejection] = []
    bad = np.flatnonzero(~ok)
    if len(bad):
        from wattwatch.ingest.http import reading_from_object

        for i in bad.tolist():
            item = reading_from_object(objects[i], i)
            if isinstance(item, Rejection):
                rejected.append(item)
                continue
            _, _, why = normalise(device_id, [item], channels, received_ms, [i])
            rejected.extend(why)
        # from here on, the good rows only
        keep = np.flatnonzero(ok)
        keep_list = keep.tolist()
        objects = [objects[i] for i in keep_list]
        ts = ts[keep]
        columns = {m: col[keep] for m, col in columns.items()}
        if names is not None:
            names = [names[i] for i in keep_list]
    rows = _scaled(metrics, ts, columns, names, objects).rows(device_id, channels)
    if rows is None:
        return None
    return rows, rejected
