"""In-process fan-out of committed readings and events to live subscribers (the SSE stream).

The ingest pipeline calls ``LiveHub.on_batch`` after every commit; other services (alerts,
control, status) call ``LiveHub.publish``. Each subscriber owns a bounded queue: a subscriber
that cannot keep up loses its oldest events (and is told how many), it never slows ingest.
The hub also remembers the newest values of each channel and when each device was last heard
from, which is what "power now" and "last seen" on the dashboard read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

log = logging.getLogger(__name__)

# Events one subscriber may have waiting; past this its oldest are dropped.
SUBSCRIBER_QUEUE_EVENTS = 512
# Readings of one channel sent per committed batch: a bulk upload of a day of history is
# not a live view, so only its newest readings are streamed.
STREAM_POINTS_PER_CHANNEL = 100
# Scale of the stored core metrics (mW, mWh, mV, mA) back to canonical units.
_CORE_METRICS = ("power_w", "energy_wh", "voltage_v", "current_a")


class CommittedRows(Protocol):
    """What the hub needs of the pipeline's ``CommittedBatch``."""

    device_id: int
    org_id: int | None
    rows: list[Any]
    channel_names: dict[int, str]


class AlertLike(Protocol):
    """What the hub needs of the alert engine's ``AlertEvent``."""

    name: str
    org_id: int
    ts_ms: int
    alert: dict[str, Any]


@dataclass(slots=True)
class LiveEvent:
    """One event for subscribers of organisation ``org_id`` (``device_id`` None: org-wide)."""

    type: str
    org_id: int
    data: dict[str, Any]
    device_id: int | None = None

    def sse(self) -> bytes:
        """The event in text/event-stream framing."""
        # Events come from other services too: int keys and odd values must not end a stream.
        body = orjson.dumps(self.data, default=str, option=orjson.OPT_NON_STR_KEYS)
        return b"event: " + self.type.encode() + b"\ndata: " + body + b"\n\n"


@dataclass(eq=False)
class Subscription:
    org_id: int
    device_ids: frozenset[int] | None
    queue: asyncio.Queue[LiveEvent | None] = field(
        default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE_EVENTS)
    )
    dropped: int = 0

    def watches(self, org_id: int, device_id: int) -> bool:
        return org_id == self.org_id and (self.device_ids is None or device_id in self.device_ids)

    def wants(self, event: LiveEvent) -> bool:
        if event.org_id != self.org_id:
            return False
        return self.device_ids is None or event.device_id in self.device_ids


def stored_row_values(row: Any) -> dict[str, float]:
    """Canonical metric values of a stored row (channel_id, ts_ms, mW, mWh, mV, mA, extra)."""
    values: dict[str, float] = {}
    for name, raw in zip(_CORE_METRICS, row[2:6], strict=True):
        if raw is not None:
            values[name] = raw / 1000
    if row[6] is not None:
        values.update(orjson.loads(row[6]))
    return values


