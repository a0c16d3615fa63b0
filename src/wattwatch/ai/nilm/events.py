"""Step-change event detection with adaptive thresholds, on/off pairing and event signatures."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

# A step must exceed max(MIN_STEP_W, NOISE_K × local noise). The local noise is the robust
# (MAD) spread of minute-to-minute changes in a centred window: busy hours need bigger steps.
MIN_STEP_W = 80.0
NOISE_K = 4.0
NOISE_WINDOW_MIN = 61

EVENT_COLUMNS = ("idx", "delta_w", "pre_w", "post_w", "width_min", "threshold_w")
PAIR_COLUMNS = ("on_idx", "off_idx", "power_w", "duration_min", "energy_wh", "mismatch")


def adaptive_threshold(
    power_w: ArrayLike,
    min_step_w: float = MIN_STEP_W,
    k: float = NOISE_K,
    window_min: int = NOISE_WINDOW_MIN,
) -> np.ndarray:
    """Per-step threshold: max(min_step_w, k × 1.4826 × rolling median |Δpower|)."""
    x = np.asarray(power_w, dtype=float)
    d = np.abs(np.diff(x, prepend=np.nan))
    mad = (
        pd.Series(d)
        .rolling(window_min, center=True, min_periods=max(3, window_min // 4))
        .median()
        .to_numpy()
    )
    noise = np.nan_to_num(1.4826 * mad, nan=0.0)
    return np.asarray(np.maximum(min_step_w, k * noise), dtype=float)


def detect_events(
    power_w: ArrayLike,
    min_step_w: float = MIN_STEP_W,
    k: float = NOISE_K,
    window_min: int = NOISE_WINDOW_MIN,
) -> pd.DataFrame:
    """Find power steps; consecutive same-sign steps (a switch mid-minute) merge into one event.

    Returns one row per event: ``idx`` (first sample at the new level), ``delta_w`` (signed step),
    ``pre_w``/``post_w`` (levels either side), ``width_min`` (samples the transition spans) and
    the ``threshold_w`` that applied. Steps touching a gap (NaN) are ignored.
    """
    x = np.asarray(power_w, dtype=float)
    n = x.size
    if n < 2:
        return pd.DataFrame({c: np.array([], dtype=float) for c in EVENT_COLUMNS})
    thr = adaptive_threshold(x, min_step_w, k, window_min)
    d = np.diff(x, prepend=np.nan)
    sign = np.zeros(n, dtype=np.int8)
    big = np.isfinite(d) & (np.abs(d) >= thr)
    sign[big & (d > 0)] = 1
    sign[big & (d < 0)] = -1
    rows: list[tuple[float, float, float, float, float, float]] = []
    i = 1
    while i < n:
        s = sign[i]
        if s == 0:
            i += 1
            continue
        j = i
        # merge a following step of the same sign, even if it is below threshold but still
        # at least half the minimum: a switch in the middle of a minute spreads over two samples
        while j + 1 < n and np.isfinite(d[j + 1]) and d[j + 1] * s >= 0.5 * min_step_w:
            j += 1
        pre = x[i - 1]
        post = x[j]
        rows.append((float(i), float(post - pre), pre, post, float(j - i + 1), float(thr[i])))
        i = j + 1
    if not rows:
        return pd.DataFrame({c: np.array([], dtype=float) for c in EVENT_COLUMNS})
    ev = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    ev["idx"] = ev["idx"].astype(int)
    ev["width_min"] = ev["width_min"].astype(int)
    return ev


def pair_events(
    events: pd.DataFrame,
    power_w: ArrayLike | None = None,
    tolerance: float = 0.35,
    max_duration_min: int = 240,
) -> pd.DataFrame:
    """Pair each rising step with a later falling step of similar size (Hart-style, stack order).

    A rising step stays open until a falling step within ``tolerance`` (relative) of its size
    arrives, or ``max_duration_min`` passes. When ``power_w`` is given, a pair's energy is the
    energy above the pre-event level between the two steps; otherwise power × duration.
    """
    x = None if power_w is None else np.asarray(power_w, dtype=float)
    open_: list[tuple[int, float, float]] = []  # (idx, delta, pre level)
    pairs: list[tuple[int, int, float, float, float, float]] = []
    for idx, delta, pre in zip(
        events["idx"].to_numpy(),
        events["delta_w"].to_numpy(),
        events["pre_w"].to_numpy(),
        strict=True,
    ):
        idx_i = int(idx)
        open_ = [o for o in open_ if idx_i - o[0] <= max_duration_min]
        if delta > 0:
            open_.append((idx_i, float(delta), float(pre)))
            continue
        drop = -float(delta)
        best = -1
        best_err = tolerance
        # most recent first: nested loads switch off before the loads they sit on
        for k in range(len(open_) - 1, -1, -1):
            err = abs(open_[k][1] - drop) / max(open_[k][1], drop)
            if err <= best_err:
                best, best_err = k, err
                break
        if best < 0:
            continue
        on_idx, rise, pre_level = open_.pop(best)
        duration = idx_i - on_idx
        power = 0.5 * (rise + drop)
        if x is not None and duration > 0:
            seg = x[on_idx:idx_i] - pre_level
            energy = float(np.nansum(np.clip(seg, 0, None))) / 60.0
        else:
            energy = power * duration / 60.0
        pairs.append((on_idx, idx_i, power, float(duration), energy, best_err))
    out = pd.DataFrame(pairs, columns=list(PAIR_COLUMNS))
    out["on_idx"] = out["on_idx"].astype(int)
    out["off_idx"] = out["off_idx"].astype(int)
    return out


def event_signatures(pairs: pd.DataFrame, minute_of_day: ArrayLike | None = None) -> np.ndarray:
    """Signature vectors of paired events: log power, log duration, log energy (+ time of day)."""
    p = np.log(np.clip(pairs["power_w"].to_numpy(dtype=float), 1.0, None))
    d = np.log(np.clip(pairs["duration_min"].to_numpy(dtype=float), 1.0, None))
    e = np.log(np.clip(pairs["energy_wh"].to_numpy(dtype=float), 0.1, None))
    cols = [p, d, e]
    if minute_of_day is not None:
        mod = np.asarray(minute_of_day, dtype=float)[pairs["on_idx"].to_numpy()]
        ang = 2 * np.pi * mod / 1440.0
        cols += [0.15 * np.sin(ang), 0.15 * np.cos(ang)]
    return np.column_stack(cols) if cols[0].size else np.empty((0, len(cols)))
