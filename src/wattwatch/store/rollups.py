"""Incremental rollups: what a set of new readings adds to the 1 min / 1 h / local-day buckets.

Every rollup column is additive (count, power sum, energy) or monotone (min, max), so a batch
changes the stored buckets by *adding* its contribution: no bucket is ever re-read. The one
subtlety is energy: a reading's energy is the delta from its predecessor, so a late reading
landing between two stored ones also changes the delta of its successor. ``contributions``
therefore takes the stored neighbours of the new readings and emits a correction for each
stored reading whose predecessor changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from wattwatch.store.base import MAX_INTEGRATION_GAP_MS

# (ts_ms, power_mw, energy_mwh) of one reading of one channel.
Point = tuple[int, int | None, int | None]
# [count, power count, power sum (mW), power min, power max, energy (mWh)]
Acc = list[int | None]
Buckets = dict[tuple[int, int], Acc]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
_QUARTER_MS = 900_000  # every UTC offset in use is a multiple of 15 min


def energy_delta_mwh(prev: Point | None, cur: Point) -> int:
    """Energy used between ``prev`` and ``cur``, attributed to ``cur``.

    From the counters when both readings carry one; a counter that went backwards was reset
    (power cut, firmware update), so what it shows now is what was used since the reset.
    Otherwise the trapezoid of power over the interval, unless the interval is a gap.
    """
    if prev is None:
        return 0
    p_ts, p_pw, p_e = prev
    ts, pw, e = cur
    if e is not None and p_e is not None:
        return e - p_e if e >= p_e else e
    dt = ts - p_ts
    if p_pw is None or pw is None or dt <= 0 or dt > MAX_INTEGRATION_GAP_MS:
        return 0
    # mW * ms / 3.6e6 = mWh
    return round((p_pw + pw) * dt / 7_200_000)


@lru_cache(maxsize=4096)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=65536)
def _local_day_start_quarter(tz: str, quarter: int) -> int:
    zone = _zone(tz)
    local = datetime.fromtimestamp(quarter * _QUARTER_MS / 1000, zone)
    midnight = datetime.combine(local.date(), time(0), tzinfo=zone)
    return int(midnight.timestamp() * 1000)


def local_day_start_ms(tz: str, ts_ms: int) -> int:
    """Epoch ms of the local midnight that starts the day containing ``ts_ms`` in zone ``tz``."""
    return _local_day_start_quarter(tz, ts_ms // _QUARTER_MS)


def local_day_starts(tz: str, from_ms: int, to_ms: int) -> list[int]:
    """The local midnights from the day containing ``from_ms`` up to before ``to_ms``."""
    zone = _zone(tz)
    day = datetime.fromtimestamp(local_day_start_ms(tz, from_ms) / 1000, zone).date()
    out: list[int] = []
    while True:
        ms = int(datetime.combine(day, time(0), tzinfo=zone).timestamp() * 1000)
        if ms >= to_ms:
            return out
        out.append(ms)
        day += timedelta(days=1)


def _add(buckets: Buckets, key: tuple[int, int], n: int, p: int | None, e: int) -> None:
    acc = buckets.get(key)
    if acc is None:
        if p is None:
            buckets[key] = [n, 0, 0, None, None, e]
        else:
            buckets[key] = [n, 1, p, p, p, e]
        return
    acc[0] += n  # type: ignore[operator]
    acc[5] += e  # type: ignore[operator]
    if p is not None:
        acc[1] += 1  # type: ignore[operator]
        acc[2] += p  # type: ignore[operator]
        if acc[3] is None or p < acc[3]:
            acc[3] = p
        if acc[4] is None or p > acc[4]:
            acc[4] = p


def add_channel(
    minutes: Buckets,
    channel_id: int,
    new: Sequence[Point],
    stored: Sequence[Point],
) -> None:
    """Add to ``minutes`` what the ``new`` readings of one channel contribute.

    ``new`` is sorted by ts, free of duplicates and of ts already stored. ``stored`` is sorted
    and holds the stored reading just before ``new[0]`` (if any), every stored reading between
    ``new[0]`` and ``new[-1]``, and the one just after (if any).
    """
    # The common case: the readings extend the channel's series. No corrections.
    extends = not stored or stored[-1][0] < new[0][0]
    if (
        extends
        and len(new) >= 32
        and _add_in_order_numpy(minutes, channel_id, new, stored[-1] if stored else None)
    ):
        return
    if stored and stored[-1][0] < new[0][0]:
        prev: Point | None = stored[-1]
        for point in new:
            _add(
                minutes,
                (channel_id, point[0] - point[0] % MINUTE_MS),
                1,
                point[1],
                energy_delta_mwh(prev, point),
            )
            prev = point
        return
    if not stored:
        prev = None
        for point in new:
            _add(
                minutes,
                (channel_id, point[0] - point[0] % MINUTE_MS),
                1,
                point[1],
                energy_delta_mwh(prev, point),
            )
            prev = point
        return
    # Late or interleaved readings: walk the merged series.
    stored_ts = {p[0] for p in stored}
    merged = sorted([*stored, *new])
    prev_stored: Point | None = None
    prev = None
    for point in merged:
        bucket = (channel_id, point[0] - point[0] % MINUTE_MS)
        if point[0] in stored_ts:
            if prev is not prev_stored:
                fix = energy_delta_mwh(prev, point) - energy_delta_mwh(prev_stored, point)
                if fix:
                    _add(minutes, bucket, 0, None, fix)
            prev_stored = point
        else:
            _add(minutes, bucket, 1, point[1], energy_delta_mwh(prev, point))
        prev = point


def _add_in_order_numpy(
    minutes: Buckets, channel_id: int, new: Sequence[Point], prev: Point | None
) -> bool:
    """Vectorised ``add_channel`` for readings that extend the series; False if not applicable.

    Applies when every reading (and ``prev``) has power, and either all carry an energy
    counter or none does: the shape of nearly every upload. Same arithmetic as the loop.
    """
    import numpy as np

    ts_l, p_l, e_l = zip(*new, strict=True)
    if None in p_l:
        return False
    has_e = e_l[0] is not None
    if has_e and None in e_l:
        return False
    if not has_e and any(e is not None for e in e_l):
        return False
    if prev is not None and (prev[1] is None or (prev[2] is None) == has_e):
        return False
    ts = np.array(ts_l, dtype=np.int64)
    p = np.array(p_l, dtype=np.int64)
    head_ts, head_p = (int(ts[0]), int(p[0])) if prev is None else (prev[0], prev[1] or 0)
    ts_prev = np.concatenate((np.array([head_ts], dtype=np.int64), ts[:-1]))
    p_prev = np.concatenate((np.array([head_p], dtype=np.int64), p[:-1]))
    if has_e:
        e = np.array(e_l, dtype=np.int64)
        first_e = int(e[0]) if prev is None or prev[2] is None else prev[2]
        e_prev = np.concatenate((np.array([first_e], dtype=np.int64), e[:-1]))
        de = e - e_prev
        de = np.where(de < 0, e, de)
    else:
        dt = ts - ts_prev
        ok = (dt > 0) & (dt <= MAX_INTEGRATION_GAP_MS)
        # round-half-even like Python's round(): same numbers as energy_delta_mwh
        de = np.where(ok, np.rint((p_prev + p) * dt / 7_200_000), 0).astype(np.int64)
    if prev is None:
        de[0] = 0
    minute = ts - ts % MINUTE_MS
    starts = np.concatenate(([0], np.flatnonzero(np.diff(minute)) + 1))
    counts = np.diff(np.concatenate((starts, [len(ts)])))
    for key, n, psum, pmin, pmax, esum in zip(
        minute[starts].tolist(),
        counts.tolist(),
        np.add.reduceat(p, starts).tolist(),
        np.minimum.reduceat(p, starts).tolist(),
        np.maximum.reduceat(p, starts).tolist(),
        np.add.reduceat(de, starts).tolist(),
        strict=True,
    ):
        acc = minutes.get((channel_id, key))
        if acc is None:
            minutes[(channel_id, key)] = [n, n, psum, pmin, pmax, esum]
        else:
            merge_acc(acc, [n, n, psum, pmin, pmax, esum])
    return True


def roll_up(minutes: Buckets, channel_tz: dict[int, str]) -> tuple[Buckets, Buckets]:
    """Fold minute contributions into hour and local-day contributions."""
    hours: Buckets = {}
    days: Buckets = {}
    for (ch, minute), acc in minutes.items():
        for buckets, key in (
            (hours, (ch, minute - minute % HOUR_MS)),
            (days, (ch, local_day_start_ms(channel_tz[ch], minute))),
        ):
            cur = buckets.get(key)
            if cur is None:
                buckets[key] = list(acc)
                continue
            merge_acc(cur, acc)
    return hours, days


def merge_acc(cur: Acc, acc: Acc) -> None:
    """Fold accumulator ``acc`` into ``cur`` (sums add, min/max combine)."""
    for i in (0, 1, 2, 5):
        cur[i] += acc[i]  # type: ignore[operator]
    if acc[3] is not None and (cur[3] is None or acc[3] < cur[3]):
        cur[3] = acc[3]
    if acc[4] is not None and (cur[4] is None or acc[4] > cur[4]):
        cur[4] = acc[4]


RollupRow = tuple[int, int, int, int, int, int | None, int | None, int]


def rows_of(buckets: Buckets) -> Iterable[RollupRow]:
    """Buckets as (channel_id, bucket_ms, n, pn, psum, pmin, pmax, energy) rows for an upsert."""
    for (ch, bucket), acc in buckets.items():
        yield (ch, bucket, acc[0], acc[1], acc[2], acc[3], acc[4], acc[5])  # type: ignore[misc]
