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


# Runs shorter than this are one power level (a boil, a heating): measured in minutes at
# the plateau, to a fraction of a minute; longer runs are programmes, measured in minutes.
SHORT_RUN_MIN = 10


@dataclass(frozen=True, slots=True)
class CycleConfig:
    """Cycle segmentation and drift settings.

    Signature (on-power) drift: ``group``, ``reference_cycles``, ``min_reference_cycles``,
    ``margin``, ``power_rel_change``. Duration drift: the shape match and sequential test
    fields below ``power_rel_change``; ``min_rel_change`` is the smallest lengthening reported.
    """

    merge_gap_min: int = 5
    group: int = 3
    reference_cycles: int = 60
    min_reference_cycles: int = 20
    margin: float = 0.15
    min_rel_change: float = 0.3
    # the smallest lengthening in minutes worth a finding (short runs are timed to seconds)
    min_abs_change_min: float = 0.5
    power_rel_change: float = 0.15
    # duration drift: cycles are compared with past cycles of the same shape (programme)
    shape_points: int = 24
    shape_tolerance: float = 0.25
    # shorter runs are all one programme: at 1-minute resolution their shape is their edges
    shape_min_minutes: int = SHORT_RUN_MIN
    min_matches: int = 3
    min_residuals: int = 5
    duration_reference_cycles: int = 100
    min_duration_reference: int = 5
    # the lengthening the sequential test is designed for (log-likelihood ratio per cycle)
    design_rel_change: float = 0.4
    sigma_floor: float = 0.05
    clip_sd: float = 3.0
    # target mean time between false alarms, converted to cycles with the device's own rate
    false_alarm_months: float = 3.0


def _cumulative(seg: np.ndarray) -> np.ndarray:
    """Energy (W·min) of a piecewise-constant minute profile at the minute boundaries 0…L."""
    return np.concatenate([[0.0], np.cumsum(seg)])


