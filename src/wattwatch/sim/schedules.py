"""Daily and weekly life of a site: who is there when, usage curves, weather, one local day.

Everything here is in the site's *local* time: a kettle is boiled at 07:30 wherever the site is.
A :class:`Day` is one local calendar day of one site; every random choice about that day
(weather, who came to the office, when a household got up) comes from a generator seeded by
(site seed, what, date), so any day can be rebuilt on its own, in any order, identically.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import numpy as np

from wattwatch.sim.timeline import F64

DAY_S = 86_400.0
HOUR_S = 3_600.0
QUARTERS = 96  # usage curves are tabulated per quarter hour


class SiteKind(StrEnum):
    HOME = "home"
    OFFICE = "office"
    RESTAURANT = "restaurant"


def stable_hash(text: str) -> int:
    """A hash of ``text`` that is the same in every process (unlike ``hash``)."""
    return zlib.crc32(text.encode())


def rng_for(seed: int, what: str, day: int = 0, salt: int = 0) -> np.random.Generator:
    """The generator for one (seed, thing, day): independent streams, rebuildable in any order."""
    return np.random.default_rng([seed & 0xFFFFFFFF, stable_hash(what), day & 0xFFFFFFFF, salt])


@dataclass(frozen=True)
class Bumps:
    """A daily intensity curve: a floor plus Gaussian bumps ``(centre h, width h, weight)``."""

    bumps: tuple[tuple[float, float, float], ...]
    floor: float = 0.0
    curve: F64 = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        hours = (np.arange(QUARTERS, dtype=np.float64) + 0.5) / 4.0
        curve = np.full(QUARTERS, self.floor, dtype=np.float64)
        for centre, width, weight in self.bumps:
            d = np.abs(hours - centre)
            d = np.minimum(d, 24.0 - d)  # the day wraps round midnight
            curve += weight * np.exp(-0.5 * (d / width) ** 2)
        peak = float(curve.max())
        object.__setattr__(self, "curve", curve / peak if peak > 0 else curve)

    def at(self, hour: F64 | float) -> F64:
        """Intensity (0..1) at local ``hour``."""
        idx = (np.asarray(hour, dtype=np.float64) * 4.0).astype(np.int64) % QUARTERS
        return np.asarray(self.curve[idx], dtype=np.float64)


@dataclass(frozen=True)
class Usage:
    """How often an appliance is used at one kind of site, and when (local time)."""

    per_day: float
    weekday: Bumps
    weekend: Bumps | None = None  # None: as on weekdays
    weekend_factor: float = 1.0

    def curve(self, day: Day) -> Bumps:
        return self.weekend if (day.weekend and self.weekend is not None) else self.weekday

    def sample(self, day: Day, rng: np.random.Generator, scale: float = 1.0) -> F64:
        """Sorted local start times (s) of the uses on ``day``."""
        rate = self.per_day * scale * day.activity
        if day.weekend:
            rate *= self.weekend_factor
        n = int(rng.poisson(rate)) if rate > 0 else 0
        if n == 0:
            return np.empty(0, dtype=np.float64)
        w = self.curve(day).curve
        quarter = rng.choice(QUARTERS, size=n, p=w / w.sum())
        return np.sort((quarter + rng.random(n)) * 900.0)


@dataclass(frozen=True)
class Climate:
    """Outdoor temperature: annual mean and swing (coldest mid-January), daily swing, latitude."""

    annual_mean_c: float = 12.0
    seasonal_amp_c: float = 8.0
    daily_amp_c: float = 5.0
    latitude_deg: float = 48.0


@dataclass(frozen=True, slots=True)
class Presence:
    """When a group (a workstation's user, a household, restaurant staff) is about on a day.

    ``on`` are active intervals and ``away`` short breaks inside them (lunch), in local s.
    """

    on: tuple[tuple[float, float], ...]
    away: tuple[tuple[float, float], ...] = ()


# When restaurants are open (local hours) and which weekday they close (0 = Monday).
RESTAURANT_WINDOWS: tuple[tuple[float, float], ...] = ((9.5, 15.0), (17.0, 23.25))
RESTAURANT_SERVICE: tuple[tuple[float, float], ...] = ((11.75, 14.5), (18.75, 22.5))
RESTAURANT_CLOSED_WEEKDAY = 0


class Day:
    """One local calendar day of one site."""

    def __init__(
        self, kind: SiteKind, seed: int, day: date, tz: ZoneInfo, climate: Climate
    ) -> None:
        self.kind = kind
        self.seed = seed
        self.date = day
        self.ordinal = day.toordinal()
        start = datetime.combine(day, time(0), tzinfo=tz)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
        self.start_s = start.timestamp()
        self.length_s = end.timestamp() - self.start_s
        # 23 h / 25 h days: local times after the switch move by this much within the block.
        self.dst_shift_s = self.length_s - DAY_S
        self.weekday = day.weekday()
        self.weekend = self.weekday >= 5
        self.doy = day.timetuple().tm_yday
        rng = rng_for(seed, "day", self.ordinal)
        seasonal = -math.cos(2 * math.pi * (self.doy - 20) / 365.25)
        self.outdoor_mean_c = (
            climate.annual_mean_c + climate.seasonal_amp_c * seasonal + float(rng.normal(0, 2.5))
        )
        self.outdoor_amp_c = climate.daily_amp_c * float(rng.uniform(0.5, 1.4))
        # How busy the day is (guests, weather, mood): scales usage counts.
        self.activity = float(np.clip(rng.lognormal(0.0, 0.25), 0.4, 2.0))
        dst = start.dst()
        dst_h = dst.total_seconds() / HOUR_S if dst is not None else 0.0
        decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + self.doy) / 365.0)
        lat = math.radians(climate.latitude_deg)
        cos_w = max(-1.0, min(1.0, -math.tan(lat) * math.tan(decl)))
        half_day_h = math.degrees(math.acos(cos_w)) / 15.0
        noon_h = 12.3 + dst_h
        self.sunrise_h = noon_h - half_day_h
        self.sunset_h = noon_h + half_day_h
        self.open = kind != SiteKind.RESTAURANT or self.weekday != RESTAURANT_CLOSED_WEEKDAY
        self._presence: dict[str, Presence] = {}

    # -- weather -----------------------------------------------------------------------------

    def outdoor_c(self, hour: F64 | float) -> F64:
        h = np.asarray(hour, dtype=np.float64)
        return self.outdoor_mean_c + self.outdoor_amp_c * np.cos(2 * np.pi * (h - 15.0) / 24.0)

    def indoor_c(self, hour: F64 | float) -> F64:
        """Room temperature where the appliances stand (a restaurant kitchen runs warm)."""
        out = self.outdoor_c(hour)
        if self.kind == SiteKind.RESTAURANT:
            busy = SERVICE_CURVE.at(hour) if self.open else np.zeros_like(out)
            return np.clip(23.0 + 0.2 * (out - 20.0) + 4.0 * busy, 16.0, 34.0)
        if self.kind == SiteKind.OFFICE:
            return np.clip(22.0 + 0.12 * (out - 20.0), 18.0, 28.0)
        return np.clip(20.0 + 0.25 * (out - 18.0), 16.0, 30.0)

    def dark(self, hour: F64 | float) -> F64:
        """1 where it is dark enough indoors to switch lights on, else 0."""
        h = np.asarray(hour, dtype=np.float64)
        return ((h < self.sunrise_h + 0.5) | (h > self.sunset_h - 0.75)).astype(np.float64)

    # -- people ------------------------------------------------------------------------------

    def presence(self, group: str) -> Presence:
        """Who is about for ``group`` today (the same answer for every appliance of the group)."""
        found = self._presence.get(group)
        if found is None:
            rng = rng_for(self.seed, "presence/" + group, self.ordinal)
            found = _PRESENCE[self.kind](self, rng)
            self._presence[group] = found
        return found

    def windows(self) -> tuple[tuple[float, float], ...]:
        """The site's opening windows today (local s); homes are always 'open'."""
        if self.kind == SiteKind.RESTAURANT:
            if not self.open:
                return ()
            return tuple((a * HOUR_S, b * HOUR_S) for a, b in RESTAURANT_WINDOWS)
        if self.kind == SiteKind.OFFICE:
            return () if self.weekend else ((7.5 * HOUR_S, 19.0 * HOUR_S),)
        return ((0.0, DAY_S),)


def _office_presence(day: Day, rng: np.random.Generator) -> Presence:
    if day.weekend:
        if rng.random() > 0.04:
            return Presence(())
        start = rng.uniform(9.5, 14.0) * HOUR_S
        return Presence(((start, start + rng.uniform(1.5, 4.0) * HOUR_S),))
    if rng.random() < 0.09:  # leave, sick, on the road
        return Presence(())
    arrive = float(np.clip(rng.normal(8.6, 0.6), 6.5, 11.0))
    leave = float(np.clip(arrive + rng.normal(8.7, 0.7), arrive + 3.0, 21.5))
    away: tuple[tuple[float, float], ...] = ()
    if rng.random() < 0.75:
        lunch = float(np.clip(rng.normal(12.4, 0.4), 11.5, 14.0))
        away = ((lunch * HOUR_S, (lunch + rng.uniform(0.4, 1.0)) * HOUR_S),)
    return Presence(((arrive * HOUR_S, leave * HOUR_S),), away)


def _restaurant_presence(day: Day, rng: np.random.Generator) -> Presence:
    if not day.open:
        return Presence(())
    jitter = rng.normal(0.0, 0.1, size=(len(RESTAURANT_WINDOWS), 2))
    return Presence(
        tuple(
            ((a + ja) * HOUR_S, (b + jb) * HOUR_S)
            for (a, b), (ja, jb) in zip(RESTAURANT_WINDOWS, jitter, strict=True)
        )
    )


def _home_presence(day: Day, rng: np.random.Generator) -> Presence:
    wake = float(np.clip(rng.normal(8.2 if day.weekend else 6.7, 0.5), 5.0, 11.0))
    sleep = float(np.clip(rng.normal(23.2, 0.6), 21.0, 25.5))
    sleep = min(sleep, 23.99)
    if day.weekend:
        if rng.random() < 0.5:  # an afternoon out
            out = rng.uniform(13.0, 16.0)
            back = out + rng.uniform(1.5, 4.0)
            return Presence(((wake * HOUR_S, out * HOUR_S), (back * HOUR_S, sleep * HOUR_S)))
        return Presence(((wake * HOUR_S, sleep * HOUR_S),))
    if rng.random() < 0.3:  # working from home
        return Presence(((wake * HOUR_S, sleep * HOUR_S),))
    leave = wake + rng.uniform(0.7, 1.8)
    back = float(np.clip(rng.normal(17.8, 0.8), 15.0, 21.0))
    return Presence(((wake * HOUR_S, leave * HOUR_S), (back * HOUR_S, sleep * HOUR_S)))


_PRESENCE = {
    SiteKind.OFFICE: _office_presence,
    SiteKind.RESTAURANT: _restaurant_presence,
    SiteKind.HOME: _home_presence,
}

# Usage curves shared by appliance specs (local hours).
HOME_MEALS = Bumps(((7.2, 0.7, 1.0), (12.8, 1.0, 0.45), (18.8, 1.3, 1.0), (21.5, 1.0, 0.45)))
HOME_MEALS_WEEKEND = Bumps(((9.0, 1.0, 1.0), (13.0, 1.2, 0.8), (18.8, 1.3, 0.9), (21.5, 1.0, 0.4)))
HOME_DAYTIME = Bumps(((10.5, 2.0, 0.6), (19.0, 2.0, 1.0)), floor=0.02)
HOME_DAYTIME_WEEKEND = Bumps(((11.0, 2.5, 1.0), (16.5, 2.5, 0.8)), floor=0.02)
HOME_EVENING = Bumps(((20.5, 1.3, 1.0), (13.5, 1.0, 0.15)))
HOME_SHOWERS = Bumps(((7.0, 0.7, 1.0), (21.5, 1.0, 0.6), (13.0, 3.0, 0.15)), floor=0.01)
OFFICE_HOURS = Bumps(((10.0, 1.5, 1.0), (15.0, 1.6, 0.9)), floor=0.0)
OFFICE_COFFEE = Bumps(((8.9, 0.6, 1.0), (10.5, 0.7, 0.5), (13.3, 0.6, 0.9), (15.8, 0.8, 0.5)))
OFFICE_LUNCH = Bumps(((12.6, 0.6, 1.0), (16.0, 1.0, 0.15), (9.0, 0.7, 0.2)))
SERVICE_CURVE = Bumps(((12.9, 0.9, 1.0), (20.3, 1.2, 1.0), (10.3, 0.7, 0.25), (17.8, 0.5, 0.3)))
PRESENCE_CURVES: dict[SiteKind, Bumps] = {
    SiteKind.HOME: Bumps(((7.3, 0.9, 0.8), (19.5, 2.2, 1.0)), floor=0.1),
    SiteKind.OFFICE: Bumps(((10.5, 2.0, 1.0), (15.0, 2.0, 0.9))),
    SiteKind.RESTAURANT: SERVICE_CURVE,
}


def intersect(
    a: tuple[tuple[float, float], ...] | list[tuple[float, float]],
    b: tuple[tuple[float, float], ...] | list[tuple[float, float]],
) -> list[tuple[float, float]]:
    """Intersection of two sorted lists of disjoint intervals."""
    out: list[tuple[float, float]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if hi > lo:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(
    a: tuple[tuple[float, float], ...] | list[tuple[float, float]],
    b: tuple[tuple[float, float], ...] | list[tuple[float, float]],
) -> list[tuple[float, float]]:
    """Intervals of ``a`` not covered by ``b`` (both sorted, disjoint)."""
    out: list[tuple[float, float]] = []
    for lo, hi in a:
        cur = lo
        for blo, bhi in b:
            if bhi <= cur or blo >= hi:
                continue
            if blo > cur:
                out.append((cur, blo))
            cur = max(cur, bhi)
        if cur < hi:
            out.append((cur, hi))
    return out
