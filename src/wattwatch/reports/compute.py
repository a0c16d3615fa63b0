"""The report's numbers: quarter-hour energy per channel in, totals, profiles and findings out.

Everything is derived from one matrix: energy (Wh) per channel and 15-minute slot of the
period, NaN where a channel sent nothing in that slot. NaN is never read as zero: totals say how
complete they are, days without data have no value, and the gaps are listed. The slot right
after a gap is kept out of demand figures (peak, base load, profiles) because a device with an
energy counter reports everything it used during the gap there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from wattwatch.reports.findings import findings
from wattwatch.reports.periods import Period, local_midnight_ms
from wattwatch.reports.settings import ReportSettings
from wattwatch.tariffs import Tariff

SLOT_MS = 900_000
SLOT_H = 0.25
# A gap shorter than this (in slots) is not listed: one quiet quarter is not worth a line.
MIN_GAP_SLOTS = 4
MAX_LISTED_GAPS = 100
# Base load: this percentile of the site's 15-minute demand over fully covered slots.
BASE_LOAD_PERCENTILE = 5.0
TOP_CONSUMERS = 5

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class ChannelMeta:
    """One channel of the report's scope, with where it sits."""

    id: int
    name: str
    device_id: int
    device_name: str
    area_id: int | None = None
    area_name: str | None = None
    appliance: str | None = None
    submeter: bool = False

    @property
    def label(self) -> str:
        return self.device_name if self.name == "mains" else f"{self.device_name} / {self.name}"


@dataclass(slots=True)
class ReportInput:
    """What ``compute_report`` needs; ``energy_wh`` is channels × slots, NaN = no data."""

    scope: dict[str, Any]
    site: dict[str, Any]
    period: Period
    tariff: Tariff
    settings: ReportSettings
    channels: list[ChannelMeta]
    energy_wh: F64
    now_ms: int
    include_standing_charge: bool = True
    comparisons: dict[str, dict[str, Any] | None] = field(default_factory=dict)


@dataclass(slots=True)
class _Slots:
    """Local-calendar facts of every slot of the period."""

    ts: I64
    day: I64  # index into period.days
    hour_index: I64  # index of the local clock hour (25 in a 25-hour day)
    hour_of_day: I64
    weekend: B
    open: B
    price: F64
    expected: B  # slot has ended by now: data could exist
    hour_ts: list[int]
    day_ms: list[int]


def _slot_calendar(inp: ReportInput) -> _Slots:
    period, zone = inp.period, ZoneInfo(inp.period.tz)
    from_ms, to_ms = period.from_ms, period.to_ms
    n = (to_ms - from_ms) // SLOT_MS
    ts = from_ms + np.arange(n, dtype=np.int64) * SLOT_MS
    day_ms = [local_midnight_ms(d, period.tz) for d in period.days]
    day = np.searchsorted(np.array(day_ms, dtype=np.int64), ts, side="right") - 1
    hour_of_day = np.empty(n, dtype=np.int64)
    weekday = np.empty(n, dtype=np.int64)
    minute0 = np.empty(n, dtype=np.bool_)
    open_ = np.empty(n, dtype=np.bool_)
    price = np.empty(n, dtype=np.float64)
    # Price and opening hours depend on (weekday, local minute) only: evaluate each once.
    cache: dict[tuple[int, int], tuple[bool, float]] = {}
    for i, t in enumerate(ts.tolist()):
        local = datetime.fromtimestamp(t / 1000, zone)
        key = (local.weekday(), local.hour * 60 + local.minute)
        facts = cache.get(key)
        if facts is None:
            facts = cache[key] = (inp.settings.is_open(local), inp.tariff.price_at(local))
        hour_of_day[i] = local.hour
        weekday[i] = key[0]
        minute0[i] = local.minute == 0
        open_[i], price[i] = facts
    minute0[0] = True
    hour_index = np.cumsum(minute0) - 1
    hour_ts = ts[minute0].tolist()
    return _Slots(
        ts=ts,
        day=day.astype(np.int64),
        hour_index=hour_index.astype(np.int64),
        hour_of_day=hour_of_day,
        weekend=weekday >= 5,
        open=open_,
        price=price,
        expected=ts + SLOT_MS <= inp.now_ms,
        hour_ts=hour_ts,
        day_ms=day_ms,
    )


def _r(value: float | None, digits: int = 3) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), digits)


