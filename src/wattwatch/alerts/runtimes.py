"""Rule runtimes: one class per rule kind, holding its state per target and stepping it.

The engine hands each runtime the rows of one channel of a committed batch (``feed``) or the
time (``tick``); a runtime calls back ``raise_alert``, ``update_alert`` and ``clear_alert``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import orjson

from wattwatch.alerts.conditions import (
    CLEAR,
    RAISE,
    UPDATE,
    Debounce,
    HourlyProfile,
    LocalDays,
    LocalHour,
    OpenHours,
)
from wattwatch.alerts.rules import (
    FINDING_SEVERITY_ORDER,
    AfterHoursRule,
    AnomalyRule,
    EnergyBudgetRule,
    OfflineRule,
    RangeRule,
    Rule,
    SuddenChangeRule,
    ThresholdRule,
    rule_from_record,
)
from wattwatch.store.base import MAX_INTEGRATION_GAP_MS, StoredRow

if TYPE_CHECKING:
    from wattwatch.alerts.engine import AlertEngine, OpenAlert

_CORE_INDEX = {"power_w": 2, "energy_wh": 3, "voltage_v": 4, "current_a": 5}


@dataclass(slots=True)
class DeviceInfo:
    id: int
    org_id: int | None
    site_id: int | None
    area_id: int | None
    name: str
    timezone: str


class FindingLike(Protocol):
    """What ``raise_anomaly`` needs of a finding (``wattwatch.ai.anomaly.Finding`` fits)."""

    @property
    def kind(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def magnitude(self) -> float: ...
    @property
    def explanation(self) -> str: ...
    @property
    def detected_at(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class AnomalyFinding:
    """A finding for ``raise_anomaly`` from any detector; ``detected_at`` in epoch ms."""

    kind: str
    severity: str
    magnitude: float
    explanation: str
    detected_at: int
    channel: str | None = None


def _ms(when: Any) -> int:
    if isinstance(when, int | float):
        return int(when)
    return int(when.timestamp() * 1000)  # datetime, pandas.Timestamp


_TS = itemgetter(1)
_ENERGY = itemgetter(3)


class Columns:
    """One channel's rows of a batch, sorted by time, read out per metric on demand."""

    __slots__ = ("_cache", "rows", "ts")

    def __init__(self, rows: list[StoredRow]) -> None:
        ts: list[int] = list(map(_TS, rows))
        if ts != sorted(ts):  # almost always in order already: checked at C speed
            rows = sorted(rows, key=_TS)
            ts = list(map(_TS, rows))
        self.rows = rows
        self.ts = ts
        self._cache: dict[str, tuple[list[int], list[float]]] = {}

    def get(self, metric: str) -> tuple[list[int], list[float]]:
        found = self._cache.get(metric)
        if found is not None:
            return found
        i = _CORE_INDEX.get(metric)
        ts: list[int]
        vals: list[float]
        if i is not None:
            raw: list[Any] = list(map(itemgetter(i), self.rows))
            if None in raw:
                pairs = [(r[1], r[i] / 1000) for r in self.rows if r[i] is not None]  # type: ignore[operator]
                ts, vals = [p[0] for p in pairs], [p[1] for p in pairs]
            else:
                ts, vals = self.ts, [v / 1000 for v in raw]
        else:
            ts, vals = [], []
            for r in self.rows:
                if r[6] is not None:
                    value = orjson.loads(r[6]).get(metric)
                    if value is not None:
                        ts.append(r[1])
                        vals.append(float(value))
        self._cache[metric] = (ts, vals)
        return ts, vals


def _fmt(value: float) -> str:
    return f"{value:,.6g}"


