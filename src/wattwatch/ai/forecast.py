"""Energy forecasting per device or site: next 24 h hourly, next 7 days daily, month-end bill.

Direct multi-horizon gradient boosting on calendar and lag features: for a forecast made at
origin T, each target hour T+h sees only values at or before T (the most recent same hour,
the same hour a week earlier, recent means), so training rows built from past origins mimic
exactly what is known when forecasting. Three quantile models (10 %, 50 %, 90 % by default)
give the point forecast (the median, which suits MAE/MASE) and an 80 % prediction interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

HOURS_PER_WEEK = 168
_QUANTILE_PARAMS: dict[str, object] = {
    "max_iter": 150,
    "learning_rate": 0.05,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 20,
    "l2_regularization": 1.0,
}


def hourly_mean_power(series: pd.Series, min_coverage: float = 0.5) -> pd.Series:
    """Mean power per clock hour (W, numerically Wh per hour); NaN where too little data.

    ``series`` is power in W on a DatetimeIndex (any regular rate). Zeros are kept: only
    NaN marks missing data, so mask gap-zeros before calling.
    """
    s = series.astype(float)
    if len(s) < 2:
        raise ValueError("need at least two readings")
    step = pd.Series(s.index).diff().median()
    per_hour = max(1.0, pd.Timedelta(hours=1) / step)
    g = s.resample("1h")
    mean = g.mean()
    mean[g.count() < min_coverage * per_hour] = np.nan
    return mean


def daily_energy_kwh(series: pd.Series, min_coverage: float = 0.75) -> pd.Series:
    """Energy per calendar day in kWh (mean power × 24 h); NaN where coverage is too low."""
    hourly = hourly_mean_power(series)
    g = hourly.resample("1D")
    out = g.mean() * 24.0 / 1000.0
    out[g.count() < min_coverage * 24] = np.nan
    return out


def _lag_features(y: np.ndarray, origins: np.ndarray, leads: np.ndarray, season: int) -> np.ndarray:
    """Features for targets origin+lead (positions into the regular series ``y``).

    Only y[..origin] is used. ``season`` is the daily period in steps (24 hourly, 1 daily).
    """
    n = y.size
    t = origins + leads
    cols: list[np.ndarray] = [leads.astype(float)]

    def at(pos: np.ndarray) -> np.ndarray:
        ok = (pos >= 0) & (pos < n) & (pos <= origins)
        out = np.full(pos.shape, np.nan)
        out[ok] = y[pos[ok]]
        return out

    week = 7 * season
    # most recent value for the same phase of the day (and the same phase of the week)
    k_day = np.ceil(leads / season).astype(int) * season if season > 1 else leads
    same_day = at(t - k_day)
    k_week = np.ceil(leads / week).astype(int) * week
    same_week = at(t - k_week)
    same_week2 = at(t - k_week - week)
    cols += [same_day, same_week, same_week2]
    # mean of the same phase over the last 7 available days
    stack = np.column_stack([at(t - k_day - d * season) for d in range(7)]) if season > 1 else None
    if stack is not None:
        finite = np.isfinite(stack)
        count = finite.sum(axis=1)
        total = np.where(finite, stack, 0.0).sum(axis=1)
        cols.append(np.where(count > 0, total / np.maximum(count, 1), np.nan))
        # median of the available values: NaNs sort last, so pick the middle finite one
        ordered = np.sort(stack, axis=1)
        mid = np.clip((count - 1) // 2, 0, None)
        med = ordered[np.arange(len(ordered)), mid]
        cols.append(np.where(count > 0, med, np.nan))
    # level at the origin
    cum = np.concatenate([[0.0], np.cumsum(np.nan_to_num(y))])
    cnt = np.concatenate([[0], np.cumsum(np.isfinite(y))])

    def trailing_mean(width: int) -> np.ndarray:
        hi = np.clip(origins + 1, 0, n)
        lo = np.clip(origins + 1 - width, 0, n)
        c = cnt[hi] - cnt[lo]
        with np.errstate(all="ignore"):
            return np.where(c > 0, (cum[hi] - cum[lo]) / np.maximum(c, 1), np.nan)

    cols += [at(origins), trailing_mean(season), trailing_mean(week), trailing_mean(4 * week)]
    return np.column_stack(cols)


def _calendar(ts: pd.DatetimeIndex, hourly: bool) -> np.ndarray:
    cols = [ts.day_of_week.to_numpy(float), (ts.day_of_week >= 5).astype(float)]
    if hourly:
        cols.append(ts.hour.to_numpy(float))
    return np.column_stack(cols)


@dataclass(slots=True)
class _DirectQuantileModel:
    """Direct multi-horizon quantile gradient boosting on a regular series."""

    season: int
    freq: str
    quantiles: tuple[float, float, float]
    origin_stride: int
    models: tuple[HistGradientBoostingRegressor, ...] = ()

    def _rows(
        self, y: np.ndarray, idx: pd.DatetimeIndex, origins: np.ndarray, horizon: int
    ) -> tuple[np.ndarray, np.ndarray]:
        o = np.repeat(origins, horizon)
        lead = np.tile(np.arange(1, horizon + 1), origins.size)
        x = _lag_features(y, o, lead, self.season)
        tpos = o + lead
        ts = idx[0] + (tpos * pd.Timedelta(self.freq))
        return np.column_stack([x, _calendar(pd.DatetimeIndex(ts), self.season > 1)]), tpos

    def fit(self, y: np.ndarray, idx: pd.DatetimeIndex, origin_phase: int, horizon: int) -> None:
        n = y.size
        first = 7 * self.season  # a week of history before the first training origin
        origins = np.arange(
            first + (origin_phase - first) % self.origin_stride, n - 1, self.origin_stride
        )
        if origins.size == 0:
            raise ValueError("not enough history to train a forecast (need > 1 week)")
        x, tpos = self._rows(y, idx, origins, horizon)
        ok = tpos < n
        target = np.full(tpos.shape, np.nan)
        target[ok] = y[tpos[ok]]
        ok &= np.isfinite(target)
        if ok.sum() < 10:
            raise ValueError("not enough history to train a forecast")
        # small data: one thread is as fast, and much faster on a busy shared machine
        with threadpool_limits(limits=1, user_api="openmp"):
            self.models = self._fit_quantiles(x[ok], target[ok])

    def _fit_quantiles(
        self, x: np.ndarray, target: np.ndarray
    ) -> tuple[HistGradientBoostingRegressor, ...]:
        # A lag never available in a short history (two weeks back, in the third week of
        # data) is all-missing: the trees cannot bin it, and it carries nothing anyway.
        empty = ~np.isfinite(x).any(axis=0)
        if empty.any():
            x = x.copy()
            x[:, empty] = 0.0
        return tuple(
            HistGradientBoostingRegressor(
                loss="quantile", quantile=q, random_state=0, **_QUANTILE_PARAMS
            ).fit(x, target)
            for q in self.quantiles
        )

    def predict(
        self, y: np.ndarray, idx: pd.DatetimeIndex, origin: int, horizon: int
    ) -> np.ndarray:
        x, _ = self._rows(y, idx, np.array([origin]), horizon)
        with threadpool_limits(limits=1, user_api="openmp"):
            preds = np.column_stack([m.predict(x) for m in self.models])
        preds = np.sort(preds, axis=1)  # quantiles must not cross
        return np.asarray(np.clip(preds, 0.0, None), dtype=float)


def _regular(series: pd.Series, freq: str) -> tuple[np.ndarray, pd.DatetimeIndex]:
    s = series.asfreq(freq)
    return s.to_numpy(dtype=float), pd.DatetimeIndex(s.index)


def forecast_hourly(
    series: pd.Series,
    horizon_h: int = 24,
    coverage: float = 0.8,
    origin: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Forecast mean power (W = Wh per hour) for each of the next ``horizon_h`` hours.

    ``series``: power in W (any rate; NaN = missing). The forecast starts at the hour after
    ``origin`` (default: the last complete hour of the series) and uses nothing after it.
    Returns columns ``ts`` (start of the hour), ``yhat``, ``lo``, ``hi`` (``coverage`` interval).
    """
    hourly = hourly_mean_power(series)
    if origin is not None:
        hourly = hourly[hourly.index <= pd.Timestamp(origin)]
    y, idx = _regular(hourly, "1h")
    alpha = (1 - coverage) / 2
    model = _DirectQuantileModel(24, "1h", (alpha, 0.5, 1 - alpha), origin_stride=24)
    o = y.size - 1
    model.fit(y, idx, origin_phase=o % 24, horizon=horizon_h)
    pred = model.predict(y, idx, o, horizon_h)
    ts = idx[o] + pd.to_timedelta(np.arange(1, horizon_h + 1), unit="h")
    return pd.DataFrame({"ts": ts, "yhat": pred[:, 1], "lo": pred[:, 0], "hi": pred[:, 2]})