def _bin_means(seg: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean power of a piecewise-constant minute profile over the intervals between ``edges``
    (in minutes from its start, within 0…len(seg))."""
    c = np.interp(edges, np.arange(seg.size + 1, dtype=float), _cumulative(seg))
    width = np.diff(edges)
    return np.asarray(np.diff(c) / np.where(width > 0, width, 1.0), dtype=float)


def stretch_profile(seg: np.ndarray, factor: float) -> np.ndarray:
    """The minute means of a piecewise-constant profile played ``factor`` × slower.

    Power levels are kept and the energy grows by exactly ``factor``; the last minute holds
    the partial remainder (its mean over the whole minute)."""
    seg = np.nan_to_num(np.asarray(seg, dtype=float))
    total = seg.size * factor
    m = int(np.ceil(total - 1e-9))
    edges = np.minimum(np.arange(m + 1, dtype=float), total) / factor
    out = _bin_means(seg, edges)
    # a partial last minute: mean over the full minute, not over its covered part
    covered = np.minimum(np.arange(1, m + 1, dtype=float), total) - np.arange(m, dtype=float)
    return np.asarray(out * covered, dtype=float)


def _shape(seg: np.ndarray, points: int) -> np.ndarray:
    """A cycle's power profile over relative time (``points`` bins): invariant to stretching."""
    seg = np.nan_to_num(np.asarray(seg, dtype=float))
    return _bin_means(seg, np.linspace(0.0, float(seg.size), points + 1))


def _active_minutes(seg: np.ndarray, plateau_w: float) -> float:
    """A run's duration: for short runs the minutes at full (plateau) power, so that a
    2.5-minute boil read as 3000, 3000, 1500 W counts 2.5 min, not 3; longer runs count
    whole minutes."""
    seg = np.nan_to_num(np.asarray(seg, dtype=float))
    if seg.size >= SHORT_RUN_MIN or plateau_w <= 0:
        return float(seg.size)
    return float(np.minimum(seg / plateau_w, 1.0).sum())


def appliance_cycles(
    power_w: pd.Series, threshold_w: float, merge_gap_min: int = 5
) -> pd.DataFrame:
    """Runs of power ≥ threshold (gaps ≤ ``merge_gap_min`` bridged): start, end, duration
    (whole minutes), energy, median on-power, and ``active_min`` (duration with partial first
    and last minutes)."""
    y = power_w.to_numpy(dtype=float)
    on = np.nan_to_num(y) >= threshold_w
    pos = np.flatnonzero(on)
    cols = ["start", "end", "duration_min", "energy_wh", "power_w", "active_min"]
    if pos.size == 0:
        return pd.DataFrame(columns=cols)
    breaks = np.flatnonzero(np.diff(pos) > merge_gap_min + 1)
    starts = np.concatenate([[pos[0]], pos[breaks + 1]])
    ends = np.concatenate([pos[breaks], [pos[-1]]])
    idx = pd.DatetimeIndex(power_w.index)
    rows = []
    for a, b in zip(starts, ends, strict=True):
        seg = np.nan_to_num(y[a : b + 1])
        # the plateau, not the ramps that 1-minute means smear into a short run
        plateau = float(np.percentile(seg, 90))
        rows.append(
            (
                idx[a],
                idx[b] + pd.Timedelta(minutes=1),
                int(b - a + 1),
                float(seg.sum()) / 60.0,
                plateau,
                _active_minutes(seg, plateau),
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


def _fmt_minutes(m: float) -> str:
    if m < 10:
        return f"{m:.1f} min"
    if m < 60:
        return f"{m:.0f} min"
    h, mm = divmod(round(m), 60)
    return f"{h} h {mm:02d} min"


def _duration_drift(
    y: np.ndarray, cyc: pd.DataFrame, starts: np.ndarray, name: str, cfg: CycleConfig
) -> list[Finding]:
    """Cycles running longer than past cycles of the same shape: a CUSUM of log-likelihood
    ratios ("lengthened by ``design_rel_change``" vs "as usual"), one term per matched cycle.

    Each cycle's shape over relative time (a stretched programme keeps its shape) selects
    the past cycles it matches (mean absolute difference ≤ ``shape_tolerance`` × mean
    power); its log duration minus their median is its residual. The device's own noise is
    the robust spread of its past residuals; the threshold is set from that noise and the
    device's cycle rate so that false alarms are expected every ``false_alarm_months``.
    """
    n = len(cyc)
    findings: list[Finding] = []
    if n < cfg.min_duration_reference + 1:
        return findings
    dur = np.maximum(cyc["active_min"].to_numpy(float), 0.05)
    logd = np.log(dur)
    lengths = cyc["duration_min"].to_numpy(int)
    shapes = np.stack(
        [_shape(y[s : s + m], cfg.shape_points) for s, m in zip(starts, lengths, strict=True)]
    )
    level = shapes.mean(axis=1)
    t_start = pd.DatetimeIndex(cyc["start"])
    t_end = pd.DatetimeIndex(cyc["end"])
    resid = np.full(n, np.nan)
    usual = np.full(n, np.nan)
    delta = float(np.log1p(cfg.design_rel_change))
    s_stat = 0.0
    run: list[tuple[int, float]] = []  # (cycle, CUSUM before it) since the CUSUM left 0
    active = False
    calm = 0
    for i in range(n):
        first = max(0, i - cfg.duration_reference_cycles)
        if i - first < cfg.min_duration_reference:
            continue
        ref = np.arange(first, i)
        dist = np.abs(shapes[ref] - shapes[i]).mean(axis=1) / np.maximum(
            0.5 * (level[ref] + level[i]), 1e-9
        )
        if lengths[i] < cfg.shape_min_minutes:
            match = ref[lengths[ref] < cfg.shape_min_minutes]
        else:
            match = ref[(dist <= cfg.shape_tolerance) & (lengths[ref] >= cfg.shape_min_minutes)]
        if match.size < cfg.min_matches:
            continue
        usual[i] = float(np.median(logd[match]))
        resid[i] = logd[i] - usual[i]
        past = resid[first:i]
        past = past[np.isfinite(past)]
        if past.size < cfg.min_residuals:
            continue
        # robust spread (MAD); when most runs last exactly the same whole minutes the MAD
        # is 0, so it is kept above half the normal-equivalent mean absolute deviation
        dev = np.abs(past - np.median(past))
        sigma = max(
            cfg.sigma_floor, 1.4826 * float(np.median(dev)), 0.5 * 1.2533 * float(dev.mean())
        )
        days = (t_start[i] - t_start[first]) / pd.Timedelta(days=1)
        rate = (i - first) / max(days, 1.0)  # cycles per day
        # an LLR CUSUM with threshold log(N) runs at least N cycles between false alarms
        limit = float(np.log(max(rate * 30 * cfg.false_alarm_months, 2.0)))
        # one cycle weighs at most ``clip_sd`` of the device's spread, or the design change
        # when the device is precise: one run can only raise an alarm on its own when
        # delta² / (2 sigma²) > limit, i.e. the device's runs of a programme hardly vary
        clip = max(cfg.clip_sd * sigma, delta)
        r = float(np.clip(resid[i], -clip, clip))
        llr = delta / sigma**2 * (r - delta / 2)
        if active:
            calm = calm + 1 if resid[i] < delta / 2 else 0
            if calm >= cfg.group:
                active, calm, s_stat, run = False, 0, 0.0, []
            continue
        run.append((i, s_stat))
        s_stat = max(0.0, s_stat + llr)
        if s_stat <= 0.0:
            run = []
            continue
        if s_stat > limit:
            # the change point: just after the CUSUM's last low point (the MLE when it
            # would have been 0); the change is the median residual of the cycles since
            before = np.array([b for _, b in run])
            k = before.size - 1 - int(np.argmin(before[::-1]))
            since = np.array([c for c, _ in run[k:]])
            was = float(np.exp(np.median(usual[since])))
            rise = float(np.exp(np.median(resid[since]))) - 1
            now = was * (1 + rise)
            if rise < cfg.min_rel_change or now - was < cfg.min_abs_change_min:
                continue
            active, calm, s_stat, run = True, 0, 0.0, []
            start = pd.Timestamp(t_start[since[0]])
            if since.size == 1:
                what = f"{name}'s cycle ran {_fmt_minutes(now)}"
            else:
                what = f"{name}'s last {since.size} cycles ran {_fmt_minutes(now)} (median)"
            findings.append(
                Finding(
                    kind="cycle_duration_drift",
                    start=start,
                    detected_at=pd.Timestamp(t_end[i]),
                    severity=_severity(rise / cfg.min_rel_change),
                    magnitude=rise,
                    explanation=(
                        f"{what}, {100 * rise:.0f} % longer than its usual "
                        f"{_fmt_minutes(was)} for the same programme, since {_when(start)}"
                    ),
                )
            )
    return findings


def detect_cycle_drift(
    power_w: pd.Series, threshold_w: float, name: str = "appliance", cfg: CycleConfig | None = None
) -> list[Finding]:
    """An appliance's cycles getting longer (duty-cycle drift) or its on-power changing
    (signature drift).

    Duration: every cycle is matched, by its shape over relative time, with the past cycles
    of the same programme, and a sequential test (CUSUM) accumulates how much longer it ran
    than they did, weighed by the device's own noise: one clearly stretched dishwasher or
    washing-machine programme is enough, a kettle whose boils vary needs a few (see
    ``_duration_drift``). On-power: the median over the last ``group`` cycles must leave the
    range the same statistic covered over the previous ``reference_cycles`` cycles by
    ``margin`` and differ from the reference median by at least ``power_rel_change``.
    ``threshold_w`` should be an activity level (well below the on-power) so that one cycle
    is one run of the appliance.
    """
    cfg = cfg or CycleConfig()
    cyc = appliance_cycles(power_w, threshold_w, cfg.merge_gap_min)
    findings: list[Finding] = []
    if cyc.empty:
        return findings
    y = np.nan_to_num(power_w.to_numpy(dtype=float))
    idx = pd.DatetimeIndex(power_w.index)
    starts = idx.get_indexer(pd.DatetimeIndex(cyc["start"]))
    findings += _duration_drift(y, cyc, starts, name, cfg)
    g = cfg.group
    if len(cyc) < cfg.min_reference_cycles + g:
        return sorted(findings, key=lambda f: f.detected_at)
    pw = cyc["power_w"].to_numpy(float)
    roll_pw = pd.Series(pw).rolling(g).median().to_numpy()
    active = False
    key = "signature_drift"
    for i in range(cfg.min_reference_cycles + g - 1, len(cyc)):
        first = max(0, i - g + 1 - cfg.reference_cycles)
        last = i - g + 1  # reference cycles: [first, last)
        groups = np.arange(first + g - 1, last)  # groups entirely inside the reference
        if last - first < cfg.min_reference_cycles or groups.size < 2:
            continue
        ref_pw = float(np.median(pw[first:last]))
        p_hi = max(
            float(np.max(roll_pw[groups])) * (1 + cfg.margin), ref_pw * (1 + cfg.power_rel_change)
        )
        p_lo = min(
            float(np.min(roll_pw[groups])) * (1 - cfg.margin), ref_pw * (1 - cfg.power_rel_change)
        )
        if (roll_pw[i] > p_hi or roll_pw[i] < p_lo) and not active:
            active = True
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
            active = False
    return sorted(findings, key=lambda f: f.detected_at)


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

    A cycle (power ≥ ``threshold_w``, short gaps bridged) is played ``factor`` × slower: each
    minute mean is treated as constant power over its minute, so power levels are kept and
    the cycle's energy grows by exactly ``factor`` (``stretch_profile``). The stretched
    profile replaces the cycle and, past its old end, the larger of it and what was there;
    the difference is added to the aggregate. Gaps stay gaps. Returns (appliance, aggregate).
    """
    y = appliance_w.to_numpy(dtype=float)
    orig = np.nan_to_num(y)
    new = orig.copy()
    cyc = appliance_cycles(appliance_w, threshold_w, merge_gap_min)
    idx = pd.DatetimeIndex(appliance_w.index)
    for s, length in zip(cyc["start"], cyc["duration_min"], strict=True):
        if s < start:
            continue
        a = int(idx.get_loc(s))
        b = a + int(length)
        stretched = stretch_profile(orig[a:b], factor)
        stop = min(a + stretched.size, new.size)
        new[b:stop] = np.maximum(new[b:stop], stretched[b - a : stop - a])
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
    """Detection of one injected fault. ``first_effect`` is when the fault first shows (the
    step itself; the first stretched cycle), NaT when it never did within the horizon;
    ``delay_h`` counts from it (NaN when not found)."""

    fault: str
    device: str
    start: pd.Timestamp
    detected: bool
    delay_h: float
    first_effect: pd.Timestamp | None = None


def _first_after(
    findings: list[Finding], kinds: set[str], start: pd.Timestamp, horizon: pd.Timedelta
) -> float:
    hits = [
        f.detected_at
        for f in findings
        if f.kind in kinds and start <= f.detected_at <= start + horizon
    ]
    return (min(hits) - start) / pd.Timedelta(hours=1) if hits else float("nan")


def _monitor_findings(aggregate_w: pd.Series) -> list[Finding]:
    return detect_base_load_creep(aggregate_w) + detect_profile_deviation(aggregate_w)


def _appliance_findings(power_w: pd.Series, name: str, on_w: float) -> list[Finding]:
    return detect_cycle_drift(power_w, activity_threshold_w(on_w), name, cycle_config(name))


def evaluate_anomaly_detection(
    aggregate_w: pd.Series,
    appliances_w: pd.DataFrame,
    thresholds_w: dict[str, float],
    n_starts: int = 24,
    warmup_days: int = 28,
    horizon_days: int = 7,
    step_w: float = 150.0,
    stretch: float = 1.5,
) -> dict[str, object]:
    """False alarms on the untouched data and detection delays of injected faults.

    Devices: the monitor (base-load and profile detectors on the aggregate) and each
    sub-metered appliance (cycle detectors). False alarms count findings of any kind after
    ``warmup_days`` per device-month (30 days of valid data). Faults are injected at
    ``n_starts`` times spread over the data after the warm-up, one at a time: a ``step_w``
    base-load step on the aggregate, and every cycle of one appliance ``stretch`` × longer
    (its extra energy added to the aggregate too). Only data up to ``horizon_days`` after
    the fault is given to the detectors. Delays count from the fault's first effect: the
    step, or the first stretched cycle; an injection is *eligible* when that effect happened
    within the horizon (the appliance ran at all).
    """
    idx = pd.DatetimeIndex(aggregate_w.index)
    t0 = idx[0] + pd.Timedelta(days=warmup_days)
    after = aggregate_w.index >= t0
    months = float(np.isfinite(aggregate_w.to_numpy(dtype=float)[after]).sum()) / (30 * 1440)
    names = [str(c) for c in appliances_w.columns]
    untouched: dict[str, list[Finding]] = {"mains": _monitor_findings(aggregate_w)}
    for name in names:
        untouched[name] = _appliance_findings(appliances_w[name], name, thresholds_w[name])
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
            InjectionResult(
                "base_load_step", "mains", start, bool(np.isfinite(delay)), delay, start
            )
        )
        for name in names:
            on_w = thresholds_w[name]
            app = appliances_w[name][window]
            gap = cycle_config(name).merge_gap_min
            cyc = appliance_cycles(app, activity_threshold_w(on_w), gap)
            later = cyc["start"][cyc["start"] >= start] if len(cyc) else pd.Series([])
            if later.empty:
                results.append(
                    InjectionResult("longer_cycles", name, start, False, float("nan"), None)
                )
                continue
            first = pd.Timestamp(later.iloc[0])
            longer, _ = inject_longer_cycles(
                app, agg, start, stretch, activity_threshold_w(on_w), gap
            )
            found = _appliance_findings(longer, name, on_w)
            delay = _first_after(found, {"cycle_duration_drift"}, first, horizon)
            results.append(
                InjectionResult(
                    "longer_cycles", name, start, bool(np.isfinite(delay)), delay, first
                )
            )
    per_device: dict[str, dict[str, object]] = {}
    for dev in ["mains", *names]:
        rs = [r for r in results if r.device == dev]
        delays = np.array([r.delay_h for r in rs], dtype=float)
        found = np.isfinite(delays)
        false = [f for f in untouched[dev] if f.detected_at >= t0]
        kinds = sorted({f.kind for f in false})
        per_device[dev] = {
            "fault": rs[0].fault if rs else "",
            "injected": len(rs),
            "eligible": sum(r.first_effect is not None for r in rs),
            "detected_within_24h": int(np.sum(delays[found] <= 24)),
            "detected_within_horizon": int(found.sum()),
            "median_delay_h": float(np.median(delays[found])) if found.any() else float("nan"),
            "false_alarms": len(false),
            "false_alarms_per_device_month": len(false) / months if months else float("nan"),
            "false_alarms_by_kind": {k: sum(f.kind == k for f in false) for k in kinds},
            "false_alarm_examples": [f.explanation for f in false[:5]],
        }
    return {
        "device_months_each": months,
        "horizon_days": horizon_days,
        "devices": per_device,
    }
