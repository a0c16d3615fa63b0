"""A month of simulated readings with known true energy, written straight into the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from wattwatch.app import Wattwatch
from wattwatch.domain import Role
from wattwatch.registry.service import Principal
from wattwatch.store.base import StoredRow


@dataclass
class SimDevice:
    """A load: ``base_w`` always, plus ``work_w`` Monday–Friday ``on_h``–``off_h`` local time."""

    name: str
    base_w: float
    work_w: float = 0.0
    on_h: int = 8
    off_h: int = 18
    counter: bool = True
    noise_w: float = 0.0
    reset_at: float | None = None  # fraction of the series where the counter restarts at 0
    area: str | None = None
    missing_days: list[date] = field(default_factory=list)
    # filled by load():
    device_id: int = 0
    channel_id: int = 0
    ts: Any = None
    true_wh: Any = None  # energy attributed to each reading (0 for the first / after gaps)


def local_ms(day: date, tz: str, hour: int = 0) -> int:
    return int(datetime.combine(day, time(hour), tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def power_series(dev: SimDevice, ts: np.ndarray, tz: str, rng: np.random.Generator) -> np.ndarray:
    zone = ZoneInfo(tz)
    # Local hour and weekday per reading (per-minute resolution is plenty for a schedule).
    minutes = np.unique(ts // 60_000)
    lookup = {}
    for m in minutes.tolist():
        local = datetime.fromtimestamp(m * 60, zone)
        lookup[m] = local.weekday() < 5 and dev.on_h <= local.hour < dev.off_h
    working = np.array([lookup[m] for m in (ts // 60_000).tolist()])
    p = dev.base_w + dev.work_w * working + rng.normal(0, dev.noise_w, len(ts)) * (dev.noise_w > 0)
    return np.maximum(p, 0.0)


def load(
    ww: Wattwatch,
    devices: list[SimDevice],
    *,
    tz: str = "Europe/Madrid",
    start: date = date(2026, 10, 1),
    days: int = 31,
    step_s: int = 60,
    tariff: dict[str, Any] | None = None,
    seed: int = 7,
    shuffle_batches: bool = True,
    org_id: int | None = None,
    site_name: str = "Sim office",
) -> tuple[Principal, dict[str, Any]]:
    """Create an org, a site in ``tz`` and the devices; write their readings."""
    rng = np.random.default_rng(seed)
    org_id = org_id or ww.registry.db.create_org("sim")
    owner = Principal(0, org_id, Role.OWNER, "sim@example.com")
    site = ww.registry.create_site(owner, site_name, tz, tariff or {"price_per_kwh": 0.2})
    area_ids: dict[str, int] = {}
    from sqlalchemy import insert

    from wattwatch.store.schema import areas

    for dev in devices:
        if dev.area and dev.area not in area_ids:
            with ww.store.engine.begin() as conn:
                area_ids[dev.area] = int(
                    conn.execute(
                        insert(areas).values(site_id=site["id"], name=dev.area)
                    ).inserted_primary_key[0]
                )
    from_ms = local_ms(start, tz)
    to_ms = local_ms(start + timedelta(days=days), tz)
    batches: list[list[StoredRow]] = []
    for dev in devices:
        record, _ = ww.registry.create_device(
            owner, name=dev.name, site_id=site["id"], area_id=area_ids.get(dev.area or "")
        )
        dev.device_id, dev.channel_id = record["id"], record["channels"][0]["id"]
        ts = np.arange(from_ms, to_ms, step_s * 1000, dtype=np.int64)
        keep = np.ones(len(ts), dtype=bool)
        for day in dev.missing_days:
            keep &= (ts < local_ms(day, tz)) | (ts >= local_ms(day + timedelta(days=1), tz))
        ts = ts[keep]
        p_mw = np.round(power_series(dev, ts, tz, rng) * 1000).astype(np.int64)
        dt = np.diff(ts)
        pair_wh = (p_mw[1:] + p_mw[:-1]) * dt / 7_200_000 / 1000  # trapezoid, Wh
        bridged = dt <= 15 * 60_000
        true_wh = np.concatenate(([0.0], np.where(bridged | dev.counter, pair_wh, 0.0)))
        dev.ts, dev.true_wh = ts, true_wh
        e_mwh: list[int | None]
        if dev.counter:
            counter = 5_000_000 + np.round(np.cumsum(true_wh) * 1000).astype(np.int64)
            if dev.reset_at is not None:
                r = int(len(counter) * dev.reset_at)
                counter[r:] -= counter[r - 1]  # restarts at 0 just after reading r-1
            e_mwh = counter.tolist()
        else:
            e_mwh = [None] * len(ts)
        rows = [
            StoredRow(dev.channel_id, t, p, e, 230_000, None, None)
            for t, p, e in zip(ts.tolist(), p_mw.tolist(), e_mwh, strict=True)
        ]
        step = 20_000
        batches.extend(rows[i : i + step] for i in range(0, len(rows), step))
    if shuffle_batches:
        # Late and out-of-order batches: the rollups must come out the same.
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order]
    for batch in batches:
        ww.store.write_readings(batch)
    return owner, site


def true_daily_wh(dev: SimDevice, tz: str, start: date, days: int) -> np.ndarray:
    starts = np.array([local_ms(start + timedelta(days=i), tz) for i in range(days + 1)])
    idx = np.searchsorted(starts, dev.ts, side="right") - 1
    inside = (idx >= 0) & (idx < days)
    return np.bincount(idx[inside], weights=dev.true_wh[inside], minlength=days)[:days]