class RuleRuntime:
    """A rule being evaluated: its definition and its state per target."""

    from_batches = True

    def __init__(self, record: dict[str, Any], rule: Rule) -> None:
        self.id: int = record["id"]
        self.org_id: int = record["org_id"]
        self.updated_ms: int = record["updated_ms"]
        self.name = rule.name
        self.severity = str(rule.severity)
        self.notify: list[dict[str, Any]] = list(record["notify"])
        self.rule = rule

    def matches(self, dev: DeviceInfo, channel: str | None, submeter: bool = False) -> bool:
        if dev.org_id != self.org_id:
            return False
        r = self.rule
        if channel is not None and r.channel is not None and channel != r.channel:
            return False
        if r.device_id is not None:
            return dev.id == r.device_id
        if r.area_id is not None:
            return dev.area_id == r.area_id
        return dev.site_id == r.site_id

    def feed(self, eng: AlertEngine, dev: DeviceInfo, channel: str, cols: Columns) -> None:
        pass

    def tick(self, eng: AlertEngine, now: int) -> None:
        pass

    def resume(self, eng: AlertEngine, alert: OpenAlert) -> bool:
        """Take over an alert open before a restart; False when it cannot be continued."""
        return False


class LevelRuntime(RuleRuntime):
    """threshold, range and after_hours: a level condition on one metric per channel."""

    def __init__(self, record: dict[str, Any], rule: Rule) -> None:
        super().__init__(record, rule)
        assert isinstance(rule, ThresholdRule | RangeRule | AfterHoursRule)
        self.metric = rule.metric if not isinstance(rule, AfterHoursRule) else "power_w"
        self.for_ms = int(rule.for_s * 1000)
        self.clear_for_ms = int(getattr(rule, "clear_for_s", 0) * 1000)
        self.band = rule.band()
        self.targets: dict[str, Debounce] = {}
        self._hours: dict[str, OpenHours] = {}

    def _state(self, key: str) -> Debounce:
        st = self.targets.get(key)
        if st is None:
            st = self.targets[key] = Debounce(self.for_ms, self.clear_for_ms)
        return st

    def _quiet(self, st: Debounce, lo: float, hi: float) -> bool:
        """True when no value in [lo, hi] can change the state (the common case)."""
        r = self.rule
        if isinstance(r, ThresholdRule):
            if r.op in (">", ">="):
                any_bad = hi > r.value or (r.op == ">=" and hi == r.value)
                all_bad = lo > r.value or (r.op == ">=" and lo == r.value)
            else:
                any_bad = lo < r.value or (r.op == "<=" and lo == r.value)
                all_bad = hi < r.value or (r.op == "<=" and hi == r.value)
            if not st.active:
                return st.pending_since is None and not any_bad
            return st.was_bad and all_bad
        if not st.active and st.pending_since is None:
            if isinstance(r, RangeRule):
                return lo >= r.min and hi <= r.max
            assert isinstance(r, AfterHoursRule)
            return hi <= r.value
        return False

    def _predicates(self, dev: DeviceInfo) -> Callable[[int, float], tuple[bool, bool]]:
        r = self.rule
        band = self.band
        if isinstance(r, ThresholdRule):
            limit = r.value
            if r.op == ">":
                return lambda t, v: (v > limit, v <= limit - band)
            if r.op == ">=":
                return lambda t, v: (v >= limit, v < limit - band)
            if r.op == "<":
                return lambda t, v: (v < limit, v >= limit + band)
            return lambda t, v: (v <= limit, v > limit + band)
        if isinstance(r, RangeRule):
            lo, hi = r.min, r.max
            return lambda t, v: (v < lo or v > hi, lo + band <= v <= hi - band)
        assert isinstance(r, AfterHoursRule)
        tz = r.timezone or dev.timezone
        hours = self._hours.get(tz)
        if hours is None:
            hours = self._hours[tz] = OpenHours(tz, r.open_hours, r.closed_dates)
        use = r.value

        def after_hours(t: int, v: float) -> tuple[bool, bool]:
            closed = not hours.is_open(t)
            return closed and v > use, not closed or v <= use - band

        return after_hours

    def feed(self, eng: AlertEngine, dev: DeviceInfo, channel: str, cols: Columns) -> None:
        ts, vals = cols.get(self.metric)
        if not ts:
            return
        key = f"{dev.id}/{channel}"
        st = self._state(key)
        start = 0
        if st.last_ts is not None and ts[0] <= st.last_ts:
            start = bisect_right(ts, st.last_ts)  # older readings came late: already judged
            if start == len(ts):
                return
        part = vals[start:] if start else vals
        if self._quiet(st, min(part), max(part)):
            st.last_ts = ts[-1]
            if st.active:
                st.clearing_since = None
            return
        judge = self._predicates(dev)
        step = st.step
        for i in range(start, len(ts)):
            t, v = ts[i], vals[i]
            bad, good = judge(t, v)
            # Rows that cannot change the state skip the state machine (``last_ts`` is set
            # below; a gap only matters while a duration is being timed).
            if st.active:
                if bad and st.was_bad:
                    continue
            elif not bad and st.pending_since is None:
                continue
            outcome = step(t, bad, good)
            if outcome == RAISE:
                eng.raise_alert(self, key, dev, channel, t, v, self.message(dev, channel, v))
            elif outcome == UPDATE:
                eng.update_alert(self, key, t, v)
            elif outcome == CLEAR:
                eng.clear_alert(self, key, t, v)
        st.last_ts = ts[-1]

    def message(self, dev: DeviceInfo, channel: str, v: float) -> str:
        r = self.rule
        where = f"{dev.name} ({channel})"
        if isinstance(r, ThresholdRule):
            held = f" for {_fmt(r.for_s)} s" if r.for_s else ""
            return f"{r.name}: {r.metric} {_fmt(v)} {r.op} {_fmt(r.value)}{held} on {where}"
        if isinstance(r, RangeRule):
            return f"{r.name}: {r.metric} {_fmt(v)} outside {_fmt(r.min)}–{_fmt(r.max)} on {where}"
        assert isinstance(r, AfterHoursRule)
        return f"{r.name}: {_fmt(v)} W in use outside open hours on {where}"

    def resume(self, eng: AlertEngine, alert: OpenAlert) -> bool:
        self._state(alert.target).resume_active()
        return True


