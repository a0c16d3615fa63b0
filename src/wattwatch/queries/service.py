"""Read side: readings at any resolution, and site energy and cost in the site's calendar."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from wattwatch.domain import METRIC_NAMES, Interval
from wattwatch.errors import InvalidInput
from wattwatch.store import rollups
from wattwatch.store.base import ReadingStore
from wattwatch.store.registry import SqlRegistry
from wattwatch.tariffs import Tariff

DEFAULT_LIMIT = 100_000
MAX_LIMIT = 1_000_000


def encode_cursor(point: dict[str, Any]) -> str:
    return f"{point['ts']}.{point['channel_id']}"


def decode_cursor(cursor: str | None) -> tuple[int, int] | None:
    if not cursor:
        return None
    try:
        ts, ch = cursor.split(".")
        return int(ts), int(ch)
    except ValueError:
        raise InvalidInput("cursor is not one this server gave out") from None


def period_start(interval: Interval, tz: str, day_ms: int) -> int:
    """Start (epoch ms) of the local week (Monday) or month that contains local day ``day_ms``."""
    zone = ZoneInfo(tz)
    day = datetime.fromtimestamp(day_ms / 1000, zone).date()
    if interval is Interval.WEEK:
        start = day.toordinal() - day.weekday()
        first = datetime.fromordinal(start).date()
    else:
        first = day.replace(day=1)
    return int(datetime(first.year, first.month, first.day, tzinfo=zone).timestamp() * 1000)


def _merge(points: list[dict[str, Any]], key_of: Any) -> list[dict[str, Any]]:
    """Merge rollup points that share a (bucket, channel) key into one."""
    merged: dict[tuple[int, int], dict[str, Any]] = {}
    for p in points:
        key = (key_of(p["ts"]), p["channel_id"])
        cur = merged.get(key)
        if cur is None:
            merged[key] = {**p, "ts": key[0]}
            continue
        cur["count"] += p["count"]
        cur["pn"] += p["pn"]
        cur["psum"] += p["psum"]
        cur["energy_mwh"] += p["energy_mwh"]
        for k, better in (("pmin", min), ("pmax", max)):
            if p[k] is not None:
                cur[k] = p[k] if cur[k] is None else better(cur[k], p[k])
    return [merged[k] for k in sorted(merged)]


def public_rollup(p: dict[str, Any], channel_names: dict[int, str]) -> dict[str, Any]:
    return {
        "ts": p["ts"],
        "channel": channel_names.get(p["channel_id"], str(p["channel_id"])),
        "count": p["count"],
        "power_w_avg": round(p["psum"] / p["pn"] / 1000, 3) if p["pn"] else None,
        "power_w_min": None if p["pmin"] is None else p["pmin"] / 1000,
        "power_w_max": None if p["pmax"] is None else p["pmax"] / 1000,
        "energy_wh": p["energy_mwh"] / 1000,
    }


class QueryService:
    def __init__(self, store: ReadingStore, registry: SqlRegistry) -> None:
        self.store = store
        self.db = registry

    def readings(
        self,
        org_id: int,
        device_id: int,
        *,
        from_ms: int,
        to_ms: int,
        interval: Interval = Interval.RAW,
        channel: str | None = None,
        metrics: Sequence[str] | None = None,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        device = self.db.get_device(org_id, device_id)
        if not 0 < limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be 1..{MAX_LIMIT}")
        if to_ms <= from_ms:
            raise InvalidInput("'to' must be after 'from'")
        for m in metrics or ():
            if m not in METRIC_NAMES:
                raise InvalidInput(f"unknown metric {m!r}; known: {', '.join(METRIC_NAMES)}")
        names = {c["id"]: c["name"] for c in self.db.list_channels(device_id)}
        if channel is not None:
            names = {i: n for i, n in names.items() if n == channel}
            if not names:
                raise InvalidInput(f"device has no channel {channel!r}")
        ids = sorted(names)
        if not ids:
            return {"points": [], "next": None}
        after = decode_cursor(cursor)
        if interval is Interval.RAW:
            raw = self.store.query_raw(ids, from_ms, to_ms, limit + 1, after, metrics)
            more = len(raw) > limit
            raw = raw[:limit]
            points = []
            for p in raw:
                ch = p.pop("channel_id")
                points.append({"ts": p.pop("ts"), "channel": names[ch], **p})
            nxt = f"{points[-1]['ts']}.{ch}" if more else None
            return {"points": points, "next": nxt}
        if interval in (Interval.WEEK, Interval.MONTH):
            tz = self._device_tz(device)
            days = self.store.query_rollup(ids, Interval.DAY, from_ms, to_ms, MAX_LIMIT)
            merged = _merge(days, lambda ts: period_start(interval, tz, ts))
            return {"points": [public_rollup(p, names) for p in merged], "next": None}
        rows = self.store.query_rollup(ids, interval, from_ms, to_ms, limit + 1, after)
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "points": [public_rollup(p, names) for p in rows],
            "next": encode_cursor(rows[-1]) if more else None,
        }

    def _device_tz(self, device: dict[str, Any]) -> str:
        if device["site_id"] is None:
            return "UTC"
        return str(self.db.get_site(device["org_id"], device["site_id"])["timezone"])

    def site_energy(
        self, org_id: int, site_id: int, *, from_ms: int, to_ms: int, interval: Interval
    ) -> dict[str, Any]:
        """Energy used and its cost per interval, over the site's (non-sub-meter) channels."""
        site = self.db.get_site(org_id, site_id)
        if interval in (Interval.RAW, Interval.MINUTE):
            raise InvalidInput("site energy intervals are 1h, 1d, 1w and 1mo")
        if to_ms <= from_ms:
            raise InvalidInput("'to' must be after 'from'")
        tz, tariff = site["timezone"], Tariff.of(site["tariff"])
        zone = ZoneInfo(tz)
        ids = [c["id"] for c in self.db.site_channels(org_id, site_id)]
        buckets: dict[int, list[float]] = {}  # ts -> [energy_wh, cost]
        if ids and (interval is Interval.HOUR or not tariff.is_flat):
            # Time-of-use prices change within a day: price each hour, then group.
            for p in self.store.query_rollup(ids, Interval.HOUR, from_ms, to_ms, MAX_LIMIT):
                local = datetime.fromtimestamp(p["ts"] / 1000, zone)
                kwh = p["energy_mwh"] / 1e6
                key = (
                    p["ts"]
                    if interval is Interval.HOUR
                    else _bucket_of(interval, tz, rollups.local_day_start_ms(tz, p["ts"]))
                )
                acc = buckets.setdefault(key, [0.0, 0.0])
                acc[0] += kwh * 1000
                acc[1] += kwh * tariff.price_at(local)
        elif ids:
            for day, _ch, _n, e in self.store.daily_energy(ids, from_ms, to_ms):
                acc = buckets.setdefault(_bucket_of(interval, tz, day), [0.0, 0.0])
                acc[0] += e / 1000
                acc[1] += e / 1e6 * tariff.price_per_kwh
        if tariff.standing_charge_per_day and interval is not Interval.HOUR:
            for day in rollups.local_day_starts(tz, from_ms, to_ms):
                acc = buckets.setdefault(_bucket_of(interval, tz, day), [0.0, 0.0])
                acc[1] += tariff.standing_charge_per_day
        points = [
            {"ts": ts, "energy_wh": round(v[0], 3), "cost": round(v[1], 4)}
            for ts, v in sorted(buckets.items())
        ]
        return {"currency": tariff.currency, "timezone": tz, "points": points}


def _bucket_of(interval: Interval, tz: str, day_ms: int) -> int:
    return day_ms if interval is Interval.DAY else period_start(interval, tz, day_ms)