def forecast_daily(
    series: pd.Series,
    horizon_d: int = 7,
    coverage: float = 0.8,
    origin: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Forecast energy per day (kWh) for the next ``horizon_d`` calendar days.

    Columns ``ts`` (day start), ``yhat``, ``lo``, ``hi``. ``origin`` is the last complete day used.
    """
    daily = daily_energy_kwh(series)
    if origin is not None:
        daily = daily[daily.index <= pd.Timestamp(origin)]
    y, idx = _regular(daily, "1D")
    alpha = (1 - coverage) / 2
    model = _DirectQuantileModel(1, "1D", (alpha, 0.5, 1 - alpha), origin_stride=1)
    o = y.size - 1
    model.fit(y, idx, origin_phase=o, horizon=horizon_d)
    pred = model.predict(y, idx, o, horizon_d)
    ts = idx[o] + pd.to_timedelta(np.arange(1, horizon_d + 1), unit="D")
    return pd.DataFrame({"ts": ts, "yhat": pred[:, 1], "lo": pred[:, 0], "hi": pred[:, 2]})


@dataclass(frozen=True, slots=True)
class MonthEndForecast:
    """Energy and bill expected by the end of the month, with an interval."""

    month_start: pd.Timestamp
    days_elapsed: int
    days_remaining: int
    energy_so_far_kwh: float
    energy_kwh: float
    energy_lo_kwh: float
    energy_hi_kwh: float
    bill: float
    bill_lo: float
    bill_hi: float


def forecast_month_end(
    series: pd.Series,
    tariff_per_kwh: float,
    standing_charge_per_day: float = 0.0,
    coverage: float = 0.8,
) -> MonthEndForecast:
    """Month-end energy and bill from the data so far this month plus a daily forecast.

    The month is the one of the last complete day. Days of this month without enough data are
    filled with the forecast's median for them. The interval adds the per-day interval
    half-widths in quadrature (daily errors taken as independent): narrower than summing them.
    """
    daily = daily_energy_kwh(series)
    last = daily.index[-1]
    if daily.isna().iloc[-1]:
        last = daily.last_valid_index()
    month_start = pd.Timestamp(last).replace(day=1)
    month_end = month_start + pd.offsets.MonthBegin(1)
    so_far = daily[(daily.index >= month_start) & (daily.index <= last)]
    days_in_month = int((month_end - month_start) / pd.Timedelta(days=1))
    remaining = days_in_month - len(so_far)
    missing = int(so_far.isna().sum())
    energy_so_far = float(so_far.sum())
    point = lo_w = hi_w = 0.0
    if remaining > 0 or missing > 0:
        fc = forecast_daily(series, horizon_d=max(remaining, 1), coverage=coverage, origin=last)
        fc = fc.iloc[:remaining]
        point = float(fc["yhat"].sum())
        lo_w = float(np.sqrt(np.sum((fc["yhat"] - fc["lo"]) ** 2)))
        hi_w = float(np.sqrt(np.sum((fc["hi"] - fc["yhat"]) ** 2)))
        if missing:
            fill = float(so_far.median()) if so_far.notna().any() else float(fc["yhat"].mean())
            point += missing * fill
    total = energy_so_far + point
    lo = max(energy_so_far, total - lo_w)
    hi = total + hi_w
    standing = standing_charge_per_day * days_in_month
    return MonthEndForecast(
        month_start=month_start,
        days_elapsed=len(so_far),
        days_remaining=remaining,
        energy_so_far_kwh=energy_so_far,
        energy_kwh=total,
        energy_lo_kwh=lo,
        energy_hi_kwh=hi,
        bill=total * tariff_per_kwh + standing,
        bill_lo=lo * tariff_per_kwh + standing,
        bill_hi=hi * tariff_per_kwh + standing,
    )


def evaluate_day_ahead(
    series: pd.Series, test_days: int = 28, refit_every_days: int = 7
) -> dict[str, float]:
    """Day-ahead hourly backtest over the last ``test_days`` complete days.

    Each day is forecast from its midnight with data up to then (the model is refitted every
    ``refit_every_days``). Both methods are scored on the same hours and divided by the same
    scale, the in-sample MAE of the weekly seasonal-naive forecast over the history before
    the test window, so ``mase`` and ``mase_seasonal_naive`` compare directly.
    """
    hourly = hourly_mean_power(series)
    y, idx = _regular(hourly, "1h")
    # last complete day
    end_day = (idx[-1] + pd.Timedelta(hours=1)).normalize()
    if idx[-1] + pd.Timedelta(hours=1) != end_day:
        end_day = idx[-1].normalize()
    day_starts = [end_day - pd.Timedelta(days=test_days - d) for d in range(test_days)]
    test_start = int(idx.get_loc(day_starts[0]))
    hist = y[:test_start]
    snaive_hist = np.abs(hist[HOURS_PER_WEEK:] - hist[:-HOURS_PER_WEEK])
    scale = float(np.nanmean(snaive_hist))
    model: _DirectQuantileModel | None = None
    errs, errs_naive, inside = [], [], []
    for d, day in enumerate(day_starts):
        origin = int(idx.get_loc(day)) - 1
        known = y.copy()
        known[origin + 1 :] = np.nan
        if model is None or d % refit_every_days == 0:
            model = _DirectQuantileModel(24, "1h", (0.1, 0.5, 0.9), origin_stride=24)
            model.fit(known[: origin + 1], idx[: origin + 1], origin_phase=origin % 24, horizon=24)
        pred = model.predict(known, idx, origin, 24)
        truth = y[origin + 1 : origin + 25]
        naive = y[origin + 1 - HOURS_PER_WEEK : origin + 25 - HOURS_PER_WEEK]
        ok = np.isfinite(truth) & np.isfinite(naive)
        errs.append(np.abs(pred[ok, 1] - truth[ok]))
        errs_naive.append(np.abs(naive[ok] - truth[ok]))
        inside.append((truth[ok] >= pred[ok, 0]) & (truth[ok] <= pred[ok, 2]))
    e, en = np.concatenate(errs), np.concatenate(errs_naive)
    return {
        "mase": float(np.mean(e) / scale),
        "mase_seasonal_naive": float(np.mean(en) / scale),
        "mae_w": float(np.mean(e)),
        "mae_seasonal_naive_w": float(np.mean(en)),
        "interval_coverage_80": float(np.mean(np.concatenate(inside))),
        "hours_scored": float(e.size),
    }