MINUTE_MS = 60_000


@dataclass(slots=True)
class _Sudden:
    debounce: Debounce
    profile: HourlyProfile
    hours: LocalHour
    smooth: float = 0.0
    smooth_ts: int | None = None
    last_ts: int | None = None  # newest reading seen
    minute: int = -1  # the minute being summed (epoch minutes) ...
    minute_sum: float = 0.0  # ... its readings' sum and count
    minute_n: int = 0


class SuddenChangeRuntime(RuleRuntime):
    """sudden_change: the smoothed metric far from its usual level for the local hour.

    It works on minute means, not single readings: a minute is judged (and learned) once a
    reading of a later minute shows it is complete. That is what "usual level" means at
    this scale, it is steadier than 5-second readings, and it keeps the per-reading cost to
    a numpy sum.
    """

    def __init__(self, record: dict[str, Any], rule: Rule) -> None:
        super().__init__(record, rule)
        assert isinstance(rule, SuddenChangeRule)
        self.r = rule
        self.tau_ms = rule.window_s * 1000
        self.targets: dict[str, _Sudden] = {}

    def feed(self, eng: AlertEngine, dev: DeviceInfo, channel: str, cols: Columns) -> None:
        ts, vals = cols.get(self.r.metric)
        key = f"{dev.id}/{channel}"
        st = self.targets.get(key)
        if st is None:
            st = self.targets[key] = _Sudden(
                Debounce(int(self.r.for_s * 1000)), HourlyProfile(), LocalHour(dev.timezone)
            )
        start = 0
        if st.last_ts is not None and ts and ts[0] <= st.last_ts:
            start = bisect_right(ts, st.last_ts)  # already seen
        if start >= len(ts):
            return
        st.last_ts = ts[-1]
        t_arr = np.asarray(ts[start:], dtype=np.int64)
        v_arr = np.asarray(vals[start:], dtype=np.float64)
        minutes = t_arr // MINUTE_MS
        starts = np.concatenate(([0], np.flatnonzero(np.diff(minutes)) + 1))
        sums = np.add.reduceat(v_arr, starts)
        counts = np.diff(np.append(starts, len(v_arr)))
        for minute, total, n in zip(
            minutes[starts].tolist(), sums.tolist(), counts.tolist(), strict=True
        ):
            if minute == st.minute:
                st.minute_sum += total
                st.minute_n += n
                continue
            if st.minute_n:
                self._judge(eng, dev, channel, key, st, st.minute_sum / st.minute_n)
            st.minute, st.minute_sum, st.minute_n = minute, total, n

    def _judge(
        self, eng: AlertEngine, dev: DeviceInfo, channel: str, key: str, st: _Sudden, v: float
    ) -> None:
        """Step the rule with one complete minute's mean ``v``."""
        r, deb, prof = self.r, st.debounce, st.profile
        t = (st.minute + 1) * MINUTE_MS  # when the minute was complete
        if st.smooth_ts is None or t - st.smooth_ts > MAX_INTEGRATION_GAP_MS:
            st.smooth = v
        else:
            st.smooth += (1 - math.exp(-(t - st.smooth_ts) / self.tau_ms)) * (v - st.smooth)
        st.smooth_ts = t
        hour = st.hours.hour_of(t - 1)
        bad = good = False
        if prof.n[hour] >= r.min_samples:
            off = abs(st.smooth - prof.mean[hour])
            limit = max(r.factor * prof.spread(hour), r.min_delta)
            bad, good = off > limit, off <= limit / 2
        outcome = deb.step(t, bad, good)
        if outcome == RAISE:
            usual = prof.mean[hour]
            msg = (
                f"{r.name}: {r.metric} {_fmt(st.smooth)} on {dev.name} ({channel}), "
                f"usually {_fmt(usual)} at this hour"
            )
            eng.raise_alert(self, key, dev, channel, t, v, msg, {"usual": usual})
        elif outcome == UPDATE:
            eng.update_alert(self, key, t, v)
        elif outcome == CLEAR:
            eng.clear_alert(self, key, t, v)
        if not deb.active and deb.pending_since is None and not bad:
            prof.learn(hour, v)  # learn only from normal times


