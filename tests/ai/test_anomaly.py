from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.ai.conftest import synthetic_house
from typer.testing import CliRunner

from wattwatch.ai.anomaly import (
    CycleConfig,
    appliance_cycles,
    cycle_config,
    detect_base_load_creep,
    detect_cycle_drift,
    detect_profile_deviation,
    evaluate_anomaly_detection,
    inject_base_load_step,
    inject_longer_cycles,
    stretch_profile,
)
from wattwatch.ai.evaluate import main, run_anomaly_evaluation
from wattwatch.cli import app


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


def test_stretch_keeps_power_and_scales_energy() -> None:
    # a 2.5-minute boil read as minute means: 3000, 3000, 1500 W
    seg = np.array([3000.0, 3000.0, 1500.0])
    out = stretch_profile(seg, 1.5)
    # each minute mean is held for the whole minute: 4.5 minutes, the last half-filled
    assert np.allclose(out, [3000.0, 3000.0, 3000.0, 1500.0, 750.0])
    prog = np.array([150.0, 2000.0, 2000.0, 150.0, 150.0, 800.0, 20.0])
    for factor in (1.2, 1.5, 2.0):
        longer = stretch_profile(prog, factor)
        assert longer.sum() == pytest.approx(factor * prog.sum())
        assert longer.max() == pytest.approx(2000.0)
        assert longer.size == int(np.ceil(prog.size * factor))
    idx = pd.date_range("2024-01-01", periods=6, freq="1min")
    cyc = appliance_cycles(pd.Series([0, 3000, 3000, 1500, 0, 0.0], index=idx), 400.0)
    assert cyc["duration_min"].tolist() == [3]
    assert cyc["active_min"].tolist() == [pytest.approx(2.5)]
    idx = pd.date_range("2024-01-01", periods=out.size + 2, freq="1min")
    longer = pd.Series(np.concatenate([[0.0], out, [0.0]]), index=idx)
    assert appliance_cycles(longer, 400.0)["active_min"].tolist() == [pytest.approx(3.75)]


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
    after = app0.index >= start
    assert app[after].sum() == pytest.approx(1.5 * app0[after].sum())
    # what was added to the appliance was added to the aggregate
    assert np.allclose(agg - agg0, app - app0)
    assert detect_cycle_drift(app0, 400.0, "Kettle", CycleConfig()) == []
    found = [
        f for f in detect_cycle_drift(app, 400.0, "Kettle", CycleConfig()) if f.detected_at >= start
    ]
    assert found and found[0].kind == "cycle_duration_drift"
    # boils that never vary: the first longer one is evidence enough
    first = app0[after][app0[after] > 0].index[0]
    assert found[0].detected_at - first <= pd.Timedelta(minutes=10)
    assert found[0].start == first
    assert "50 % longer than its usual 4.0 min" in found[0].explanation
    assert found[0].magnitude == pytest.approx(0.5)


