"""The alert engine: evaluates rules as batches commit, keeps open alerts, persists transitions.

Evaluation is incremental and in memory: the pipeline hands every ``CommittedBatch`` to
``on_batch``, which routes each channel's rows to the rules that watch that channel (an index
built on first sight of the channel) and steps each rule's per-target state. Nothing is
re-queried per batch. Transitions (raised, updated, cleared) go to an outbox that a background
task writes to the store and announces to listeners (hooks, notifiers), so a slow database or
receiver never holds up ingest. Time for offline detection comes from an injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from wattwatch.alerts.conditions import LocalDays
from wattwatch.alerts.runtimes import AnomalyFinding as AnomalyFinding
from wattwatch.alerts.runtimes import (
    AnomalyRuntime,
    Columns,
    DeviceInfo,
    EnergyBudgetRuntime,
    FindingLike,
    OfflineRuntime,
    RuleRuntime,
    make_runtime,
)
from wattwatch.domain import now_ms
from wattwatch.store.alerts import SqlAlertStore
from wattwatch.store.base import ReadingStore, StoredRow

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from wattwatch.ingest.pipeline import CommittedBatch
    from wattwatch.store.registry import SqlRegistry

log = logging.getLogger(__name__)

Clock = Callable[[], int]
# A repeat trigger of an open alert is written to the store at most this often (reading
# time); its count and latest value are kept in memory in between.
UPDATE_EVERY_MS = 60_000
# How often the background task checks clock-driven rules (offline, anomaly expiry, day end).
TICK_S = 1.0
# How often it looks for rules changed by another process (the CLI, another API replica).
RULES_POLL_S = 5.0
# How often devices are looked up again (a device moved to another site changes its rules).
DEVICES_REFRESH_S = 600.0


@dataclass(slots=True)
class OpenAlert:
    """An alert not cleared yet, as the engine holds it; ``alert_id`` once it is stored."""

    rule_id: int
    org_id: int
    target: str
    device_id: int | None
    channel: str | None
    kind: str
    severity: str
    message: str
    value: Any
    details: dict[str, Any]
    raised_ms: int
    updated_ms: int
    count: int = 1
    alert_id: int | None = None
    state: str = "active"
    persisted_ms: int = 0
    cleared_ms: int | None = None
    rule_name: str = ""

    def record(self) -> dict[str, Any]:
        return {
            "id": self.alert_id,
            "rule_id": self.rule_id,
            "rule_name": self.rule_name,
            "org_id": self.org_id,
            "target": self.target,
            "device_id": self.device_id,
            "channel": self.channel,
            "kind": self.kind,
            "severity": self.severity,
            "state": self.state,
            "message": self.message,
            "value": self.value,
            "details": self.details,
            "count": self.count,
            "raised_ms": self.raised_ms,
            "updated_ms": self.updated_ms,
            "cleared_ms": self.cleared_ms,
        }


@dataclass(slots=True)
class AlertEvent:
    """What listeners hear: ``alert.raised`` / ``.updated`` / ``.acknowledged`` / ``.cleared``."""

    name: str
    org_id: int
    ts_ms: int
    alert: dict[str, Any]
    notify: list[dict[str, Any]] = field(default_factory=list)


AlertListener = Callable[[AlertEvent], None]


@dataclass
class _Loaded:
    runtimes: dict[int, RuleRuntime]
    open_alerts: list[dict[str, Any]]
    devices: dict[int, DeviceInfo]
    channels: dict[int, tuple[int, str, bool]]


class AlertEngine:
    def __init__(
        self,
        store: SqlAlertStore,
        registry: SqlRegistry,
        readings: ReadingStore | None = None,
        *,
        clock: Clock = now_ms,
        tick_s: float = TICK_S,
    ) -> None:
        self.store = store
        self.registry = registry
        self.readings = readings
        self.clock = clock
        self.tick_s = tick_s
        self.runtimes: dict[int, RuleRuntime] = {}
        self._batch_rules: list[RuleRuntime] = []
        self._offline: list[OfflineRuntime] = []
        self._anomaly: list[AnomalyRuntime] = []
        self._clocked: list[RuleRuntime] = []
        self._index: dict[int, list[RuleRuntime]] = {}
        self._channels: dict[int, tuple[int, str, bool]] = {}
        self._by_scope: dict[tuple[str, int | None], list[RuleRuntime]] = {}
        self._offline_scope: dict[tuple[str, int | None], list[RuleRuntime]] = {}
        self._devices: dict[int, DeviceInfo] = {}
        self._watched: set[int] = set()
        self.last_seen: dict[int, int] = {}
        self.down_since: dict[int, int] = {}
        self.open: dict[tuple[int, str], OpenAlert] = {}
        self._outbox: deque[tuple[str, OpenAlert]] = deque()
        self._listeners: list[AlertListener] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._busy = False
        self._reload_lock: asyncio.Lock | None = None
        self._rules_version: tuple[int, int, int] | None = None

    def add_listener(self, listener: AlertListener) -> None:
        self._listeners.append(listener)

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self, *, background: bool = True) -> None:
        """Load rules and open alerts; with ``background``, run the ticker and the writer."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        await self.reload(resume=True)
        self._tasks = [asyncio.create_task(self._write_loop(), name="alerts-writer")]
        if background:
            self._tasks.append(asyncio.create_task(self._tick_loop(), name="alerts-ticker"))

    async def stop(self) -> None:
        await self.drain()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def drain(self) -> None:
        """Wait until every transition so far is stored and announced."""
        while self._outbox or self._busy:
            await asyncio.sleep(0.005)

    def request_reload(self, timeout_s: float = 30.0) -> None:
        """Reload rules after a change; blocks a caller thread until done (no-op if stopped)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return
        future = asyncio.run_coroutine_threadsafe(self.reload(), loop)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            future.result(timeout_s)

    async def reload(self, *, resume: bool = False) -> None:
        """Re-read the rules; a rule that did not change keeps its state."""
        assert self._reload_lock is not None
        async with self._reload_lock:
            loaded = await asyncio.to_thread(self._load, resume)
            self._install(loaded, resume)

    def _load(self, resume: bool) -> _Loaded:
        """Read the rules and the devices and channels they route by; build the runtimes of
        rules new or changed since the last load (an offline rule's watch list, a budget's
        energy so far today). Runs in a worker thread; ``_install`` puts it in place."""
        self._rules_version = self.store.rules_version()
        rules = self.store.enabled_rules()
        found, chans = self.store.device_directory(sorted({r["org_id"] for r in rules}))
        directory = {
            d["id"]: DeviceInfo(
                d["id"], d["org_id"], d["site_id"], d["area_id"], d["name"], d["timezone"] or "UTC"
            )
            for d in found
        }
        channels = {c["id"]: (c["device_id"], c["name"], bool(c["submeter"])) for c in chans}
        runtimes: dict[int, RuleRuntime] = {}
        for rec in rules:
            old = self.runtimes.get(rec["id"])
            if old is not None and old.updated_ms == rec["updated_ms"]:
                runtimes[rec["id"]] = old  # unchanged: keeps its state
                continue
            try:
                rt = make_runtime(rec)
            except ValueError:
                log.exception("alert rule %s cannot be evaluated; skipped", rec["id"])
                continue
            runtimes[rec["id"]] = rt
            if isinstance(rt, EnergyBudgetRuntime):
                self._seed(rt, directory, channels)
        open_alerts = self.store.open_alerts() if resume else []
        return _Loaded(runtimes, open_alerts, directory, channels)

    def _seed(
        self,
        rt: EnergyBudgetRuntime,
        directory: dict[int, DeviceInfo],
        channels: dict[int, tuple[int, str, bool]],
    ) -> None:
        """A budget rule starts from the energy already stored for today in its scope."""
        ids = [
            ch
            for ch, (dev_id, name, submeter) in channels.items()
            if dev_id in directory and rt.matches(directory[dev_id], name, submeter)
        ]
        tz = directory[channels[ids[0]][0]].timezone if ids else "UTC"
        if rt.rule.site_id is not None and not ids:
            tz = self.registry.get_site(rt.org_id, rt.rule.site_id)["timezone"]
        rt.days = LocalDays(tz)
        start, end = rt.days.bounds(self.clock())
        total = 0.0
        if ids and self.readings is not None:
            total = float(sum(e for _, _, _, e in self.readings.daily_energy(ids, start, end)))
        rt.seed(start, total)

    @staticmethod
    def _info(device: dict[str, Any], sites: dict[int, dict[str, Any]]) -> DeviceInfo:
        site = sites.get(device["site_id"]) if device["site_id"] is not None else None
        return DeviceInfo(
            device["id"],
            device["org_id"],
            device["site_id"],
            device["area_id"],
            device["name"],
            site["timezone"] if site else "UTC",
        )

    def _install(self, loaded: _Loaded, resume: bool) -> None:
        now = self.clock()
        runtimes = loaded.runtimes
        self.runtimes = runtimes
        self._batch_rules = [rt for rt in runtimes.values() if rt.from_batches]
        self._offline = [rt for rt in runtimes.values() if isinstance(rt, OfflineRuntime)]
        self._anomaly = [rt for rt in runtimes.values() if isinstance(rt, AnomalyRuntime)]
        self._clocked = [
            rt
            for rt in runtimes.values()
            if isinstance(rt, OfflineRuntime | AnomalyRuntime | EnergyBudgetRuntime)
        ]
        # Devices are looked up again too: one may have moved to another site or area.
        self.forget_devices()
        self._devices.update(loaded.devices)
        self._channels.update(loaded.channels)
        # Candidate rules by scope, so indexing a channel does not try every rule.
        self._by_scope = _by_scope(self._batch_rules)
        # Offline rules watch every device in scope, also those that never sent anything.
        self._offline_scope = _by_scope(self._offline)
        for dev in loaded.devices.values():
            self._watch(dev, now)
        # Alerts of rules that are gone or disabled are closed: nothing would ever clear them.
        for key, alert in list(self.open.items()):
            if alert.rule_id not in runtimes:
                self.clear_alert(None, key[1], now, alert.value, rule_id=alert.rule_id)
        if resume:
            for rec in loaded.open_alerts:
                self._resume(rec, now)

    def _resume(self, rec: dict[str, Any], now: int) -> None:
        alert = OpenAlert(
            rule_id=rec["rule_id"],
            org_id=rec["org_id"],
            target=rec["target"],
            device_id=rec["device_id"],
            channel=rec["channel"],
            kind=rec["kind"],
            severity=rec["severity"],
            message=rec["message"],
            value=rec["value"],
            details=rec["details"],
            raised_ms=rec["raised_ms"],
            updated_ms=rec["updated_ms"],
            count=rec["count"],
            alert_id=rec["id"],
            state=rec["state"],
            persisted_ms=rec["updated_ms"],
        )
        rt = self.runtimes.get(alert.rule_id)
        self.open[(alert.rule_id, alert.target)] = alert
        if rt is None or not rt.resume(self, alert):
            # Its state cannot be rebuilt (rule gone, day over, profile not learned again).
            self.clear_alert(rt, alert.target, now, alert.value, rule_id=alert.rule_id)

    # -- inputs ---------------------------------------------------------------------------
    def on_batch(self, batch: CommittedBatch) -> None:
        """Pipeline listener: evaluate the rules watching the batch's channels."""
        now = self.clock()
        device_id = batch.device_id
        self.last_seen[device_id] = now
        if self._offline:
            self._device_alive(device_id, now)
        if not self._batch_rules or not batch.rows:
            return
        rows_in = batch.rows
        channel_ids = set(map(_CHANNEL, rows_in))
        groups: dict[int, list[StoredRow]]
        if len(channel_ids) == 1:  # most batches: one channel, no copy
            groups = {rows_in[0][0]: rows_in}
        else:
            groups = {ch: [] for ch in channel_ids}
            for row in rows_in:
                groups[row[0]].append(row)
        for ch, rows in groups.items():
            runtimes = self._index.get(ch)
            if runtimes is None:
                runtimes = self._index_channel(ch, device_id)
            if not runtimes:
                continue
            dev = self._devices[device_id]
            cols = Columns(rows)
            name = self._channels[ch][1]
            for rt in runtimes:
                try:
                    rt.feed(self, dev, name, cols)
                except Exception:  # one broken rule must not silence the others
                    log.exception("alert rule %s failed on channel %s", rt.id, ch)

    def _device_alive(self, device_id: int, now: int) -> None:
        self.down_since.pop(device_id, None)
        if device_id not in self._watched:
            self._watched.add(device_id)
            dev = self._device(device_id)
            if dev is not None:
                self._watch(dev, now)
        for rt in self._offline:
            rt.seen(self, device_id, now)

    def _watch(self, dev: DeviceInfo, now: int) -> None:
        """Put the device on the watch list of the offline rules whose scope holds it."""
        for rt in _candidates(self._offline_scope, dev):
            if isinstance(rt, OfflineRuntime) and rt.matches(dev, None):
                rt.watch(dev, now)

    def device_status(self, device_id: int, online: bool, ts_ms: int | None = None) -> None:
        """A status message / LWT: offline starts the offline clock, online stops it.

        Safe to call from any thread.
        """
        loop = self._loop
        if loop is not None and loop.is_running() and not _on_loop(loop):
            loop.call_soon_threadsafe(self.device_status, device_id, online, ts_ms)
            return
        now = self.clock() if ts_ms is None else ts_ms
        if online:
            self.last_seen[device_id] = now
            self._device_alive(device_id, now)
        else:
            self.down_since.setdefault(device_id, now)

    def raise_anomaly(self, device_id: int, finding: FindingLike) -> None:
        """The AI anomaly detector's entry point; safe to call from any thread."""
        loop = self._loop
        if loop is not None and loop.is_running() and not _on_loop(loop):
            loop.call_soon_threadsafe(self.raise_anomaly, device_id, finding)
            return
        dev = self._device(device_id)
        if dev is None:
            return
        now = self.clock()
        for rt in self._anomaly:
            if rt.matches(dev, getattr(finding, "channel", None)) and rt.wants(finding):
                rt.finding(self, dev, finding, now)

    def tick(self, now: int | None = None) -> None:
        """Check clock-driven rules (offline, anomaly expiry, budget day end)."""
        at = self.clock() if now is None else now
        for rt in self._clocked:
            try:
                rt.tick(self, at)
            except Exception:
                log.exception("alert rule %s failed on tick", rt.id)

    # -- registry lookups (cached) --------------------------------------------------------
    def _device(self, device_id: int) -> DeviceInfo | None:
        dev = self._devices.get(device_id)
        if dev is None:
            rec = self.registry.device_by(id=device_id)
            if rec is None:
                return None
            sites = {}
            if rec["site_id"] is not None and rec["org_id"] is not None:
                sites = {rec["site_id"]: self.registry.get_site(rec["org_id"], rec["site_id"])}
            dev = self._devices[device_id] = self._info(rec, sites)
        return dev

    def _index_channel(self, ch: int, device_id: int) -> list[RuleRuntime]:
        info = self._channels.get(ch)
        if info is None:
            for c in self.registry.list_channels(device_id):
                self._channels[c["id"]] = (device_id, c["name"], bool(c["submeter"]))
            info = self._channels.get(ch, (device_id, f"#{ch}", False))
            self._channels[ch] = info
        dev = self._device(device_id)
        found: list[RuleRuntime] = []
        if dev is not None:
            found = [rt for rt in _candidates(self._by_scope, dev) if rt.matches(dev, *info[1:])]
            found.sort(key=lambda rt: rt.id)
        self._index[ch] = found
        return found

    def forget_devices(self) -> None:
        """Registry changed (device moved, renamed): look devices up again."""
        self._devices.clear()
        self._channels.clear()
        self._index.clear()
        self._watched.clear()

    # -- transitions (called by rule runtimes) --------------------------------------------
    def raise_alert(
        self,
        rt: RuleRuntime,
        target: str,
        dev: DeviceInfo | None,
        channel: str | None,
        ts: int,
        value: Any,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        key = (rt.id, target)
        if key in self.open:  # open already (e.g. resumed): a repeat trigger
            self.update_alert(rt, target, ts, value, force=True, details=details)
            return
        alert = OpenAlert(
            rule_id=rt.id,
            org_id=rt.org_id,
            target=target,
            device_id=None if dev is None else dev.id,
            channel=channel,
            kind=rt.rule.kind,
            severity=rt.severity,
            message=message,
            value=value,
            details=details or {},
            raised_ms=ts,
            updated_ms=ts,
            persisted_ms=ts,
            rule_name=rt.name,
        )
        self.open[key] = alert
        self._post("raised", alert)

    def update_alert(
        self,
        rt: RuleRuntime,
        target: str,
        ts: int,
        value: Any,
        *,
        force: bool = False,
        details: dict[str, Any] | None = None,
    ) -> None:
        alert = self.open.get((rt.id, target))
        if alert is None:
            return
        alert.count += 1
        alert.value = value
        alert.updated_ms = max(alert.updated_ms, ts)
        if details:
            alert.details = {**alert.details, **details}
        if force or ts - alert.persisted_ms >= UPDATE_EVERY_MS:
            alert.persisted_ms = ts
            self._post("updated", alert)

    def clear_alert(
        self,
        rt: RuleRuntime | None,
        target: str,
        ts: int,
        value: Any,
        *,
        rule_id: int | None = None,
    ) -> None:
        key = (rt.id if rt is not None else rule_id or 0, target)
        alert = self.open.pop(key, None)
        if alert is None:
            return
        if value is not None:
            alert.value = value
        alert.cleared_ms = max(ts, alert.raised_ms)
        alert.updated_ms = max(alert.updated_ms, alert.cleared_ms)
        alert.state = "cleared"
        self._post("cleared", alert)

    def acknowledged(self, alert_id: int) -> None:
        """The API acknowledged an alert: later events of it say so."""
        for alert in list(self.open.values()):  # called from an API worker thread
            if alert.alert_id == alert_id:
                alert.state = "acknowledged"

    def _post(self, op: str, alert: OpenAlert) -> None:
        self._outbox.append((op, alert))
        if self._wake is not None:
            self._wake.set()

    def emit(self, event: AlertEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("alert listener %r failed", listener)

    # -- background -----------------------------------------------------------------------
    async def _write_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                self._busy = True
                # Everything queued goes in one transaction: the SQLite write lock is shared
                # with ingest, so a burst of transitions must not take it once each.
                ops = [self._outbox.popleft() for _ in range(min(len(self._outbox), 1000))]
                try:
                    events = await asyncio.to_thread(self._persist_all, ops)
                except Exception:
                    log.exception("storing %d alert transitions", len(ops))
                    for op, alert in ops:  # rolled back: those ids do not exist
                        if op == "raised":
                            alert.alert_id = None
                    events = []
                finally:
                    self._busy = bool(self._outbox)
                for event in events:
                    self.emit(event)
            self._busy = False

    def _persist_all(self, ops: list[tuple[str, OpenAlert]]) -> list[AlertEvent]:
        with self.store.transaction() as conn:
            events = [self._persist(op, alert, conn) for op, alert in ops]
        return [e for e in events if e is not None]

    def _persist(self, op: str, alert: OpenAlert, conn: Connection) -> AlertEvent | None:
        rt = self.runtimes.get(alert.rule_id)
        notify = rt.notify if rt is not None else []
        if not alert.rule_name and rt is not None:
            alert.rule_name = rt.name
        if op == "raised":
            alert.alert_id = self.store.insert_alert(
                {
                    "org_id": alert.org_id,
                    "rule_id": alert.rule_id,
                    "target": alert.target,
                    "device_id": alert.device_id,
                    "channel": alert.channel,
                    "kind": alert.kind,
                    "severity": alert.severity,
                    "state": "active",
                    "message": alert.message,
                    "value": alert.value,
                    "details": alert.details,
                    "count": alert.count,
                    "raised_ms": alert.raised_ms,
                    "updated_ms": alert.updated_ms,
                },
                {"ts_ms": alert.raised_ms, "action": "raised", "details": {"value": alert.value}},
                conn,
            )
        elif alert.alert_id is None:
            return None  # its insert failed; nothing to update
        elif op == "updated":
            self.store.update_alert(
                alert.alert_id,
                {
                    "count": alert.count,
                    "value": alert.value,
                    "details": alert.details,
                    "updated_ms": alert.updated_ms,
                },
                {"ts_ms": alert.updated_ms, "action": "updated", "details": {"value": alert.value}},
                conn,
            )
        else:
            self.store.update_alert(
                alert.alert_id,
                {
                    "state": "cleared",
                    "count": alert.count,
                    "value": alert.value,
                    "updated_ms": alert.updated_ms,
                    "cleared_ms": alert.cleared_ms,
                },
                {"ts_ms": alert.cleared_ms, "action": "cleared", "details": {"value": alert.value}},
                conn,
            )
        return AlertEvent(
            f"alert.{op}", alert.org_id, alert.updated_ms, alert.record(), list(notify)
        )

    async def _tick_loop(self) -> None:
        polled = refreshed = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self.tick_s)
            self.tick()
            if asyncio.get_running_loop().time() - refreshed >= DEVICES_REFRESH_S:
                refreshed = asyncio.get_running_loop().time()
                self.forget_devices()
            if asyncio.get_running_loop().time() - polled >= RULES_POLL_S:
                polled = asyncio.get_running_loop().time()
                try:
                    version = await asyncio.to_thread(self.store.rules_version)
                    if version != self._rules_version:
                        await self.reload()
                except Exception:
                    log.exception("checking for changed alert rules")


_CHANNEL = itemgetter(0)


def _candidates(
    index: dict[tuple[str, int | None], list[RuleRuntime]], dev: DeviceInfo
) -> Iterator[RuleRuntime]:
    """Rules of ``index`` whose scope could hold ``dev`` (``matches`` has the last word)."""
    for scope in (("device", dev.id), ("area", dev.area_id), ("site", dev.site_id)):
        yield from index.get(scope, ())


def _by_scope(runtimes: list[Any]) -> dict[tuple[str, int | None], list[RuleRuntime]]:
    """Rules by what they watch: ("device", id), ("area", id) or ("site", id)."""
    found: dict[tuple[str, int | None], list[RuleRuntime]] = {}
    for rt in runtimes:
        r = rt.rule
        if r.device_id is not None:
            scope = ("device", r.device_id)
        elif r.area_id is not None:
            scope = ("area", r.area_id)
        else:
            scope = ("site", r.site_id)
        found.setdefault(scope, []).append(rt)
    return found


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