@dataclass(slots=True)
class _Budget:
    day: date | None = None
    day_end_ms: int = 0
    total_mwh: float = 0.0
    active: bool = False
    prev: dict[int, tuple[int, int | None, int | None]] = field(default_factory=dict)


def energy_delta_mwh(prev: tuple[int, int | None, int | None], row: StoredRow) -> float:
    """Energy used between two readings: the counter difference, else power integrated."""
    ts0, p0, e0 = prev
    if e0 is not None and row[3] is not None and row[3] >= e0:
        return float(row[3] - e0)
    dt = row[1] - ts0
    if p0 is not None and row[2] is not None and 0 < dt <= MAX_INTEGRATION_GAP_MS:
        return (p0 + row[2]) / 2 * dt / 3_600_000
    return 0.0


class EnergyBudgetRuntime(RuleRuntime):
    """energy_budget: energy of the whole scope in the current local day against a budget."""

    KEY = "scope"

    def __init__(self, record: dict[str, Any], rule: Rule) -> None:
        super().__init__(record, rule)
        assert isinstance(rule, EnergyBudgetRule)
        self.budget_mwh = rule.budget_wh * 1000
        self.days = LocalDays("UTC")  # the engine sets the scope's timezone when seeding
        self.state = _Budget()

    def matches(self, dev: DeviceInfo, channel: str | None, submeter: bool = False) -> bool:
        # Sub-meters are inside another channel of the site: count them for a device rule only.
        if submeter and self.rule.device_id is None:
            return False
        return super().matches(dev, channel, submeter)

    def seed(self, day_start_ms: int, energy_mwh: float) -> None:
        self.state.day = self.days.day_of(day_start_ms)
        self.state.day_end_ms = self.days.bounds(day_start_ms)[1]
        self.state.total_mwh = energy_mwh

    def feed(self, eng: AlertEngine, dev: DeviceInfo, channel: str, cols: Columns) -> None:
        if not self._counter_within_day(cols):
            self._feed_rows(eng, cols.rows)

    def _counter_within_day(self, cols: Columns) -> bool:
        """The common batch in one step: all within today, a counter on every reading, never
        going back, newer than what was seen, and not reaching the budget (which needs the
        exact reading that crossed it). Then the energy used is last counter - previous."""
        s, rows = self.state, cols.rows
        first, last = rows[0], rows[-1]
        prev = s.prev.get(first[0])
        if s.day is None or (prev is not None and (prev[2] is None or first[1] <= prev[0])):
            return False
        if self.days.day_of(last[1]) < s.day:  # a day already closed (an old upload)
            s.prev[last[0]] = (last[1], last[2], last[3])
            return True
        if last[1] >= s.day_end_ms or self.days.day_of(first[1]) != s.day:
            return False
        # With no earlier reading of the channel, the energy before the first one is unknown
        # (the reading-by-reading path skips it too).
        counter = [prev[2], *map(_ENERGY, rows)] if prev is not None else list(map(_ENERGY, rows))
        if None in counter or counter != sorted(counter):
            return False
        used = counter[-1] - counter[0]
        if not s.active and s.total_mwh + used > self.budget_mwh:
            return False
        s.total_mwh += used
        s.prev[last[0]] = (last[1], last[2], last[3])
        return True

    def _feed_rows(self, eng: AlertEngine, rows: list[StoredRow]) -> None:
        s = self.state
        for row in rows:
            ts = row[1]
            prev = s.prev.get(row[0])
            if prev is not None and ts <= prev[0]:
                continue
            s.prev[row[0]] = (ts, row[2], row[3])
            if prev is None:
                continue
            day = self.days.day_of(ts)
            if day != s.day:
                if s.day is not None and day < s.day:
                    continue  # late data of a day already closed
                self._new_day(eng, ts)
            s.total_mwh += energy_delta_mwh(prev, row)
            if not s.active and s.total_mwh > self.budget_mwh:
                s.active = True
                r = self.rule
                assert isinstance(r, EnergyBudgetRule)
                wh = s.total_mwh / 1000
                msg = f"{r.name}: {_fmt(wh)} Wh used today, budget {_fmt(r.budget_wh)} Wh"
                eng.raise_alert(
                    self, self.KEY, None, None, ts, round(wh, 3), msg, {"day": str(s.day)}
                )

    def _new_day(self, eng: AlertEngine, ts: int) -> None:
        s = self.state
        if s.active:
            eng.clear_alert(self, self.KEY, min(ts, s.day_end_ms), round(s.total_mwh / 1000, 3))
            s.active = False
        s.day = self.days.day_of(ts)
        s.day_end_ms = self.days.bounds(ts)[1]
        s.total_mwh = 0.0

    def tick(self, eng: AlertEngine, now: int) -> None:
        if self.state.active and now >= self.state.day_end_ms:
            self._new_day(eng, now)

    def resume(self, eng: AlertEngine, alert: OpenAlert) -> bool:
        s = self.state
        if s.day is None or self.days.day_of(alert.raised_ms) != s.day:
            return False
        s.active = True
        return True


