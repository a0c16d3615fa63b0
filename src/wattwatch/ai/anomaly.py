"""Faulty-equipment detection: base-load creep, cycle duration/signature drift, off-profile use.

Every detector reads a power series (W, 1-minute, NaN = missing) and compares the recent past
with a trailing reference learned from the same device (the previous ``reference_days``), so
it adapts to seasons and needs no separate training step. Thresholds are calibrated on the
device's own reference (robust spreads and empirical quantiles), not fixed watts alone.
Findings are episodes: one finding when a condition starts, none again until it clears.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

KINDS = ("base_load_creep", "cycle_duration_drift", "signature_drift", "profile_deviation")


@dataclass(frozen=True, slots=True)
class Finding:
    """One anomaly: what, since when, how bad, in plain language."""

    kind: str
    start: pd.Timestamp
    detected_at: pd.Timestamp
    severity: str
    magnitude: float
    explanation: str


def _when(ts: pd.Timestamp) -> str:
    return f"{ts.day_name()} {ts:%d %b %H:%M}"


def _severity(ratio: float) -> str:
    return "critical" if ratio >= 3 else "warning" if ratio >= 1.5 else "info"


@dataclass(frozen=True, slots=True)
class BaseLoadConfig:
    window_h: int = 12
    quantile: float = 0.05
    reference_days: int = 14
    min_rise_w: float = 90.0
    rel_rise: float = 0.25
    mad_k: float = 4.0
    persist_h: int = 3


def detect_base_load_creep(series: pd.Series, cfg: BaseLoadConfig | None = None) -> list[Finding]:
    """Standby/base load stepping up: the low quantile of the last ``window_h`` hours compared
    with the same hour of day over the previous ``reference_days``."""
    cfg = cfg or BaseLoadConfig()
    s = series.astype(float)
    w = cfg.window_h * 60
    low = s.rolling(w, min_periods=w // 2).quantile(cfg.quantile)
    hourly = low.resample("1h").last()
    hourly_low = s.rolling(60, min_periods=30).quantile(cfg.quantile).resample("1h").last()
    tab = pd.DataFrame({"q": hourly.to_numpy()}, index=hourly.index)
    day = tab.index.normalize()
    pivot = pd.Series(tab["q"].to_numpy(), index=pd.MultiIndex.from_arrays([day, tab.index.hour]))
    grid = pivot.unstack()  # rows days, columns hours
    ref = grid.shift(1).rolling(cfg.reference_days, min_periods=5).median()
    mad = (grid.shift(1) - ref.shift(0)).abs().rolling(cfg.reference_days, min_periods=5).median()
    ref_h = (
        ref.stack(future_stack=True).reindex(list(zip(day, tab.index.hour, strict=True))).to_numpy()
    )
    mad_h = (
        mad.stack(future_stack=True).reindex(list(zip(day, tab.index.hour, strict=True))).to_numpy()
    )
    q = tab["q"].to_numpy()
    thr = np.maximum.reduce(
        [
            np.full(q.shape, cfg.min_rise_w),
            cfg.mad_k * 1.4826 * np.nan_to_num(mad_h),
            cfg.rel_rise * np.nan_to_num(ref_h),
        ]
    )
    excess = q - ref_h
    over = np.nan_to_num(excess, nan=-np.inf) >= thr
    findings: list[Finding] = []
    run = 0
    active = False
    calm = 0
    for i in range(len(q)):
        if active:
            calm = calm + 1 if not (np.nan_to_num(excess[i], nan=0.0) >= 0.5 * thr[i]) else 0
            if calm >= 6:
                active, run = False, 0
            continue
        run = run + 1 if over[i] else 0
        if run >= cfg.persist_h:
            active, calm = True, 0
            detected = tab.index[i]
            before, after = float(ref_h[i]), float(q[i])
            # start: first hour from which the 1-hour low level stayed above the midpoint
            lo_win = hourly_low.loc[detected - pd.Timedelta(hours=cfg.window_h + 24) : detected]
            above = (lo_win >= before + 0.5 * (after - before)).to_numpy()
            start = detected - pd.Timedelta(hours=cfg.window_h)
            if above.size and above[-1]:
                k = above.size - 1
                while k > 0 and above[k - 1]:
                    k -= 1
                start = pd.Timestamp(lo_win.index[k]) - pd.Timedelta(hours=1)
            findings.append(
                Finding(
                    kind="base_load_creep",
                    start=start,
                    detected_at=detected,
                    severity=_severity((after - before) / max(thr[i], 1.0)),
                    magnitude=after - before,
                    explanation=(
                        f"base load rose from {before:.0f} W to {after:.0f} W since {_when(start)}"
                    ),
                )
            )
    return findings


@dataclass(frozen=True, slots=True)
class CycleConfig:
    merge_gap_min: int = 5
    group: int = 3
    reference_cycles: int = 60
    min_reference_cycles: int = 20
    margin: float = 0.15
    min_rel_change: float = 0.3
    # 1-minute data makes durations whole minutes: 3 → 4 min is +33 % yet no drift
    min_abs_change_min: float = 1.5
    power_rel_change: float = 0.15


def appliance_cycles(
    power_w: pd.Series, threshold_w: float, merge_gap_min: int = 5
) -> pd.DataFrame:
    """Runs of power ≥ threshold (gaps ≤ ``merge_gap_min`` bridged): start, end, duration,
    energy and median on-power."""
    y = power_w.to_numpy(dtype=float)
    on = np.nan_to_num(y) >= threshold_w
    pos = np.flatnonzero(on)
    cols = ["start", "end", "duration_min", "energy_wh", "power_w"]
    if pos.size == 0:
        return pd.DataFrame(columns=cols)
    breaks = np.flatnonzero(np.diff(pos) > merge_gap_min + 1)
    starts = np.concatenate([[pos[0]], pos[breaks + 1]])
    ends = np.concatenate([pos[breaks], [pos[-1]]])
    idx = pd.DatetimeIndex(power_w.index)
    rows = []
    for a, b in zip(starts, ends, strict=True):
        seg = np.nan_to_num(y[a : b + 1])
        rows.append(
            (
                idx[a],
                idx[b] + pd.Timedelta(minutes=1),
                int(b - a + 1),
                float(seg.sum()) / 60.0,
                # the plateau, not the ramps that 1-minute means smear into a short run
                float(np.percentile(seg, 90)),
            )
        )
    return pd.DataFrame(rows, columns=cols)


def _drift_finding(
    kind: str, cyc: pd.DataFrame, i: int, g: int, severity: str, magnitude: float, text: str
) -> Finding:
    start = pd.Timestamp(cyc["start"].iloc[i - g + 1])
    return Finding(
        kind=kind,
        start=start,
        detected_at=pd.Timestamp(cyc["end"].iloc[i]),
        severity=severity,
        magnitude=magnitude,
        explanation=f"{text} since {_when(start)}",
    )


def detect_cycle_drift(
    power_w: pd.Series, threshold_w: float, name: str = "appliance", cfg: CycleConfig | None = None
) -> list[Finding]:
    """An appliance's cycles getting longer (duty-cycle drift) or its on-power changing
    (signature drift).

    Duration: the statistic is the *shortest* of the last ``group`` cycles (a fault stretches
    every cycle, while a user's occasional long programme stretches one); on-power: the
    median over the last ``group`` cycles. Each must leave the range the
    same statistic covered over the previous ``reference_cycles`` cycles by ``margin`` and
    differ from the reference median by at least ``min_rel_change`` (duration) or
    ``power_rel_change`` (power). ``threshold_w`` should be an activity level (well below
    the on-power) so that one cycle is one run of the appliance.
    """
    cfg = cfg or CycleConfig()
    cyc = appliance_cycles(power_w, threshold_w, cfg.merge_gap_min)
    findings: list[Finding] = []
    g = cfg.group
    if len(cyc) < cfg.min_reference_cycles + g:
        return findings
    dur = cyc["duration_min"].to_numpy(float)
    pw = cyc["power_w"].to_numpy(float)
    roll_dur = pd.Series(dur).rolling(g).min().to_numpy()
    roll_pw = pd.Series(pw).rolling(g).median().to_numpy()
    active = {"cycle_duration_drift": False, "signature_drift": False}
    for i in range(cfg.min_reference_cycles + g - 1, len(cyc)):
        first = max(0, i - g + 1 - cfg.reference_cycles)
        last = i - g + 1  # reference cycles: [first, last)
        groups = np.arange(first + g - 1, last)  # groups entirely inside the reference
        if last - first < cfg.min_reference_cycles or groups.size < 2:
            continue
        ref_dur = float(np.median(dur[first:last]))
        hi = max(
            float(np.max(roll_dur[groups])) * (1 + cfg.margin),
            ref_dur * (1 + cfg.min_rel_change),
            ref_dur + cfg.min_abs_change_min,
        )
        key = "cycle_duration_drift"
        if roll_dur[i] > hi and not active[key]:
            active[key] = True
            rise = roll_dur[i] / ref_dur - 1
            findings.append(
                _drift_finding(
                    key,
                    cyc,
                    i,
                    g,
                    _severity(rise / cfg.min_rel_change),
                    rise,
                    f"{name} cycles now run at least {roll_dur[i]:.0f} min, "
                    f"{100 * rise:.0f} % longer than the usual {ref_dur:.0f} min,",
                )
            )
        elif roll_dur[i] <= ref_dur * (1 + 0.5 * cfg.min_rel_change):
            active[key] = False
        ref_pw = float(np.median(pw[first:last]))
        p_hi = max(
            float(np.max(roll_pw[groups])) * (1 + cfg.margin), ref_pw * (1 + cfg.power_rel_change)
        )
        p_lo = min(
            float(np.min(roll_pw[groups])) * (1 - cfg.margin), ref_pw * (1 - cfg.power_rel_change)
        )
        key = "signature_drift"
        if (roll_pw[i] > p_hi or roll_pw[i] < p_lo) and not active[key]:
            active[key] = True
            change = roll_pw[i] / ref_pw - 1
            verb = "rose" if change > 0 else "fell"
            findings.append(
                _drift_finding(
                    key,
                    cyc,
                    i,
                    g,
                    _severity(abs(change) / cfg.power_rel_change),
                    change,
                    f"{name} power when running {verb} from {ref_pw:.0f} W to {roll_pw[i]:.0f} W",
                )
            )
        elif abs(roll_pw[i] / ref_pw - 1) <= 0.5 * cfg.power_rel_change:
            active[key] = False
    return findings


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    reference_days: int = 28
    window_h: int = 6
    quantile: float = 0.998
    margin: float = 1.25
    min_excess_w: float = 150.0


def detect_profile_deviation(series: pd.Series, cfg: ProfileConfig | None = None) -> list[Finding]:
    """Sustained use above the learned weekly profile: the mean excess over the last ``window_h``
    hours above the hour-of-day median (weekday/weekend apart) of the previous
    ``reference_days``, against the ``quantile`` of the same statistic in the reference."""
    cfg = cfg or ProfileConfig()
    hourly = series.astype(float).resample("1h").mean()
    idx = pd.DatetimeIndex(hourly.index)
    y = hourly.to_numpy()
    key = np.asarray(idx.hour + 24 * (idx.day_of_week >= 5), dtype=int)
    n = y.size
    ref_hours = cfg.reference_days * 24
    excess = np.full(n, np.nan)
    findings: list[Finding] = []
    stats = np.full(n, np.nan)
    profile_at = np.full(n, np.nan)
    # reference profile refreshed daily
    for day0 in range(ref_hours, n, 24):
        hist_y, hist_k = y[day0 - ref_hours : day0], key[day0 - ref_hours : day0]
        prof = np.full(48, np.nan)
        for k in range(48):
            v = hist_y[(hist_k == k) & np.isfinite(hist_y)]
            if v.size >= 3:
                prof[k] = np.median(v)
        sl = slice(day0, min(n, day0 + 24))
        profile_at[sl] = prof[key[sl]]
    excess = y - profile_at
    stats = (
        pd.Series(excess).rolling(cfg.window_h, min_periods=cfg.window_h // 2 + 1).mean().to_numpy()
    )
    active = False
    for day0 in range(2 * ref_hours, n, 24):
        hist = stats[day0 - ref_hours : day0]
        hist = hist[np.isfinite(hist)]
        if hist.size < 100:
            continue
        limit = max(cfg.min_excess_w, cfg.margin * float(np.quantile(hist, cfg.quantile)))
        for i in range(day0, min(n, day0 + 24)):
            if not np.isfinite(stats[i]):
                continue
            if stats[i] > limit and not active:
                active = True
                start = pd.Timestamp(idx[max(0, i - cfg.window_h + 1)])
                findings.append(
                    Finding(
                        kind="profile_deviation",
                        start=start,
                        detected_at=pd.Timestamp(idx[i]) + pd.Timedelta(hours=1),
                        severity=_severity(stats[i] / limit),
                        magnitude=float(stats[i]),
                        explanation=(
                            f"used {stats[i]:.0f} W more than usual for this time of the week "
                            f"over the {cfg.window_h} h to "
                            f"{_when(pd.Timestamp(idx[i]) + pd.Timedelta(hours=1))}"
                        ),
                    )
                )
            elif stats[i] < 0.5 * limit:
                active = False
    return findings


def inject_base_load_step(
    series: pd.Series, start: pd.Timestamp, step_w: float = 150.0
) -> pd.Series:
    """A copy of ``series`` with ``step_w`` added from ``start`` on (gaps stay gaps)."""
    out = series.astype(float).copy()
    out[out.index >= start] += step_w
    return out


def inject_longer_cycles(
    appliance_w: pd.Series,
    aggregate_w: pd.Series,
    start: pd.Timestamp,
    factor: float = 1.5,
    threshold_w: float = 10.0,
    merge_gap_min: int = 5,
) -> tuple[pd.Series, pd.Series]:
    """Make every cycle of an appliance starting at or after ``start`` run ``factor`` × longer.

    A cycle (power ≥ ``threshold_w``, short gaps bridged) is time-stretched by linear
    interpolation; the stretched profile overwrites the minutes after it (taking the larger
    value) and the difference is added to the aggregate. Returns (appliance, aggregate).
    """
    y = appliance_w.to_numpy(dtype=float).copy()
    orig = np.nan_to_num(y)
    new = orig.copy()
    cyc = appliance_cycles(appliance_w, threshold_w, merge_gap_min)
    idx = pd.DatetimeIndex(appliance_w.index)
    for s, e in zip(cyc["start"], cyc["end"], strict=True):
        if s < start:
            continue
        a = int(idx.get_loc(s))
        b = int(idx.get_loc(e - pd.Timedelta(minutes=1))) + 1
        seg = orig[a:b]
        m = round(seg.size * factor)
        stretched = np.interp(np.linspace(0, seg.size - 1, m), np.arange(seg.size), seg)
        stop = min(a + m, new.size)
        new[a:stop] = np.maximum(new[a:stop], stretched[: stop - a])
        new[a:b] = stretched[: b - a]
    nan = ~np.isfinite(y)
    new[nan] = np.nan
    agg = aggregate_w.to_numpy(dtype=float) + np.nan_to_num(new - orig)
    return (
        pd.Series(new, index=appliance_w.index, name=appliance_w.name),
        pd.Series(agg, index=aggregate_w.index, name=aggregate_w.name),
    )


# Appliances that run programmes with pauses between phases: a cycle is the whole programme.
PROGRAMME_APPLIANCES = frozenset({"Dishwasher", "WashingMachine", "TumbleDryer"})


def activity_threshold_w(on_threshold_w: float) -> float:
    """Activity level for cycle segmentation: a fifth of the on threshold."""
    return 0.2 * on_threshold_w


def cycle_config(appliance: str) -> CycleConfig:
    """Cycle settings per appliance kind (programmes bridge 30-minute pauses)."""
    return CycleConfig(merge_gap_min=30) if appliance in PROGRAMME_APPLIANCES else CycleConfig()


def detect_all(
    aggregate_w: pd.Series,
    appliances_w: pd.DataFrame | None = None,
    thresholds_w: dict[str, float] | None = None,
) -> list[Finding]:
    """Every detector on a monitor's aggregate and (optionally) per-appliance series."""
    found = detect_base_load_creep(aggregate_w) + detect_profile_deviation(aggregate_w)
    if appliances_w is not None:
        for name in appliances_w.columns:
            on_w = (thresholds_w or {}).get(str(name), 50.0)
            found += detect_cycle_drift(
                appliances_w[name], activity_threshold_w(on_w), str(name), cycle_config(str(name))
            )
    return sorted(found, key=lambda f: f.detected_at)


@dataclass(frozen=True, slots=True)
class InjectionResult:
    """Detection of one injected fault."""

    fault: str
    device: str
    start: pd.Timestamp
    detected: bool
    delay_h: float


def _first_after(
    findings: list[Finding], kinds: set[str], start: pd.Timestamp, horizon: pd.Timedelta
) -> float:
    hits = [
        f.detected_at
        for f in findings
        if f.kind in kinds and start <= f.detected_at <= start + horizon
    ]
    return (min(hits) - start) / pd.Timedelta(hours=1) if hits else float("nan")


def evaluate_anomaly_detection(
    aggregate_w: pd.Series,
    appliances_w: pd.DataFrame,
    thresholds_w: dict[str, float],
    n_starts: int = 8,
    warmup_days: int = 28,
    horizon_days: int = 7,
    step_w: float = 150.0,
    stretch: float = 1.5,
) -> dict[str, object]:
    """False alarms on the untouched data and detection delays of injected faults.

    Devices: the monitor (base-load and profile detectors on the aggregate) and each
    sub-metered appliance (cycle detectors). False alarms count findings after
    ``warmup_days`` per device-month (30 days of valid data). Faults are injected at
    ``n_starts`` times spread over the data after the warm-up, one at a time: a ``step_w``
    base-load step on the aggregate, and every cycle of one appliance ``stretch`` × longer.
    Only data up to ``horizon_days`` after the fault is given to the detectors.
    """
    idx = pd.DatetimeIndex(aggregate_w.index)
    t0 = idx[0] + pd.Timedelta(days=warmup_days)
    after = aggregate_w.index >= t0
    months = float(np.isfinite(aggregate_w.to_numpy(dtype=float)[after]).sum()) / (30 * 1440)
    false_alarms: dict[str, int] = {}
    mains = detect_base_load_creep(aggregate_w) + detect_profile_deviation(aggregate_w)
    false_alarms["mains"] = sum(f.detected_at >= t0 for f in mains)
    for name in appliances_w.columns:
        on_w = thresholds_w[str(name)]
        found = detect_cycle_drift(
            appliances_w[name], activity_threshold_w(on_w), str(name), cycle_config(str(name))
        )
        false_alarms[str(name)] = sum(f.detected_at >= t0 for f in found)
    horizon = pd.Timedelta(days=horizon_days)
    last = idx[-1] - horizon
    starts = [t0 + (last - t0) * (k + 0.5) / n_starts for k in range(n_starts)]
    # start mid-day on a round hour: the fault time is not aligned with anything
    starts = [pd.Timestamp(s).floor("h") for s in starts]
    results: list[InjectionResult] = []
    for start in starts:
        window = aggregate_w.index <= start + horizon
        agg = aggregate_w[window]
        stepped = inject_base_load_step(agg, start, step_w)
        delay = _first_after(detect_base_load_creep(stepped), {"base_load_creep"}, start, horizon)
        results.append(
            InjectionResult("base_load_step", "mains", start, bool(np.isfinite(delay)), delay)
        )
        for name in appliances_w.columns:
            on_w = thresholds_w[str(name)]
            app = appliances_w[name][window]
            longer, _ = inject_longer_cycles(
                app,
                agg,
                start,
                stretch,
                activity_threshold_w(on_w),
                cycle_config(str(name)).merge_gap_min,
            )
            found = detect_cycle_drift(
                longer, activity_threshold_w(on_w), str(name), cycle_config(str(name))
            )
            delay = _first_after(found, {"cycle_duration_drift"}, start, horizon)
            results.append(
                InjectionResult("longer_cycles", str(name), start, bool(np.isfinite(delay)), delay)
            )
    per_device: dict[str, dict[str, float]] = {}
    for dev in ["mains", *[str(c) for c in appliances_w.columns]]:
        rs = [r for r in results if r.device == dev]
        delays = np.array([r.delay_h for r in rs])
        found = np.isfinite(delays)
        per_device[dev] = {
            "fault": rs[0].fault if rs else "",  # type: ignore[dict-item]
            "injected": float(len(rs)),
            "detected_within_24h": float(np.sum(delays[found] <= 24)),
            "detected_within_horizon": float(found.sum()),
            "median_delay_h": float(np.median(delays[found])) if found.any() else float("nan"),
            "false_alarms": float(false_alarms[dev]),
            "false_alarms_per_device_month": false_alarms[dev] / months if months else float("nan"),
        }
    return {"device_months_each": months, "devices": per_device}
