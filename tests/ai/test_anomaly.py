from __future__ import annotations

import numpy as np
import pandas as pd
from tests.ai.conftest import synthetic_house

from wattwatch.ai.anomaly import (
    CycleConfig,
    detect_base_load_creep,
    detect_cycle_drift,
    detect_profile_deviation,
    inject_base_load_step,
    inject_longer_cycles,
)


def test_base_load_step_found_within_a_day() -> None:
    df = synthetic_house(30, seed=2)
    start = pd.Timestamp("2024-01-24 10:00")
    stepped = inject_base_load_step(df["Aggregate"], start, 150.0)
    found = [f for f in detect_base_load_creep(stepped) if f.detected_at >= start]
    assert found, "step not found"
    f = found[0]
    assert f.kind == "base_load_creep"
    assert f.detected_at - start <= pd.Timedelta(hours=24)
    assert 100 <= f.magnitude <= 200
    assert "base load rose from" in f.explanation
    assert abs(f.start - start) <= pd.Timedelta(hours=3)


def test_clean_data_raises_nothing() -> None:
    df = synthetic_house(30, seed=4)
    assert detect_base_load_creep(df["Aggregate"]) == []
    assert detect_cycle_drift(df["Kettle"], 400.0, "Kettle") == []


def test_profile_deviation_on_extra_load() -> None:
    df = synthetic_house(63, seed=6)
    s = df["Aggregate"].copy()
    assert detect_profile_deviation(s) == []
    # a heater left on for 10 hours in the night
    s.loc["2024-03-01 00:00":"2024-03-01 10:00"] += 1500
    found = detect_profile_deviation(s)
    assert len(found) == 1 and found[0].kind == "profile_deviation"


def test_longer_cycles_injected_and_detected() -> None:
    # a kettle boiling 4 minutes about four times a day, at jittered times
    rng = np.random.default_rng(8)
    idx = pd.date_range("2024-01-01", periods=30 * 1440, freq="1min")
    kettle = np.zeros(idx.size)
    for t in range(300, idx.size - 10, 360):
        s = t + int(rng.integers(-60, 60))
        kettle[s : s + 4] = 2900.0
    app0 = pd.Series(kettle, index=idx)
    agg0 = app0 + 200.0
    start = pd.Timestamp("2024-01-25 00:00")
    app, agg = inject_longer_cycles(app0, agg0, start, 1.5, 400.0)
    assert (app >= 400).sum() > (app0 >= 400).sum()
    # what was added to the appliance was added to the aggregate
    assert np.allclose(agg - agg0, app - app0)
    assert detect_cycle_drift(app0, 400.0, "Kettle", CycleConfig()) == []
    found = [
        f for f in detect_cycle_drift(app, 400.0, "Kettle", CycleConfig()) if f.detected_at >= start
    ]
    assert found and found[0].kind == "cycle_duration_drift"
    # three longer cycles are needed: with four runs a day, that is within a day
    assert found[0].detected_at - start <= pd.Timedelta(hours=24)
    assert "longer than the usual 4 min" in found[0].explanation
