from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.ai.conftest import synthetic_house

from wattwatch.ai.dataset import ON_THRESHOLDS_W, load_nilm_dir, split_first_valid_days
from wattwatch.ai.nilm.baselines import CombinatorialOptimisation, ExactFHMM, MeanDisaggregator
from wattwatch.ai.nilm.features import FeatureSpec
from wattwatch.ai.nilm.metrics import score
from wattwatch.ai.nilm.model import NilmModel
from wattwatch.ai.nilm.online import OnlineDisaggregator

FAST = {"max_iter": 60, "learning_rate": 0.15, "max_leaf_nodes": 15, "min_samples_leaf": 20}


def _fast_model(**kw: object) -> NilmModel:
    return NilmModel(appliances=("Kettle", "Microwave"), hgb_params=dict(FAST), cv_folds=0, **kw)  # type: ignore[arg-type]


def test_split_first_valid_days_skips_gaps(tmp_path: Path) -> None:
    idx = pd.date_range("2024-01-01", periods=3 * 1440, freq="1min")
    agg = np.full(idx.size, 200.0)
    agg[100:1540] = 0.0  # a whole day of gap-zeros
    df = pd.DataFrame(
        {
            "Time": idx,
            "Aggregate": agg,
            "Kettle": 0.0,
            "Dishwasher": 0.0,
            "WashingMachine": 0.0,
            "Microwave": 0.0,
        }
    )
    df.to_csv(tmp_path / "a.csv", index=False)
    frame = load_nilm_dir(tmp_path)
    assert frame.aggregate_w.isna().sum() == 1440
    train, test = split_first_valid_days(frame, 1)
    assert int(train.valid.sum()) == 1440
    assert len(train.aggregate_w) == 1440 + 1440
    assert len(test.aggregate_w) == 3 * 1440 - len(train.aggregate_w)


def test_synthetic_train_predict_and_timelines() -> None:
    df = synthetic_house(6, seed=3)
    train, test = df.iloc[: 4 * 1440], df.iloc[4 * 1440 :]
    m = _fast_model().fit(train["Aggregate"], train[["Kettle", "Microwave"]])
    pred = m.predict_power(test["Aggregate"])
    s = score(test["Kettle"], pred["Kettle"], ON_THRESHOLDS_W["Kettle"])
    assert s.f1 > 0.8
    # thresholding the power estimate gives back the on/off decision
    iv = m.timelines(test["Aggregate"])
    assert iv and all(i.appliance in ("Kettle", "Microwave") for i in iv)
    energy = m.energy_wh(test["Aggregate"])
    assert energy["Kettle"] == pytest.approx(float(np.nansum(pred["Kettle"])) / 60)


def test_online_matches_batch() -> None:
    df = synthetic_house(3, seed=5)
    train = df.iloc[: 2 * 1440]
    test = df.iloc[2 * 1440 : 2 * 1440 + 300]  # warm-up (context) + a few hours
    spec = FeatureSpec(
        lookback_min=10, lookahead_min=5, base_window_min=30, stat_windows_min=(3, 7, 31)
    )
    m = _fast_model(spec=spec).fit(train["Aggregate"], train[["Kettle", "Microwave"]])
    batch = m.predict_power(df["Aggregate"])
    online = OnlineDisaggregator(m)
    seen = 0
    for ts, w in test["Aggregate"].items():
        ts_ms = int(pd.Timestamp(ts).value // 1_000_000)
        # two readings per minute, averaging to the minute's value
        online.update(ts_ms, w - 10)
        status = online.update(ts_ms + 30_000, w + 10)
        assert status is None
        st = online.what_is_on()
        if st is None:
            continue
        when = pd.Timestamp(st.ts_ms, unit="ms")
        if when < test.index[0] + pd.Timedelta(minutes=m.spec.context_min):
            continue
        seen += 1
        for name in ("Kettle", "Microwave"):
            assert st.on[name] == bool(batch.loc[when, name] >= ON_THRESHOLDS_W[name])
    assert seen > 150
    assert m.spec.context_min == 31 + 30 + 1
    assert online.delay_min == 6


def test_real_slice_kettle(nilm_dir: Path) -> None:
    frame = load_nilm_dir(nilm_dir / "ukdale_house2")
    days = frame.slice(0, 5 * 1440)
    train, test = days.slice(0, 3 * 1440), days.slice(3 * 1440, 5 * 1440)
    m = _fast_model().fit(train.aggregate_w, train.appliances_w)
    pred = m.predict_power(test.aggregate_w)
    s = score(test.appliances_w["Kettle"], pred["Kettle"], ON_THRESHOLDS_W["Kettle"], test.valid)
    assert s.f1 > 0.6


def test_co_and_fhmm_on_tiny_data() -> None:
    df = synthetic_house(1, seed=7)
    apps = df[["Kettle", "Microwave"]]
    clean = apps.sum(axis=1)  # aggregate of exactly these two appliances
    for model in (CombinatorialOptimisation(), ExactFHMM(), MeanDisaggregator()):
        model.fit(clean, apps)
        pred = model.predict_power(clean)
        assert list(pred.columns) == ["Kettle", "Microwave"] and len(pred) == len(df)
        assert np.isfinite(pred.to_numpy()).all()
    co = CombinatorialOptimisation().fit(clean, apps)
    s = score(apps["Kettle"], co.predict_power(clean)["Kettle"], 2000)
    assert s.f1 > 0.95
    fh = ExactFHMM().fit(clean, apps)
    s = score(apps["Kettle"], fh.predict_power(clean)["Kettle"], 2000)
    assert s.f1 > 0.9
    with_rest = ExactFHMM(model_rest=True).fit(df["Aggregate"], apps).predict_power(df["Aggregate"])
    assert "_rest" not in with_rest.columns