@dataclass(slots=True)
class _Watch:
    since_ms: int
    active: bool = False


class OfflineRuntime(RuleRuntime):
    """offline: no data from a device, or an offline status, for ``after_s``."""

    from_batches = False

    def __init__(self, record: dict[str, Any], rule: Rule) -> None:
        super().__init__(record, rule)
        assert isinstance(rule, OfflineRule)
        self.after_ms = int(rule.after_s * 1000)
        self.targets: dict[int, _Watch] = {}
        self.names: dict[int, str] = {}

    def watch(self, dev: DeviceInfo, now: int) -> None:
        if dev.id not in self.targets:
            self.targets[dev.id] = _Watch(now)  # a grace period from when watching starts
            self.names[dev.id] = dev.name

    def tick(self, eng: AlertEngine, now: int) -> None:
        for device_id, w in self.targets.items():
            if w.active:
                continue
            down = eng.down_since.get(device_id)
            since = down if down is not None else max(w.since_ms, eng.last_seen.get(device_id, 0))
            if now - since >= self.after_ms:
                w.active = True
                silent_s = (now - since) / 1000
                name = self.names.get(device_id, f"device {device_id}")
                why = "reported offline" if down is not None else "sent no data"
                msg = f"{self.name}: {name} {why} for {_fmt(round(silent_s))} s"
                eng.raise_alert(
                    self,
                    str(device_id),
                    DeviceInfo(device_id, self.org_id, None, None, name, "UTC"),
                    None,
                    now,
                    None,
                    msg,
                    {"since_ms": since},
                )

    def seen(self, eng: AlertEngine, device_id: int, now: int) -> None:
        w = self.targets.get(device_id)
        if w is not None and w.active:
            w.active = False
            eng.clear_alert(self, str(device_id), now, None)

    def resume(self, eng: AlertEngine, alert: OpenAlert) -> bool:
        if alert.device_id is None:
            return False
        w = self.targets.setdefault(alert.device_id, _Watch(alert.raised_ms))
        w.active = True
        return True


