"""Building blocks of rule evaluation: the debounce/hysteresis state machine, local calendars."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from wattwatch.store.base import MAX_INTEGRATION_GAP_MS

# Outcomes of ``Debounce.step``.
NOTHING, RAISE, UPDATE, CLEAR = 0, 1, 2, 3


class Debounce:
    """When a condition has held long enough to raise, and when it has gone enough to clear.

    ``bad`` and ``good`` come from the rule: ``bad`` is the alarm condition and ``good`` the
    clear condition, which a rule sets past the threshold by its hysteresis. A value between
    the two (hovering at the threshold) neither raises nor clears, so it cannot flap. Time is
    reading time; a gap in the readings longer than the store bridges restarts the clock,
    since nobody knows what happened in it.
    """

    __slots__ = (
        "active",
        "clear_for_ms",
        "clearing_since",
        "for_ms",
        "last_ts",
        "pending_since",
        "was_bad",
    )

    def __init__(self, for_ms: int, clear_for_ms: int = 0) -> None:
        self.for_ms = for_ms
        self.clear_for_ms = clear_for_ms
        self.active = False
        self.pending_since: int | None = None
        self.clearing_since: int | None = None
        self.last_ts: int | None = None
        self.was_bad = False

    def step(self, ts: int, bad: bool, good: bool) -> int:
        gap = self.last_ts is not None and ts - self.last_ts > MAX_INTEGRATION_GAP_MS
        self.last_ts = ts
        if not self.active:
            if not bad:
                self.pending_since = None
                return NOTHING
            if self.pending_since is None or gap:
                self.pending_since = ts
            if ts - self.pending_since >= self.for_ms:
                self.active, self.pending_since, self.clearing_since = True, None, None
                self.was_bad = True
                return RAISE
            return NOTHING
        if bad:
            self.clearing_since = None
            if not self.was_bad:  # back over the threshold without having cleared
                self.was_bad = True
                return UPDATE
            return NOTHING
        self.was_bad = False
        if not good:
            self.clearing_since = None
            return NOTHING
        if self.clearing_since is None or gap:
            self.clearing_since = ts
        if ts - self.clearing_since >= self.clear_for_ms:
            self.active, self.clearing_since = False, None
            return CLEAR
        return NOTHING

    def resume_active(self) -> None:
        """Continue an alert that was open before a restart."""
        self.active, self.was_bad = True, True


def _local_ms(day: date, at: time, tz: ZoneInfo) -> int:
    # A wall time that does not exist (spring forward) is taken with the offset before the
    # change, as zoneinfo does (fold=0); one that exists twice is its first occurrence.
    return int(datetime.combine(day, at, tzinfo=tz).timestamp() * 1000)


def _parse_hhmm(text: str) -> tuple[time, int]:
    """(wall time, extra days): 24:00 is midnight of the next day."""
    if text == "24:00":
        return time(0, 0), 1
    hh, mm = text.split(":")
    return time(int(hh), int(mm)), 0


class LocalDays:
    """The local calendar day of an instant in one timezone, cached per day (DST-correct)."""

    __slots__ = ("_day", "_end", "_start", "tz")

    def __init__(self, tz: str) -> None:
        self.tz = ZoneInfo(tz)
        self._start, self._end, self._day = 0, -1, date(1970, 1, 1)

    def day_of(self, ts_ms: int) -> date:
        if not self._start <= ts_ms < self._end:
            local = datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(self.tz)
            self._day = local.date()
            self._start = _local_ms(self._day, time(0, 0), self.tz)
            self._end = _local_ms(self._day + timedelta(days=1), time(0, 0), self.tz)
        return self._day

    def bounds(self, ts_ms: int) -> tuple[int, int]:
        """[start, end) of the local day holding ``ts_ms``, epoch ms."""
        self.day_of(ts_ms)
        return self._start, self._end


class OpenHours:
    """Whether a site is open at an instant: weekly open hours in local time, closed dates.

    Answers from a cached segment (a stretch of time with one answer) so a stream of readings
    costs one comparison each; segments are computed with zoneinfo, so a DST change moves the
    UTC instants of opening and closing with the clocks.
    """

    def __init__(
        self, tz: str, open_hours: dict[str, list[tuple[str, str]]], closed_dates: list[str]
    ) -> None:
        self.days = LocalDays(tz)
        self.open_hours = {
            day: [(_parse_hhmm(a), _parse_hhmm(b)) for a, b in spans]
            for day, spans in open_hours.items()
        }
        self.closed = {date.fromisoformat(d) for d in closed_dates}
        self._seg = (0, -1, False)

    def is_open(self, ts_ms: int) -> bool:
        start, end, is_open = self._seg
        if start <= ts_ms < end:
            return is_open
        self._seg = self._segment(ts_ms)
        return self._seg[2]

    def _segment(self, ts_ms: int) -> tuple[int, int, bool]:
        day = self.days.day_of(ts_ms)
        day_start, day_end = self.days.bounds(ts_ms)
        if day in self.closed:
            return day_start, day_end, False
        weekday = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[day.weekday()]
        cuts: list[tuple[int, int, bool]] = []
        cursor = day_start
        for (t0, d0), (t1, d1) in sorted(self.open_hours.get(weekday, [])):
            a = _local_ms(day + timedelta(days=d0), t0, self.days.tz)
            b = _local_ms(day + timedelta(days=d1), t1, self.days.tz)
            a, b = max(a, cursor), min(b, day_end)
            if b <= a:
                continue
            cuts.append((cursor, a, False))
            cuts.append((a, b, True))
            cursor = b
        cuts.append((cursor, day_end, False))
        for seg in cuts:
            if seg[0] <= ts_ms < seg[1]:
                return seg
        return day_start, day_end, False  # unreachable: the cuts tile the day


class LocalHour:
    """The local hour of day (0-23) of an instant, cached per quarter hour.

    Every UTC offset in use is a multiple of 15 minutes, so the local hour is constant
    within a UTC quarter hour.
    """

    __slots__ = ("_hour", "_quarter", "tz")

    def __init__(self, tz: str) -> None:
        self.tz = ZoneInfo(tz)
        self._quarter = -1
        self._hour = 0

    def hour_of(self, ts_ms: int) -> int:
        quarter = ts_ms // 900_000
        if quarter != self._quarter:
            self._quarter = quarter
            self._hour = datetime.fromtimestamp(quarter * 900, UTC).astimezone(self.tz).hour
        return self._hour


class HourlyProfile:
    """A device's usual level per local hour of day: running mean and spread per hour.

    A plain running mean until ``horizon`` readings, exponential after that, so the profile
    follows seasons without forgetting in an afternoon.
    """

    __slots__ = ("horizon", "mean", "n", "var")

    def __init__(self, horizon: int = 5000) -> None:
        self.horizon = horizon
        self.n = [0] * 24
        self.mean = [0.0] * 24
        self.var = [0.0] * 24

    def learn(self, hour: int, value: float) -> None:
        n = self.n[hour] + 1
        self.n[hour] = n
        alpha = 1.0 / min(n, self.horizon)
        delta = value - self.mean[hour]
        self.mean[hour] += alpha * delta
        # West's incremental weighted variance.
        self.var[hour] = (1 - alpha) * (self.var[hour] + alpha * delta * delta)

    def spread(self, hour: int) -> float:
        return math.sqrt(self.var[hour])