def _noisy_kettle(days: int, seed: int) -> pd.Series:
    """Boils of 1.5–5 minutes (how full the kettle is), five a day, at 3 kW."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=days * 1440, freq="1min")
    y = np.zeros(idx.size)
    for d in range(days):
        for t in np.sort(rng.choice(np.arange(360, 1380, 30), 5, replace=False)):
            length = float(np.exp(rng.normal(np.log(2.8), 0.2)))
            whole = int(length)
            s = d * 1440 + int(t)
            y[s : s + whole] = 3000.0
            y[s + whole] = 3000.0 * (length - whole)
    return pd.Series(y, index=idx)


def test_noisy_kettle_needs_several_longer_boils() -> None:
    app0 = _noisy_kettle(40, seed=3)
    assert detect_cycle_drift(app0, 400.0, "Kettle") == []
    # one very long boil (a full kettle twice) is no fault
    odd = app0.copy()
    t = odd[odd.index >= "2024-02-01"].gt(0).idxmax()
    odd[t : t + pd.Timedelta(minutes=7)] = 3000.0
    assert detect_cycle_drift(odd[: t + pd.Timedelta(minutes=30)], 400.0, "Kettle") == []
    start = pd.Timestamp("2024-02-01 00:00")
    app, _ = inject_longer_cycles(app0, app0, start, 1.5, 400.0)
    found = [f for f in detect_cycle_drift(app, 400.0, "Kettle") if f.detected_at >= start]
    assert found and found[0].kind == "cycle_duration_drift"
    # more than one boil was needed, and a day's worth sufficed
    assert "last" in found[0].explanation and "cycles ran" in found[0].explanation
    assert found[0].detected_at - start <= pd.Timedelta(hours=24)


def _dishwasher(days: int, seed: int) -> pd.Series:
    """A dishwasher with two programmes (eco every day, intensive every fifth), phases
    jittered by a minute, run in the evening."""
    rng = np.random.default_rng(seed)
    eco = [(6, 150.0), (12, 2000.0), (14, 150.0), (8, 2000.0), (8, 180.0)]
    intensive = [(20, 150.0), (10, 2000.0), (5, 160.0), (20, 2000.0), (20, 150.0)]
    idx = pd.date_range("2024-01-01", periods=days * 1440, freq="1min")
    y = np.zeros(idx.size)
    for d in range(days):
        t = d * 1440 + 1140 + int(rng.integers(-60, 60))
        for minutes, watts in intensive if d % 5 == 4 else eco:
            m = minutes + int(rng.integers(-1, 2))
            y[t : t + m] = watts + rng.normal(0, 15, m)
            t += m
    return pd.Series(y, index=idx)


def test_one_longer_dishwasher_programme_is_found() -> None:
    cfg = cycle_config("Dishwasher")
    app0 = _dishwasher(45, seed=5)
    # two programmes of different lengths: the intensive one is no anomaly
    assert detect_cycle_drift(app0, 100.0, "Dishwasher", cfg) == []
    start = pd.Timestamp("2024-02-08 12:00")
    app, _ = inject_longer_cycles(app0, app0, start, 1.5, 100.0, cfg.merge_gap_min)
    found = [f for f in detect_cycle_drift(app, 100.0, "Dishwasher", cfg) if f.detected_at >= start]
    assert found and found[0].kind == "cycle_duration_drift"
    first = pd.Timestamp(
        appliance_cycles(app, 100.0, 30)["start"].pipe(lambda s: s[s >= start]).iloc[0]
    )
    # the first stretched programme is enough: found when it ends
    assert found[0].start == first
    assert found[0].detected_at - first <= pd.Timedelta(hours=2)
    assert re.search(r"Dishwasher's cycle ran 1 h [01]\d min, 5\d % longer", found[0].explanation)
    assert "longer than its usual 48 min for the same programme" in found[0].explanation
    assert len(found) == 1  # one episode, not one finding per cycle


def test_evaluation_counts_detections_and_false_alarms() -> None:
    days = 45
    house = synthetic_house(days, seed=9)
    dish = _dishwasher(days, seed=9)
    agg = house["Aggregate"] + dish.to_numpy()
    apps = pd.DataFrame({"Kettle": house["Kettle"], "Dishwasher": dish})
    report = evaluate_anomaly_detection(
        agg, apps, {"Kettle": 2000.0, "Dishwasher": 500.0}, n_starts=2
    )
    devices = report["devices"]
    assert isinstance(devices, dict)
    assert set(devices) == {"mains", "Kettle", "Dishwasher"}
    dw = devices["Dishwasher"]
    assert dw["fault"] == "longer_cycles" and dw["injected"] == dw["eligible"] == 2
    assert dw["detected_within_24h"] == 2 and dw["false_alarms"] == 0
    assert devices["mains"]["detected_within_24h"] == 2


def test_anomaly_evaluation_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    days = 40
    house = synthetic_house(days, seed=11)
    dish = _dishwasher(days, seed=11)
    df = pd.DataFrame(
        {
            "Time": house.index.strftime("%Y-%m-%d %H:%M:%S"),
            "Aggregate": house["Aggregate"].to_numpy() + dish.to_numpy(),
            "Kettle": house["Kettle"].to_numpy(),
            "Dishwasher": dish.to_numpy(),
            "WashingMachine": 0.0,
            "Microwave": house["Microwave"].to_numpy(),
        }
    )
    df.to_csv(tmp_path / "house.csv", index=False)
    report = run_anomaly_evaluation(tmp_path, n_starts=1)
    assert report["devices"]["Dishwasher"]["detected_within_24h"] == 1
    assert report["devices"]["WashingMachine"]["eligible"] == 0
    assert main(["--dataset", str(tmp_path), "--anomaly", "--starts", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["devices"]["WashingMachine"]["median_delay_h"] is None
    assert main(["--dataset", str(tmp_path), "--anomaly", "--starts", "1"]) == 0
    assert "Dishwasher" in capsys.readouterr().out
    assert main(["--dataset", str(tmp_path), "--anomaly", "--starts", "0"]) == 2
    # the same through the wattwatch CLI
    result = CliRunner().invoke(
        app, ["ai", "evaluate", "--dataset", str(tmp_path), "--anomaly", "--starts", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    cli = json.loads(result.output)
    assert cli["devices"]["Dishwasher"]["eligible"] >= 1
    assert cli["devices"]["WashingMachine"]["median_delay_h"] is None
