from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wattwatch.ai.forecast import (
    daily_energy_kwh,
    evaluate_day_ahead,
    forecast_daily,
    forecast_hourly,
    forecast_month_end,
    hourly_mean_power,
)


def _seasonal_hourly(weeks: int, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=weeks * 168, freq="1h")
    h = idx.hour.to_numpy()
    weekend = idx.day_of_week.to_numpy() >= 5
    y = 300 + 200 * np.exp(-((h - 19) ** 2) / 8) + 100 * np.exp(-((h - 8) ** 2) / 4) + 80 * weekend
    return pd.Series(y + rng.normal(0, 40, y.size), index=idx)


def test_hourly_shape_and_intervals() -> None:
    s = _seasonal_hourly(8)
    fc = forecast_hourly(s, horizon_h=24)
    assert list(fc.columns) == ["ts", "yhat", "lo", "hi"] and len(fc) == 24
    assert fc["ts"].iloc[0] == s.index[-1] + pd.Timedelta(hours=1)
    assert (fc["lo"] <= fc["yhat"]).all() and (fc["yhat"] <= fc["hi"]).all()


def test_day_ahead_backtest_beats_seasonal_naive_and_covers() -> None:
    s = _seasonal_hourly(9, seed=1)
    r = evaluate_day_ahead(s, test_days=7, refit_every_days=7)
    # on white noise around a profile, last week's value has √2 × the noise of a good model
    assert r["mase"] < 0.85 * r["mase_seasonal_naive"]
    assert 0.6 <= r["interval_coverage_80"] <= 0.97
    assert r["hours_scored"] == 7 * 24


def test_daily_and_month_end() -> None:
    s = _seasonal_hourly(7)
    fc = forecast_daily(s, horizon_d=7)
    assert len(fc) == 7 and (fc["lo"] <= fc["hi"]).all()
    daily = daily_energy_kwh(s)
    assert fc["yhat"].mean() == pytest.approx(daily.mean(), rel=0.2)
    me = forecast_month_end(s, tariff_per_kwh=0.3, standing_charge_per_day=0.5)
    # data ends 2024-02-18 23:00: 18 days of February seen, 11 to go (leap year)
    assert me.days_elapsed == 18 and me.days_remaining == 11
    assert me.energy_lo_kwh <= me.energy_kwh <= me.energy_hi_kwh
    assert me.energy_kwh > me.energy_so_far_kwh
    assert me.bill == pytest.approx(me.energy_kwh * 0.3 + 29 * 0.5)


def test_hourly_mean_power_marks_sparse_hours() -> None:
    idx = pd.date_range("2024-01-01", periods=180, freq="1min")
    s = pd.Series(100.0, index=idx)
    s.iloc[60:100] = np.nan  # second hour only 20/60 minutes
    h = hourly_mean_power(s)
    assert h.iloc[0] == 100.0 and np.isnan(h.iloc[1]) and h.iloc[2] == 100.0