class LiveHub:
    """Fans committed readings and service events out to subscribers of the same organisation."""

    def __init__(self, channel_names: Callable[[int], dict[int, str]] | None = None) -> None:
        # device_id -> {channel_id: name}; looked up once per device, again on an unknown id.
        self._channel_names = channel_names
        self._names: dict[int, dict[int, str]] = {}
        self._subs: set[Subscription] = set()
        self._latest: dict[int, dict[int, Any]] = {}  # device -> channel id -> newest row
        self._last_seen_ms: dict[int, int] = {}
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- producers ------------------------------------------------------------------------
    def on_batch(self, batch: CommittedRows) -> None:
        """Pipeline listener: remember the newest values and stream the batch's readings.

        Runs after every commit on the event loop, so the common case is cheap: the newest
        row of each channel is kept as it is (names are looked up when someone asks), and
        points are only built when a subscriber watches the device.
        """
        if batch.org_id is None or not batch.rows:
            return
        device_id = batch.device_id
        if batch.channel_names:
            self._names.setdefault(device_id, {}).update(batch.channel_names)
        newest: dict[int, Any] = {}
        for row in batch.rows:
            seen = newest.get(row[0])
            if seen is None or row[1] >= seen[1]:
                newest[row[0]] = row
        latest = self._latest.setdefault(device_id, {})
        newest_ts = self._last_seen_ms.get(device_id, 0)
        for channel_id, row in newest.items():
            kept = latest.get(channel_id)
            if kept is None or row[1] >= kept[1]:
                latest[channel_id] = row
            newest_ts = max(newest_ts, row[1])
        self._last_seen_ms[device_id] = newest_ts
        if not any(sub.watches(batch.org_id, device_id) for sub in self._subs):
            return
        names = self._names_of(device_id, batch.rows)
        per_channel: dict[int, list[Any]] = {}
        for row in batch.rows:
            per_channel.setdefault(row[0], []).append(row)
        points: list[dict[str, Any]] = []
        truncated = 0
        for channel_id, rows in per_channel.items():
            rows.sort(key=lambda r: r[1])
            truncated += max(0, len(rows) - STREAM_POINTS_PER_CHANNEL)
            name = names.get(channel_id, str(channel_id))
            for row in rows[-STREAM_POINTS_PER_CHANNEL:]:
                points.append({"ts": row[1], "channel": name, **stored_row_values(row)})
        points.sort(key=lambda p: p["ts"])
        data: dict[str, Any] = {"device_id": device_id, "points": points}
        if truncated:
            data["truncated"] = truncated
        self.publish("readings", batch.org_id, data, device_id=device_id)

    def on_alert(self, event: AlertLike) -> None:
        """Alert engine listener: alert.raised, .updated, .acknowledged and .cleared."""
        device_id = event.alert.get("device_id")
        self.publish(
            event.name,
            event.org_id,
            {"ts": event.ts_ms, "alert": event.alert},
            device_id=device_id if isinstance(device_id, int) else None,
        )

    def publish(
        self, type_: str, org_id: int, data: dict[str, Any], *, device_id: int | None = None
    ) -> None:
        """Send an event (``alert.raised``, ``device.status``, ``command.result`` …) to
        subscribers of ``org_id``; with ``device_id``, to those watching that device or all
        devices, without, to those watching all devices. Safe to call from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:
                loop.call_soon_threadsafe(
                    functools.partial(self.publish, type_, org_id, data, device_id=device_id)
                )
                return
        event = LiveEvent(type_, org_id, data, device_id)
        for sub in self._subs:
            if not sub.wants(event):
                continue
            if sub.queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    sub.queue.get_nowait()
                sub.dropped += 1
            sub.queue.put_nowait(event)

    # -- consumers ------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def subscribe(
        self, org_id: int, device_ids: Iterable[int] | None = None
    ) -> AsyncIterator[Subscription]:
        sub = Subscription(org_id, None if device_ids is None else frozenset(device_ids))
        if self._closed:
            sub.queue.put_nowait(None)
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def open(self) -> None:
        """Accept subscriptions (again, after ``close``); events published from other threads
        are handed to the running loop."""
        self._closed = False
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    def close(self) -> None:
        """End every subscription (server shutdown); later subscriptions end at once."""
        self._closed = True
        for sub in self._subs:
            if sub.queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    sub.queue.get_nowait()
            sub.queue.put_nowait(None)

    # -- what is known now ----------------------------------------------------------------
    def latest(self, device_id: int) -> dict[str, dict[str, Any]]:
        """The newest committed reading of each channel of the device since the server
        started, by channel name."""
        rows = list(self._latest.get(device_id, {}).values())
        names = self._names_of(device_id, rows)
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            name = names.get(row[0], str(row[0]))
            out[name] = {"ts": row[1], "channel": name, **stored_row_values(row)}
        return out

    def last_seen_ms(self, device_id: int) -> int | None:
        return self._last_seen_ms.get(device_id)

    def _names_of(self, device_id: int, rows: list[Any]) -> dict[int, str]:
        names = self._names.get(device_id, {})
        if any(row[0] not in names for row in rows) and self._channel_names is not None:
            try:
                names = self._channel_names(device_id)
            except Exception:  # a lookup failure must not break ingest; ids stand in
                log.exception("channel names of device %s", device_id)
            self._names[device_id] = names
        return names
