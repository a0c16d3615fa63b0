"""Per-minute windowed features of an aggregate power series for the supervised NILM model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """Which context a feature vector may see.

    ``lookahead_min`` > 0 makes the features non-causal (offline timelines, best accuracy);
    0 gives a causal model for "what is on now" with no delay.
    """

    lookback_min: int = 15
    lookahead_min: int = 60
    base_window_min: int = 90
    stat_windows_min: tuple[int, ...] = (3, 7, 15, 31, 61, 121, 241)
    high_levels_w: tuple[float, ...] = (150.0, 400.0, 1000.0, 1800.0)
    time_of_day: bool = True

    @property
    def context_min(self) -> int:
        """Minutes of history a prediction needs to be fully informed.

        A window statistic at t looks back up to its window, and each value in it is taken
        relative to a base load that looks back ``base_window_min`` further.
        """
        return max(self.lookback_min, max(self.stat_windows_min)) + self.base_window_min + 1

    @property
    def future_min(self) -> int:
        """Minutes after t that the features of t read: the lookahead plus one, because the
        fall out of the last look-ahead minute (the change at t + lookahead + 1) is a feature."""
        return self.lookahead_min + 1


def _rolling(x: pd.Series, back: int, ahead: int) -> pd.core.window.rolling.Rolling:
    # window [t-back, t+ahead]: a trailing window of back+ahead+1 samples, shifted back by ahead
    return x.shift(-ahead).rolling(back + ahead + 1, min_periods=1)


def window_features(
    power_w: ArrayLike, spec: FeatureSpec, minute_of_day: ArrayLike | None = None
) -> np.ndarray:
    """Feature matrix (n, F), float32, NaN where context is missing (gradient boosting copes)."""
    x = np.asarray(power_w, dtype=float)
    n = x.size
    s = pd.Series(x)
    a = spec.lookahead_min
    cols: list[np.ndarray] = []

    base_back = spec.base_window_min
    base = _rolling(s, base_back, min(a, base_back)).min().to_numpy()
    rel = x - base
    cols += [x, base, rel]

    # raw shape around t, relative to x[t]
    lo, hi = spec.lookback_min, a
    padded = np.concatenate([np.full(lo, np.nan), x, np.full(hi, np.nan)])
    win = sliding_window_view(padded, lo + hi + 1)
    shape = win - x[:, None]
    cols += [shape[:, k] for k in range(lo + hi + 1) if k != lo]

    d = np.diff(x, prepend=np.nan)
    # the largest rise into and fall out of the current run of high power, within the window
    dpad = np.concatenate([np.full(lo, np.nan), d, np.full(hi + 1, np.nan)])
    dwin = sliding_window_view(dpad, lo + hi + 2)[:n]
    with np.errstate(invalid="ignore"):
        back_d = dwin[:, : lo + 1]
        fwd_d = dwin[:, lo + 1 :]
        cols += [
            np.nanmax(np.where(np.isfinite(back_d), back_d, -np.inf), axis=1),
            np.nanmin(np.where(np.isfinite(fwd_d), fwd_d, np.inf), axis=1),
            np.argmax(np.nan_to_num(back_d, nan=-1e9), axis=1).astype(float),
            np.argmin(np.nan_to_num(fwd_d, nan=1e9), axis=1).astype(float),
        ]

    rel_s = pd.Series(rel)
    for w in spec.stat_windows_min:
        half = w // 2
        ahead = min(half, a)
        back = w - 1 - ahead if a > 0 else w - 1
        r = _rolling(rel_s, back, ahead)
        mean = r.mean().to_numpy()
        cols += [mean, r.max().to_numpy(), r.min().to_numpy(), r.std().to_numpy(), rel - mean]
        if w >= 15:
            for level in spec.high_levels_w:
                cols.append(
                    _rolling(pd.Series((rel >= level).astype(float)), back, ahead).mean().to_numpy()
                )
            big_up = pd.Series((d > 800).astype(float))
            cols.append(_rolling(big_up, back, ahead).sum().to_numpy())

    if spec.time_of_day and minute_of_day is not None:
        ang = 2 * np.pi * np.asarray(minute_of_day, dtype=float) / 1440.0
        cols += [np.sin(ang), np.cos(ang)]

    out = np.column_stack(cols).astype(np.float32)
    out[~np.isfinite(out)] = np.nan
    # a minute without a reading has nothing to say
    out[~np.isfinite(x)] = np.nan
    return out


def minute_of_day(index: pd.DatetimeIndex) -> np.ndarray:
    """Minute of the day (0…1439) of each timestamp."""
    return np.asarray(index.hour * 60 + index.minute, dtype=float)