class AnomalyRuntime(RuleRuntime):
    """anomaly: findings of the AI detector for devices in scope; cleared when they stop."""

    from_batches = False

    def __init__(self, record: dict[str, Any], rule: Rule) -> None:
        super().__init__(record, rule)
        assert isinstance(rule, AnomalyRule)
        self.r = rule
        self.last_finding: dict[str, int] = {}

    def wants(self, finding: FindingLike) -> bool:
        sev = str(finding.severity)
        rank = FINDING_SEVERITY_ORDER.index(sev) if sev in FINDING_SEVERITY_ORDER else 1
        if rank < FINDING_SEVERITY_ORDER.index(self.r.min_severity):
            return False
        return self.r.finding_kinds is None or finding.kind in self.r.finding_kinds

    def finding(self, eng: AlertEngine, dev: DeviceInfo, finding: FindingLike, now: int) -> None:
        key = str(dev.id)
        at = _ms(finding.detected_at)
        details = {"finding": finding.kind, "severity": str(finding.severity), "detected_ms": at}
        channel = getattr(finding, "channel", None)
        if key in self.last_finding:
            eng.update_alert(self, key, at, finding.magnitude, force=True, details=details)
        else:
            msg = f"{self.name}: {dev.name}: {finding.explanation}"
            eng.raise_alert(self, key, dev, channel, at, finding.magnitude, msg, details)
        self.last_finding[key] = now

    def tick(self, eng: AlertEngine, now: int) -> None:
        limit = self.r.clear_after_s * 1000
        for key, last in list(self.last_finding.items()):
            if now - last >= limit:
                del self.last_finding[key]
                eng.clear_alert(self, key, now, None)

    def resume(self, eng: AlertEngine, alert: OpenAlert) -> bool:
        self.last_finding[alert.target] = alert.updated_ms
        return True


def make_runtime(record: dict[str, Any]) -> RuleRuntime:
    rule = rule_from_record(record)
    if isinstance(rule, ThresholdRule | RangeRule | AfterHoursRule):
        return LevelRuntime(record, rule)
    if isinstance(rule, SuddenChangeRule):
        return SuddenChangeRuntime(record, rule)
    if isinstance(rule, EnergyBudgetRule):
        return EnergyBudgetRuntime(record, rule)
    if isinstance(rule, OfflineRule):
        return OfflineRuntime(record, rule)
    return AnomalyRuntime(record, rule)