def _share(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole > 0 else None


def _local(ts_ms: int, tz: str) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(tz)).isoformat(timespec="minutes")


def _cell_power_kw(demand: F64, valid: B, cells: I64, n_cells: int, rows: B) -> F64:
    """Average power (kW) per cell: per channel the mean of its valid slots, summed.

    A channel with no valid slot in a cell adds nothing; a cell where no channel has one is NaN.
    """
    total = np.zeros(n_cells)
    seen = np.zeros(n_cells, dtype=np.bool_)
    for c in np.flatnonzero(rows):
        ok = valid[c]
        counts = np.bincount(cells[ok], minlength=n_cells)
        sums = np.bincount(cells[ok], weights=demand[c][ok], minlength=n_cells)
        has = counts > 0
        total[has] += sums[has] / counts[has]
        seen |= has
    out = total / SLOT_H / 1000
    out[~seen] = np.nan
    return out


def _runs(mask: B) -> list[tuple[int, int]]:
    """[start, end) index runs where ``mask`` is true."""
    if not mask.any():
        return []
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(
        zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True)
    )


def _by_energy(row: dict[str, Any]) -> float:
    return -float(row["energy_kwh"] or 0.0)


def compute_report(inp: ReportInput) -> dict[str, Any]:
    """All figures of a report, as a JSON-ready dict (see docs/reports.md for the fields)."""
    period, tz, tariff = inp.period, inp.period.tz, inp.tariff
    cal = _slot_calendar(inp)
    n_slots = len(cal.ts)
    chans = inp.channels
    energy = inp.energy_wh.reshape(len(chans), n_slots).copy()
    # The report covers the period up to now (a device clock running ahead is not news).
    energy[:, ~cal.expected] = np.nan
    covered = ~np.isnan(energy)
    e0 = np.where(covered, energy, 0.0)
    # The slot after an uncovered one holds what a counter measured during the gap.
    after_gap = np.zeros_like(covered)
    after_gap[:, 1:] = covered[:, 1:] & ~covered[:, :-1] & cal.expected[:-1]
    valid = covered & ~after_gap
    demand = np.where(valid, e0, np.nan)

    submeter = np.array([c.submeter for c in chans], dtype=np.bool_)
    # A sub-meter sits behind another channel of the scope: counting it too would count twice,
    # unless the scope holds nothing but sub-meters (an area measured by plugs).
    counted = ~submeter if (~submeter).any() else np.ones(len(chans), dtype=np.bool_)
    n_counted = int(counted.sum())

    site_slot_wh = e0[counted].sum(axis=0) if chans else np.zeros(n_slots)
    total_wh = float(site_slot_wh.sum())
    energy_cost = float((site_slot_wh * cal.price).sum()) / 1000
    n_days = len(period.days)
    standing_per_day = tariff.standing_charge_per_day if inp.include_standing_charge else 0.0
    days_elapsed = sum(1 for d in cal.day_ms if d < inp.now_ms)
    standing = standing_per_day * min(n_days, days_elapsed)

    exp_counted = covered[counted][:, cal.expected] if chans else np.zeros((0, 0), dtype=bool)
    expected_slots = n_counted * int(cal.expected.sum())
    covered_slots = int(exp_counted.sum())
    coverage = covered_slots / expected_slots if expected_slots else None

    # -- demand: peak and base load ---------------------------------------------------------
    valid_counted = valid[counted] if chans else np.zeros((0, n_slots), dtype=bool)
    any_valid = valid_counted.any(axis=0)
    all_valid = valid_counted.all(axis=0) & any_valid
    site_demand_wh = np.where(valid_counted, e0[counted], 0.0).sum(axis=0)
    peak: dict[str, Any] | None = None
    if any_valid.any():
        i = int(np.argmax(np.where(any_valid, site_demand_wh, -np.inf)))
        peak = {
            "kw": _r(site_demand_wh[i] / SLOT_H / 1000),
            "ts": int(cal.ts[i]),
            "local": _local(int(cal.ts[i]), tz),
        }
    base_kw = None
    if all_valid.any():
        base_kw = float(np.percentile(site_demand_wh[all_valid], BASE_LOAD_PERCENTILE)) / 250
    expected_h = float(cal.expected.sum()) * SLOT_H
    base_kwh = base_kw * expected_h if base_kw is not None else None

    inside_wh = float(site_slot_wh[cal.open].sum())
    open_h = float((cal.open & cal.expected).sum()) * SLOT_H
    closed_h = expected_h - open_h

    # -- daily --------------------------------------------------------------------------------
    day_wh = np.bincount(cal.day, weights=site_slot_wh, minlength=n_days)
    day_cost = np.bincount(cal.day, weights=site_slot_wh * cal.price, minlength=n_days) / 1000
    day_expected = np.bincount(cal.day, weights=cal.expected.astype(float), minlength=n_days)
    day_slots = np.bincount(cal.day, minlength=n_days)
    day_cov_slots = np.bincount(
        cal.day, weights=(covered[counted] & cal.expected).sum(axis=0), minlength=n_days
    )
    day_peak = np.full(n_days, np.nan)
    np.fmax.at(day_peak, cal.day, np.where(any_valid, site_demand_wh, np.nan))
    day_bounds = [*cal.day_ms, period.to_ms]
    daily = []
    for d, day in enumerate(period.days):
        cov = None  # the day has not begun
        if day_expected[d]:
            cov = day_cov_slots[d] / (day_expected[d] * n_counted) if n_counted else 0.0
        status = (
            "future"
            if cov is None
            else "missing"
            if cov == 0
            else "partial"
            if cov < 0.9995 or day_expected[d] < day_slots[d]  # or the day is still going on
            else "complete"
        )
        has = status in ("partial", "complete")
        daily.append(
            {
                "date": day.isoformat(),
                "ts": cal.day_ms[d],
                "hours": (day_bounds[d + 1] - day_bounds[d]) / 3_600_000,
                "energy_kwh": _r(day_wh[d] / 1000) if has else None,
                "cost": _r(day_cost[d] + standing_per_day, 2) if has else None,
                "peak_kw": _r(day_peak[d] / SLOT_H / 1000) if has else None,
                "coverage": _r(cov, 4),
                "status": status,
            }
        )

    # -- hourly series and profiles -----------------------------------------------------------
    n_hours = len(cal.hour_ts)
    hour_wh = np.bincount(cal.hour_index, weights=site_slot_wh, minlength=n_hours)
    hour_cov = np.bincount(
        cal.hour_index, weights=(covered[counted] & cal.expected).sum(axis=0), minlength=n_hours
    )
    hour_exp = np.bincount(cal.hour_index, weights=cal.expected.astype(float), minlength=n_hours)
    hour_kw = _cell_power_kw(demand, valid, cal.hour_index, n_hours, counted)
    hourly = []
    for h, ts in enumerate(cal.hour_ts):
        cov = hour_cov[h] / (hour_exp[h] * n_counted) if hour_exp[h] and n_counted else None
        hourly.append(
            {
                "ts": ts,
                "local": _local(ts, tz),
                "energy_kwh": _r(hour_wh[h] / 1000, 4) if cov else None,
                "avg_kw": _r(hour_kw[h]),
                "coverage": _r(cov, 4),
            }
        )
    profile_cells = cal.hour_of_day + 24 * cal.weekend.astype(np.int64)
    profile = _cell_power_kw(demand, valid, profile_cells, 48, counted)
    heat_cells = cal.day * 24 + cal.hour_of_day
    heat = _cell_power_kw(demand, valid, heat_cells, n_days * 24, counted).reshape(n_days, 24)

    # -- per channel, device, area, appliance -----------------------------------------------
    ch_wh = e0.sum(axis=1)
    ch_cost = (e0 * cal.price).sum(axis=1) / 1000
    ch_inside = e0[:, cal.open].sum(axis=1)
    ch_peak = np.nanmax(np.where(valid, e0, -np.inf), axis=1, initial=-np.inf) / SLOT_H / 1000
    n_expected = int(cal.expected.sum())
    ch_cov = covered[:, cal.expected].sum(axis=1) / n_expected if n_expected else None
    ch_mean_valid = np.array(
        [e0[c][valid[c]].mean() if valid[c].any() else 0.0 for c in range(len(chans))]
    )
    catch_up_wh = float(
        np.clip(np.where(after_gap, e0 - ch_mean_valid[:, None], 0.0), 0, None).sum()
    )

    gaps: list[dict[str, Any]] = []
    ch_missing_days: list[list[str]] = []
    for c, ch in enumerate(chans):
        missing = ~covered[c] & cal.expected
        for a, b in _runs(missing):
            if b - a >= MIN_GAP_SLOTS:
                gaps.append(
                    {
                        "device_id": ch.device_id,
                        "device": ch.device_name,
                        "channel": ch.name,
                        "from_ts": int(cal.ts[a]),
                        "to_ts": int(cal.ts[b - 1]) + SLOT_MS,
                        "from_local": _local(int(cal.ts[a]), tz),
                        "to_local": _local(int(cal.ts[b - 1]) + SLOT_MS, tz),
                        "hours": (b - a) * SLOT_H,
                    }
                )
        per_day_cov = np.bincount(cal.day, weights=covered[c] & cal.expected, minlength=n_days)
        ch_missing_days.append(
            [
                period.days[d].isoformat()
                for d in range(n_days)
                if day_expected[d] and per_day_cov[d] == 0
            ]
        )
    gaps.sort(key=lambda g: (g["from_ts"], g["device"], g["channel"]))

    def group(key: Callable[[ChannelMeta], Any]) -> dict[Any, list[int]]:
        out: dict[Any, list[int]] = defaultdict(list)
        for c, ch in enumerate(chans):
            out[key(ch)].append(c)
        return out

    def totals(rows: Sequence[int]) -> dict[str, Any]:
        rows_arr = np.array(rows, dtype=np.int64)
        non_sub = rows_arr[~submeter[rows_arr]]
        use = non_sub if len(non_sub) else rows_arr
        wh = float(ch_wh[use].sum())
        inside = float(ch_inside[use].sum())
        demand_sum = np.where(valid[use], e0[use], 0.0).sum(axis=0)
        any_ok = valid[use].any(axis=0)
        peak_kw = float(demand_sum[any_ok].max()) / SLOT_H / 1000 if any_ok.any() else None
        cov = float(ch_cov[use].mean()) if ch_cov is not None else None
        # Average power while closed against while open: ~1 for a load that runs around the
        # clock, ~0 for one switched off at closing time.
        ratio = (
            ((wh - inside) / closed_h) / (inside / open_h)
            if open_h and closed_h and inside > 0
            else None
        )
        return {
            "energy_kwh": _r(wh / 1000),
            "share": _share(wh, total_wh),
            "cost": _r(float(ch_cost[use].sum()), 2),
            "outside_hours_kwh": _r((wh - inside) / 1000),
            "outside_hours_share": _share(wh - inside, wh),
            "closed_open_power_ratio": _r(ratio, 3),
            "peak_kw": _r(peak_kw),
            "coverage": _r(cov, 4),
            "submeter": bool(submeter[rows_arr].all()),
        }

    devices_out: list[dict[str, Any]] = []
    for (dev_id, dev_name), rows in group(lambda ch: (ch.device_id, ch.device_name)).items():
        missing_days = sorted(set().union(*(ch_missing_days[c] for c in rows)))
        area = chans[rows[0]].area_name
        devices_out.append(
            {
                "id": dev_id,
                "name": dev_name,
                "area": area,
                **totals(rows),
                "missing_days": missing_days,
            }
        )
    areas_out: list[dict[str, Any]] = [
        {"id": area_id, "name": area_name or "(no area)", **totals(rows)}
        for (area_id, area_name), rows in group(lambda ch: (ch.area_id, ch.area_name)).items()
    ]
    channels_out: list[dict[str, Any]] = [
        {
            "id": ch.id,
            "device_id": ch.device_id,
            "device": ch.device_name,
            "channel": ch.name,
            "appliance": ch.appliance,
            "submeter": ch.submeter,
            "energy_kwh": _r(ch_wh[c] / 1000),
            "share": _share(float(ch_wh[c]), total_wh),
            "cost": _r(float(ch_cost[c]), 2),
            "outside_hours_share": _share(float(ch_wh[c] - ch_inside[c]), float(ch_wh[c])),
            "peak_kw": _r(ch_peak[c]) if np.isfinite(ch_peak[c]) else None,
            "coverage": _r(float(ch_cov[c]), 4) if ch_cov is not None else None,
            "missing_days": ch_missing_days[c],
        }
        for c, ch in enumerate(chans)
    ]
    labelled = group(lambda ch: ch.appliance)
    appliances_out: list[dict[str, Any]] = (
        [{"name": name or "(not labelled)", **totals(rows)} for name, rows in labelled.items()]
        if any(k is not None for k in labelled)
        else []
    )
    for table in (devices_out, areas_out, appliances_out, channels_out):
        table.sort(key=_by_energy)

    # Top consumers: with sub-meters, the sub-metered loads and what no sub-meter sees;
    # without, the measured channels themselves.
    if submeter.any() and (~submeter).any():
        top: list[dict[str, Any]] = [
            {
                "name": chans[c].label,
                "energy_kwh": _r(ch_wh[c] / 1000),
                "share": _share(float(ch_wh[c]), total_wh),
            }
            for c in np.flatnonzero(submeter)
        ]
        rest = total_wh - float(ch_wh[submeter].sum())
        if rest > 0:
            top.append(
                {
                    "name": "Not sub-metered",
                    "energy_kwh": _r(rest / 1000),
                    "share": _share(rest, total_wh),
                }
            )
    else:
        top = [
            {"name": d["name"], "energy_kwh": d["energy_kwh"], "share": d["share"]}
            for d in devices_out
        ]
    top.sort(key=_by_energy)
    top = top[:TOP_CONSUMERS]

    # -- comparisons ----------------------------------------------------------------------
    comparison: dict[str, Any] = {}
    for name, other in inp.comparisons.items():
        if other is None or other.get("energy_kwh") is None:
            comparison[name] = None
            continue
        before = float(other["energy_kwh"])
        comparison[name] = {
            **other,
            "change_kwh": _r(total_wh / 1000 - before),
            "change_pct": _r((total_wh / 1000 - before) / before * 100, 1) if before > 0 else None,
        }

    co2_factor = inp.settings.co2_kg_per_kwh
    report: dict[str, Any] = {
        "report": {
            "version": 1,
            "scope": inp.scope,
            "site": {
                "id": inp.site["id"],
                "name": inp.site["name"],
                "timezone": tz,
            },
            "period": {
                "kind": str(period.kind),
                "label": period.label,
                "start": period.start.isoformat(),
                "end": period.days[-1].isoformat(),
                "from_ts": period.from_ms,
                "to_ts": period.to_ms,
                "days": n_days,
                "hours": (period.to_ms - period.from_ms) / 3_600_000,
            },
            "generated_ts": inp.now_ms,
            "currency": tariff.currency,
            "tariff": tariff.model_dump(),
            "business_hours": [w.model_dump() for w in inp.settings.business_hours],
        },
        "summary": {
            "energy_kwh": _r(total_wh / 1000),
            "cost": {
                "energy": _r(energy_cost, 2),
                "standing": _r(standing, 2),
                "total": _r(energy_cost + standing, 2),
            },
            "avg_power_kw": _r(total_wh / 1000 / expected_h) if expected_h else None,
            "peak": peak,
            "base_load_kw": _r(base_kw),
            "base_load_kwh": _r(base_kwh),
            "base_load_share": _share(base_kwh or 0.0, total_wh / 1000) if base_kwh else None,
            "business_hours": {
                "inside_kwh": _r(inside_wh / 1000),
                "outside_kwh": _r((total_wh - inside_wh) / 1000),
                "outside_share": _share(total_wh - inside_wh, total_wh),
            },
            "co2_kg": _r(total_wh / 1000 * co2_factor, 1),
            "co2_kg_per_kwh": co2_factor,
        },
        "completeness": {
            "coverage": _r(coverage, 4),
            "expected_slots": expected_slots,
            "covered_slots": covered_slots,
            "slot_minutes": SLOT_MS // 60_000,
            "missing_days": [d["date"] for d in daily if d["status"] == "missing"],
            "partial_days": [d["date"] for d in daily if d["status"] == "partial"],
            "gaps": gaps[:MAX_LISTED_GAPS],
            "gap_count": len(gaps),
            "catch_up_kwh": _r(catch_up_wh / 1000),
        },
        "daily": daily,
        "hourly": hourly,
        "profile": {
            "weekday_kw": [_r(v) for v in profile[:24]],
            "weekend_kw": [_r(v) for v in profile[24:]],
        },
        "heatmap_kw": [[_r(v) for v in row] for row in heat],
        "breakdown": {
            "areas": areas_out,
            "devices": devices_out,
            "channels": channels_out,
            "appliances": appliances_out,
        },
        "top_consumers": top,
        "comparison": comparison,
    }
    report["findings"] = findings(report)
    return report
